//! Replacing the set in force.

use std::fs;
use std::time::{Duration, Instant};

use mcpgate_policy::{Policies, PolicyHandle, spawn_watch};

use crate::support::{call, user};

const ALLOW_ALL: &str = "permit (principal, action, resource);\n";
const DENY_WRITE: &str = "permit (principal, action, resource);\n\
                          @id(\"no-write\") forbid (principal, action, resource == Tool::\"write_file\");\n";
const INVALID: &str = "permit (principal, action == Action::\"tools/explode\", resource);\n";

fn allowed(h: &PolicyHandle) -> bool {
    h.current()
        .authorize(&call(user("a"), "write_file"))
        .allowed
}

#[test]
fn reload_keeps_the_previous_set_on_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.cedar");
    fs::write(&path, DENY_WRITE).unwrap();
    let h = PolicyHandle::new(Policies::load(&path).unwrap());
    assert!(!allowed(&h));

    fs::write(&path, INVALID).unwrap();
    let e = h.reload(&path).unwrap_err();
    assert!(e.to_string().contains("tools/explode"), "{e}");
    assert!(!allowed(&h), "still the previous set");
    fs::remove_file(&path).unwrap();
    assert!(h.reload(&path).is_err());
    assert!(!allowed(&h), "still the previous set");

    fs::write(&path, ALLOW_ALL).unwrap();
    h.reload(&path).unwrap();
    assert!(allowed(&h));
}

async fn wait_for(h: &PolicyHandle, want: bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while allowed(h) != want {
        assert!(Instant::now() < deadline, "no reload within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_reloads_on_change_and_sighup_and_survives_bad_edits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.cedar");
    fs::write(&path, DENY_WRITE).unwrap();
    let h = PolicyHandle::new(Policies::load(&path).unwrap());
    let task = spawn_watch(path.clone(), h.clone());

    fs::write(&path, ALLOW_ALL).unwrap();
    wait_for(&h, true).await;

    // A bad edit is refused; the set in force stays.
    fs::write(&path, INVALID).unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(allowed(&h));

    // SIGHUP reloads even when nothing seems changed to the poll: replace
    // the handle's set behind the watcher's back, then signal.
    fs::write(&path, DENY_WRITE).unwrap();
    wait_for(&h, false).await;
    h.replace(Policies::allow_all());
    // The shell's `kill` builtin: no `kill` binary needed.
    let status = std::process::Command::new("sh")
        .args(["-c", &format!("kill -HUP {}", std::process::id())])
        .status()
        .unwrap();
    assert!(status.success());
    wait_for(&h, false).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_sees_a_file_added_to_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.cedar"), ALLOW_ALL).unwrap();
    let h = PolicyHandle::new(Policies::load(dir.path()).unwrap());
    assert!(allowed(&h));
    let task = spawn_watch(dir.path().to_owned(), h.clone());
    fs::write(
        dir.path().join("b.cedar"),
        "@id(\"no-write\") forbid (principal, action, resource == Tool::\"write_file\");\n",
    )
    .unwrap();
    wait_for(&h, false).await;
    task.abort();
}
