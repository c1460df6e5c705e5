//! Where a process's CPU time goes during a measured window: the whole
//! process, its threads grouped by name (with their context switches), this
//! process, and the rest of the machine, all from `/proc`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::proc;

/// CPU seconds spent inside a window.
#[derive(Debug)]
pub struct WindowCpu {
    /// The measured process (mcpgate), if any.
    pub target: f64,
    /// Its threads, by name.
    pub threads: Vec<ThreadGroup>,
    /// This process (load generator, or the SQLite baseline itself).
    pub me: f64,
    /// All CPUs of the machine.
    pub system: f64,
}

impl WindowCpu {
    /// CPUs kept busy by everything else during the window.
    pub fn background_cpus(&self, d: Duration) -> f64 {
        (self.system - self.target - self.me).max(0.0) / d.as_secs_f64()
    }
}

/// Samples at `start` and at `end` (`target`: the measured process).
pub async fn sample_window(start: Instant, end: Instant, target: Option<u32>) -> WindowCpu {
    let me = std::process::id();
    let sample = move || {
        (
            target.map_or(0.0, proc::cpu_secs),
            target.map(threads).unwrap_or_default(),
            proc::cpu_secs(me),
            proc::system_busy_secs(),
        )
    };
    tokio::time::sleep_until(start.into()).await;
    let (t0, th0, m0, s0) = sample();
    tokio::time::sleep_until(end.into()).await;
    let (t1, th1, m1, s1) = sample();
    WindowCpu {
        target: t1 - t0,
        threads: thread_groups(&th0, &th1),
        me: m1 - m0,
        system: s1 - s0,
    }
}

/// One thread's counters from `/proc/PID/task/TID`.
#[derive(Debug, Clone)]
struct ThreadSample {
    name: String,
    user_secs: f64,
    system_secs: f64,
    /// Voluntary + involuntary context switches.
    switches: u64,
}

/// The threads of `pid` by thread id.
fn threads(pid: u32) -> BTreeMap<u32, ThreadSample> {
    let mut out = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(tid) = entry.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        let p = entry.path();
        let read = |f: &str| std::fs::read_to_string(p.join(f)).unwrap_or_default();
        let (name, stat, status) = (read("comm"), read("stat"), read("status"));
        // A thread that exited while being read is left out, not counted as zero.
        if name.is_empty() || stat.is_empty() || status.is_empty() {
            continue;
        }
        // Fields after the parenthesised name: utime and stime are 14 and 15.
        let f: Vec<&str> = stat
            .rfind(')')
            .map_or("", |i| &stat[i + 1..])
            .split_whitespace()
            .collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let field = |key: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(0)
        };
        out.insert(
            tid,
            ThreadSample {
                name: name.trim().to_owned(),
                user_secs: ticks(11) as f64 / proc::TICKS_PER_SEC,
                system_secs: ticks(12) as f64 / proc::TICKS_PER_SEC,
                switches: field("voluntary_ctxt_switches:") + field("nonvoluntary_ctxt_switches:"),
            },
        );
    }
    out
}

/// What the threads present at both ends of the window used, summed by
/// thread name (`tokio-rt-worker`: the runtime's workers and its blocking
/// pool; `sqlx-sqlite-wor`: one thread per SQLite connection).
fn thread_groups(
    before: &BTreeMap<u32, ThreadSample>,
    after: &BTreeMap<u32, ThreadSample>,
) -> Vec<ThreadGroup> {
    let mut groups: BTreeMap<&str, ThreadGroup> = BTreeMap::new();
    for (tid, b) in after {
        let Some(a) = before.get(tid) else { continue };
        let g = groups.entry(&b.name).or_insert_with(|| ThreadGroup {
            name: b.name.clone(),
            threads: 0,
            user_secs: 0.0,
            system_secs: 0.0,
            switches: 0,
        });
        g.threads += 1;
        g.user_secs += (b.user_secs - a.user_secs).max(0.0);
        g.system_secs += (b.system_secs - a.system_secs).max(0.0);
        g.switches += b.switches.saturating_sub(a.switches);
    }
    groups.into_values().collect()
}

/// Counters of a group of threads over a window.
#[derive(Debug, Clone)]
pub struct ThreadGroup {
    pub name: String,
    pub threads: usize,
    pub user_secs: f64,
    pub system_secs: f64,
    pub switches: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(name: &str, user: f64, sys: f64, switches: u64) -> ThreadSample {
        ThreadSample {
            name: name.to_owned(),
            user_secs: user,
            system_secs: sys,
            switches,
        }
    }

    #[test]
    fn threads_are_summed_by_name_over_the_window() {
        let before = BTreeMap::from([
            (1, t("mcpgate", 0.1, 0.1, 5)),
            (2, t("tokio-rt-worker", 1.0, 2.0, 100)),
            (3, t("tokio-rt-worker", 1.0, 1.0, 100)),
            // Gone before the end: not counted.
            (4, t("tokio-rt-worker", 9.0, 9.0, 900)),
        ]);
        let after = BTreeMap::from([
            (1, t("mcpgate", 0.1, 0.1, 5)),
            (2, t("tokio-rt-worker", 1.5, 2.5, 150)),
            (3, t("tokio-rt-worker", 2.0, 1.0, 130)),
            // Started during the window: not counted.
            (5, t("sqlx-sqlite-wor", 1.0, 1.0, 10)),
        ]);
        let g = thread_groups(&before, &after);
        assert_eq!(g.len(), 2);
        let w = g.iter().find(|g| g.name == "tokio-rt-worker").unwrap();
        assert_eq!(w.threads, 2);
        assert!((w.user_secs - 1.5).abs() < 1e-9);
        assert!((w.system_secs - 0.5).abs() < 1e-9);
        assert_eq!(w.switches, 80);
    }

    #[test]
    fn this_process_has_threads() {
        let me = threads(std::process::id());
        assert!(!me.is_empty());
        assert!(me.values().all(|t| !t.name.is_empty()));
    }
}
