//! The oauth benchmark's results: the flows' latency per step, refresh
//! throughput with mcpgate's CPU time per grant, the SQLite baseline, and
//! the verdict on the target, as text or JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::baseline::ROTATION_ONLY;
use super::browser::{FlowTiming, Step};
use crate::load::LoadResult;

/// The target: refresh grants per second on 2 cores with SQLite.
pub const TARGET_GRANTS_PER_SEC: f64 = 2_000.0;

fn latency(label: &'static str, mut ns: Vec<u64>) -> LatencyStats {
    ns.sort_unstable();
    let r = LoadResult {
        ok: ns.len() as u64,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies_ns: ns,
    };
    LatencyStats {
        label,
        n: r.latencies_ns.len(),
        p50_ms: r.percentile_ms(50.0),
        p99_ms: r.percentile_ms(99.0),
    }
}

/// Per kind of flow (in order of first appearance): each step and the
/// whole flow.
pub fn flow_stats(timings: &[FlowTiming]) -> Vec<FlowStats> {
    let mut kinds: Vec<&'static str> = Vec::new();
    for t in timings {
        if !kinds.contains(&t.kind()) {
            kinds.push(t.kind());
        }
    }
    kinds
        .into_iter()
        .map(|kind| {
            let of_kind: Vec<&FlowTiming> = timings.iter().filter(|t| t.kind() == kind).collect();
            let mut per_step: BTreeMap<Step, Vec<u64>> = BTreeMap::new();
            for t in &of_kind {
                for (s, d) in &t.steps {
                    per_step.entry(*s).or_default().push(d.as_nanos() as u64);
                }
            }
            FlowStats {
                kind,
                flows: of_kind.len(),
                steps: per_step
                    .into_iter()
                    .map(|(s, ns)| latency(s.name(), ns))
                    .collect(),
                total: latency(
                    "whole flow",
                    of_kind.iter().map(|t| t.total.as_nanos() as u64).collect(),
                ),
            }
        })
        .collect()
}

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub cpus: usize,
    /// mcpgate's TOKIO_WORKER_THREADS, if set.
    pub mcpgate_workers: Option<usize>,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    /// Where the databases are: fsync costs depend on it.
    pub filesystem: String,
    /// mcpgate's `[audit] enabled`.
    pub audit: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct LatencyStats {
    pub label: &'static str,
    pub n: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FlowStats {
    pub kind: &'static str,
    pub flows: usize,
    pub steps: Vec<LatencyStats>,
    pub total: LatencyStats,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshStats {
    pub concurrency: usize,
    pub grants: u64,
    pub grants_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    /// mcpgate's CPU time (user + system, all threads) per grant.
    pub mcpgate_cpu_us_per_grant: f64,
    /// mcpgate's threads by name: where its CPU time went.
    pub mcpgate_threads: Vec<ThreadCost>,
    /// The bench's own CPU time per grant.
    pub client_cpu_us_per_grant: f64,
    /// CPUs kept busy by everything else on the machine meanwhile.
    pub background_cpus: f64,
}

/// A group of mcpgate's threads of one name, per grant.
#[derive(Debug, Clone, Serialize)]
pub struct ThreadCost {
    pub name: String,
    pub threads: usize,
    pub user_us_per_grant: f64,
    pub system_us_per_grant: f64,
    /// Voluntary + involuntary context switches per grant.
    pub switches_per_grant: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineStats {
    /// What was run (see `baseline.rs`).
    pub kind: &'static str,
    pub concurrency: usize,
    pub connections: u32,
    pub transactions: u64,
    pub tx_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// This process's CPU time (SQLite included) per transaction.
    pub cpu_us_per_tx: f64,
    pub background_cpus: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub flows: Vec<FlowStats>,
    pub refresh: Vec<RefreshStats>,
    pub sqlite_baseline: Vec<BaselineStats>,
    pub target_grants_per_sec: f64,
    /// The best refresh throughput over the concurrency levels measured.
    pub best_grants_per_sec: Option<f64>,
    pub best_at_concurrency: Option<usize>,
    pub target_met: bool,
}

impl Report {
    pub fn new(
        setup: Setup,
        flows: Vec<FlowStats>,
        refresh: Vec<RefreshStats>,
        sqlite_baseline: Vec<BaselineStats>,
    ) -> Self {
        let best = refresh
            .iter()
            .max_by(|a, b| a.grants_per_sec.total_cmp(&b.grants_per_sec));
        Self {
            setup,
            flows,
            target_grants_per_sec: TARGET_GRANTS_PER_SEC,
            best_grants_per_sec: best.map(|b| b.grants_per_sec),
            best_at_concurrency: best.map(|b| b.concurrency),
            target_met: best.is_some_and(|b| b.grants_per_sec >= TARGET_GRANTS_PER_SEC),
            refresh,
            sqlite_baseline,
        }
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let s = &self.setup;
        let workers = s
            .mcpgate_workers
            .map_or_else(|| "default".to_owned(), |n| n.to_string());
        let _ = writeln!(
            o,
            "mcpgate-bench oauth: built-in authorization server, SQLite store (WAL, synchronous=FULL) on {}",
            s.filesystem
        );
        let _ = writeln!(
            o,
            "  {} CPUs; mcpgate TOKIO_WORKER_THREADS {workers}, audit trail {}; {:.0}s measured (+{:.0}s warm-up) per run",
            s.cpus,
            if s.audit { "on" } else { "off" },
            s.duration_secs,
            s.warmup_secs
        );
        if !self.flows.is_empty() {
            let _ = writeln!(
                o,
                "\ncode flow, one flow at a time, latency per step (client-side, loopback)"
            );
            let _ = writeln!(
                o,
                "{:<46} {:>5}  {:<18} {:>9} {:>9}",
                "flow", "n", "step", "p50", "p99"
            );
            for f in &self.flows {
                for (i, st) in f.steps.iter().chain([&f.total]).enumerate() {
                    let (kind, n) = if i == 0 {
                        (f.kind, f.flows.to_string())
                    } else {
                        ("", String::new())
                    };
                    let _ = writeln!(
                        o,
                        "{kind:<46} {n:>5}  {:<18} {:>7.3}ms {:>7.3}ms",
                        st.label, st.p50_ms, st.p99_ms
                    );
                }
            }
        }
        if !self.refresh.is_empty() {
            let _ = writeln!(
                o,
                "\nrefresh_token grants (each rotation durably committed before its answer), closed loop"
            );
            let _ = writeln!(
                o,
                "{:>11} {:>9} {:>9} {:>9} {:>9} {:>14} {:>12} {:>11}",
                "concurrency",
                "grants/s",
                "p50",
                "p90",
                "p99",
                "mcpgate CPU/gr",
                "bench CPU/gr",
                "other CPUs"
            );
            for r in &self.refresh {
                let _ = writeln!(
                    o,
                    "{:>11} {:>9.0} {:>7.3}ms {:>7.3}ms {:>7.3}ms {:>11.0} µs {:>9.0} µs {:>11.2}",
                    r.concurrency,
                    r.grants_per_sec,
                    r.p50_ms,
                    r.p90_ms,
                    r.p99_ms,
                    r.mcpgate_cpu_us_per_grant,
                    r.client_cpu_us_per_grant,
                    r.background_cpus
                );
            }
            let _ = writeln!(
                o,
                "where mcpgate's CPU went, per grant: user + system µs (context switches) by thread name"
            );
            for r in &self.refresh {
                let groups: Vec<String> = r
                    .mcpgate_threads
                    .iter()
                    .filter(|g| g.user_us_per_grant + g.system_us_per_grant > 0.0)
                    .map(|g| {
                        format!(
                            "{} x{}: {:.0} + {:.0} ({:.1})",
                            g.name,
                            g.threads,
                            g.user_us_per_grant,
                            g.system_us_per_grant,
                            g.switches_per_grant
                        )
                    })
                    .collect();
                let _ = writeln!(o, "{:>11}  {}", r.concurrency, groups.join(", "));
            }
        }
        if !self.sqlite_baseline.is_empty() {
            let _ = writeln!(
                o,
                "\nSQLite on the same disk, as mcpgate's store opens it (WAL, synchronous=FULL, BEGIN IMMEDIATE)"
            );
            let _ = writeln!(
                o,
                "{:<34} {:>11} {:>11} {:>9} {:>9} {:>9} {:>9} {:>11}",
                "what", "concurrency", "connections", "tx/s", "p50", "p99", "CPU/tx", "other CPUs"
            );
            for b in &self.sqlite_baseline {
                let _ = writeln!(
                    o,
                    "{:<34} {:>11} {:>11} {:>9.0} {:>7.3}ms {:>7.3}ms {:>6.0} µs {:>11.2}",
                    b.kind,
                    b.concurrency,
                    b.connections,
                    b.tx_per_sec,
                    b.p50_ms,
                    b.p99_ms,
                    b.cpu_us_per_tx,
                    b.background_cpus
                );
            }
            let _ = writeln!(
                o,
                "  rotation statements only: UPDATE (claim) + INSERT (successor), one commit each;\n  \
                 mcpgate's store: client, grant of the token, rotation (group-committed)"
            );
        }
        let busiest = self
            .refresh
            .iter()
            .map(|r| r.background_cpus)
            .chain(self.sqlite_baseline.iter().map(|b| b.background_cpus))
            .fold(0.0, f64::max);
        if busiest > 0.25 {
            let _ = writeln!(
                o,
                "\nnote: up to {busiest:.2} CPUs were busy with other work during a run; \
                 rerun on a quieter machine before comparing numbers"
            );
        }
        if let (Some(best), Some(c)) = (self.best_grants_per_sec, self.best_at_concurrency) {
            let ceiling = self
                .sqlite_baseline
                .iter()
                .filter(|b| b.kind == ROTATION_ONLY)
                .map(|b| b.tx_per_sec)
                .fold(f64::NAN, f64::max);
            let vs = if ceiling.is_finite() {
                format!(
                    "; {:.0} % of the best rotation-only SQLite baseline ({ceiling:.0} tx/s)",
                    100.0 * best / ceiling
                )
            } else {
                String::new()
            };
            let _ = writeln!(
                o,
                "\nrefresh grants: best {best:.0}/s at concurrency {c} (target >= {:.0}/s){vs}  {}",
                self.target_grants_per_sec,
                if self.target_met { "PASS" } else { "FAIL" }
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refresh(concurrency: usize, grants_per_sec: f64) -> RefreshStats {
        RefreshStats {
            concurrency,
            grants: grants_per_sec as u64,
            grants_per_sec,
            p50_ms: 1.0,
            p90_ms: 2.0,
            p99_ms: 3.0,
            mcpgate_cpu_us_per_grant: 500.0,
            mcpgate_threads: Vec::new(),
            client_cpu_us_per_grant: 40.0,
            background_cpus: 0.0,
        }
    }

    fn report(refresh: Vec<RefreshStats>) -> Report {
        let setup = Setup {
            cpus: 2,
            mcpgate_workers: None,
            duration_secs: 10.0,
            warmup_secs: 2.0,
            filesystem: "ext4".into(),
            audit: true,
        };
        let flows = flow_stats(&[FlowTiming {
            steps: vec![(Step::Authorize, Duration::from_millis(1))],
            total: Duration::from_millis(2),
            loopback: false,
        }]);
        Report::new(setup, flows, refresh, Vec::new())
    }

    #[test]
    fn the_best_concurrency_is_judged() {
        let r = report(vec![
            refresh(1, 900.0),
            refresh(16, 2100.0),
            refresh(64, 1500.0),
        ]);
        assert_eq!(r.best_at_concurrency, Some(16));
        assert!(r.target_met);
        assert!(r.text().contains("best 2100/s at concurrency 16"));
        assert!(r.text().contains("PASS"));
        let r = report(vec![refresh(16, 1999.0)]);
        assert!(!r.target_met);
        assert!(r.text().contains("FAIL"));
    }

    #[test]
    fn flows_are_summarised_per_step() {
        let r = report(Vec::new());
        assert_eq!(r.flows.len(), 1);
        assert_eq!(r.flows[0].flows, 1);
        assert_eq!(r.flows[0].steps[0].p50_ms, 1.0);
        assert_eq!(r.flows[0].total.p99_ms, 2.0);
        assert!(!r.target_met);
    }
}
