//! The policy set in force, and replacing it without ever losing it.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use crate::error::PolicyError;
use crate::load::Policies;

/// How often [`spawn_watch`] looks at the policy file's metadata.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The set in force for a route; clones share it.
///
/// Readers take the current set ([`current`](Self::current), an `Arc`
/// clone under a read lock held for nanoseconds) and evaluate without the
/// lock.
#[derive(Debug, Clone)]
pub struct PolicyHandle {
    current: Arc<RwLock<Policies>>,
}

impl PolicyHandle {
    pub fn new(initial: Policies) -> Self {
        Self {
            current: Arc::new(RwLock::new(initial)),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Policies {
        // A poisoned lock still holds a whole `Policies` (replacing it is a
        // single assignment), so it is safe to keep using.
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Puts `policies` in force.
    pub fn replace(&self, policies: Policies) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = policies;
    }

    /// Loads `path` and puts it in force. On failure the previous set stays
    /// in force, the error is logged, and returned.
    pub fn reload(&self, path: &Path) -> Result<(), PolicyError> {
        match Policies::load(path) {
            Ok(p) => {
                for w in p.warnings() {
                    tracing::warn!(path = %path.display(), warning = %w, "policy warning");
                }
                tracing::info!(path = %path.display(), policies = p.len(), "policy set loaded");
                self.replace(p);
                Ok(())
            }
            Err(e) => {
                tracing::error!(
                    path = %path.display(),
                    error = %e,
                    "policy set refused; the previous set stays in force"
                );
                Err(e)
            }
        }
    }
}

/// Reloads `path` into `handle` on SIGHUP and whenever the file (or a
/// `*.cedar` file of the directory) changes, by polling its size and
/// modification time every [`WATCH_INTERVAL`] (no inotify: it misses
/// changes made through some bind mounts and network file systems, and
/// polling a few `stat`s a second costs nothing). A set that fails
/// validation is logged and the previous one kept; the next change is
/// tried again.
///
/// Must be called within a Tokio runtime. The SIGHUP handler is installed
/// before this returns. Runs until the returned task is aborted.
pub fn spawn_watch(path: PathBuf, handle: PolicyHandle) -> tokio::task::JoinHandle<()> {
    spawn_watch_with(path, handle, Arc::new(|_, _| {}))
}

/// What [`spawn_watch_with`] reports after each reload attempt: the path,
/// and the number of policies now in force or why the new set was refused.
pub type OnReload = Arc<dyn Fn(&Path, Result<usize, &PolicyError>) + Send + Sync>;

/// [`spawn_watch`], calling `on_reload` after every attempt (for the audit
/// trail).
pub fn spawn_watch_with(
    path: PathBuf,
    handle: PolicyHandle,
    on_reload: OnReload,
) -> tokio::task::JoinHandle<()> {
    #[cfg(unix)]
    let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; policy reload by polling only");
            None
        }
    };
    let mut last = fingerprint(&path);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            #[cfg(unix)]
            let forced = tokio::select! {
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            #[cfg(not(unix))]
            let forced = {
                tick.tick().await;
                false
            };
            let (path2, handle2, last2) = (path.clone(), handle.clone(), last.clone());
            let on_reload = on_reload.clone();
            // Stat and load off the async threads: validation takes
            // milliseconds.
            let joined = tokio::task::spawn_blocking(move || {
                // Taken before loading, so a change made while loading is
                // seen on the next tick.
                let now = fingerprint(&path2);
                if forced || now != last2 {
                    if forced {
                        tracing::info!(path = %path2.display(), "SIGHUP: reloading policies");
                    }
                    let r = handle2.reload(&path2);
                    on_reload(&path2, r.as_ref().map(|()| handle2.current().len()));
                }
                now
            })
            .await;
            match joined {
                Ok(now) => last = now,
                Err(e) => tracing::error!(error = %e, "policy reload task failed"),
            }
        }
    })
}

/// What the poll compares: for a file, its length and modification time;
/// for a directory, those of each `*.cedar` entry by name (and the
/// directory's own, for additions and removals). `None` entries where a
/// `stat` failed, so a file that disappears is a change.
type Fingerprint = Vec<(String, Option<(u64, SystemTime)>)>;

fn fingerprint(path: &Path) -> Fingerprint {
    let stat = |p: &Path| {
        fs::metadata(p)
            .ok()
            .and_then(|m| Some((m.len(), m.modified().ok()?)))
    };
    let mut out = vec![(String::new(), stat(path))];
    if let Ok(dir) = fs::read_dir(path) {
        for entry in dir.flatten() {
            let p = entry.path();
            if let Some(name) = p.file_name().and_then(|n| n.to_str())
                && name.ends_with(".cedar")
                && !name.starts_with('.')
            {
                out.push((name.to_owned(), stat(&p)));
            }
        }
        out.sort();
    }
    out
}
