//! Results: per-round numbers, the median table, the derived comparisons
//! and their verdicts against the targets, as text or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::proc::Memory;

/// mcpgate's throughput must be at least this share of nginx's.
pub const MIN_THROUGHPUT_PCT: f64 = 80.0;
/// mcpgate's added p50 may be at most this multiple of nginx's.
pub const MAX_ADDED_P50_RATIO: f64 = 1.5;
/// RSS with this many idle SSE streams open ...
pub const TARGET_SSE_STREAMS: usize = 10_000;
/// ... must stay under this.
pub const MAX_SSE_RSS_BYTES: f64 = 200e6;

/// With audit and 100 policies on, mcpgate's throughput must be at least
/// this share of its throughput with both off (`--features-matrix`).
pub const MIN_FEATURES_THROUGHPUT_PCT: f64 = 85.0;
/// The policies may add at most this much to the p50 (µs).
pub const MAX_POLICY_ADDED_P50_US: f64 = 20.0;

/// mcpgate as shipped (audit on, no policy).
pub const GW_DEFAULT: &str = "mcpgate";
/// `[audit] enabled = false`, no policy: the gateway the nginx targets
/// judge. Those targets are the proxy issue's (authentication, scopes, the
/// MCP-aware proxy); the audit trail came later with a budget of its own,
/// judged against this configuration by `--features-matrix`. As shipped,
/// it is compared with nginx too, for reference.
pub const GW_AUDIT_OFF: &str = "mcpgate (audit off)";
/// `--features-matrix`: audit on and a 100-policy set on the route.
pub const GW_POLICIES: &str = "mcpgate (+100 policies)";
/// Every target, in the order of the tables.
const TARGETS: [&str; 5] = ["direct", "nginx", GW_AUDIT_OFF, GW_DEFAULT, GW_POLICIES];

/// One target in one round.
#[derive(Debug, Clone, Serialize)]
pub struct RunStats {
    pub target: &'static str,
    pub round: usize,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub ok: u64,
    pub errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
    /// CPU time of the proxy processes per request (none for direct).
    pub proxy_cpu_us_per_req: Option<f64>,
    pub upstream_cpu_us_per_req: f64,
    /// The load generator's own CPU time per request.
    pub client_cpu_us_per_req: f64,
    /// CPUs kept busy by everything else on the machine during the window.
    pub background_cpus: f64,
}

/// The median over rounds of each metric of one target; errors are summed.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub target: &'static str,
    pub req_per_sec: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
    pub proxy_cpu_us_per_req: Option<f64>,
    pub upstream_cpu_us_per_req: f64,
    pub client_cpu_us_per_req: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SseStats {
    /// "mcpgate" or "nginx" (for reference; no target applies to it).
    pub target: &'static str,
    pub requested: usize,
    pub opened: usize,
    /// Why fewer than requested were opened, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limited_by: Option<String>,
    pub baseline: Memory,
    pub baseline_fds: u64,
    /// (streams open, memory) after each batch.
    pub checkpoints: Vec<(usize, Memory)>,
    pub at_end: Memory,
    pub fds_at_end: u64,
    pub fd_soft_limit: u64,
    pub kib_per_stream: f64,
    /// The stream count the target is stated for (10,000).
    pub target_streams: usize,
    /// RSS at `target_streams`: measured if at least that many were open,
    /// else baseline + kib_per_stream × target_streams.
    pub rss_kib_at_target: f64,
    pub projected: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Setup {
    pub connections: usize,
    pub duration_secs: f64,
    pub warmup_secs: f64,
    pub rounds: usize,
    pub proxy_workers: usize,
    pub upstream_threads: usize,
    pub client_threads: usize,
    pub cpus: usize,
    pub nginx_version: String,
    pub fd_limit: (Option<u64>, Option<u64>),
}

/// The comparisons are made within each round (the targets ran back to
/// back, under the same background load) and the median over rounds is
/// judged; the medians of the table give similar, not identical, values.
#[derive(Debug, Clone, Serialize)]
pub struct Verdicts {
    /// The mcpgate configuration the nginx targets judge ([`GW_AUDIT_OFF`]).
    pub judged: &'static str,
    /// Median over rounds of `judged` req/s ÷ nginx req/s × 100.
    pub throughput_pct_of_nginx: Option<f64>,
    pub throughput_pct_per_round: Vec<f64>,
    /// Median over rounds of (target p50 − direct p50).
    pub added_p50_ms_nginx: Option<f64>,
    pub added_p50_ms_mcpgate: Option<f64>,
    /// Median over rounds of mcpgate's added p50 ÷ nginx's.
    pub added_p50_ratio: Option<f64>,
    pub added_p50_ratio_per_round: Vec<f64>,
    pub throughput_pass: Option<bool>,
    pub latency_pass: Option<bool>,
    pub sse_rss_pass: Option<bool>,
    /// `--features-matrix` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub features: Option<FeatureVerdicts>,
    /// mcpgate as shipped (audit trail on) against nginx, for reference:
    /// the trail's cost is judged against `judged` (`features`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shipped_vs_nginx: Option<NginxComparison>,
    /// False if any request failed: the load numbers are then not valid.
    pub valid: bool,
}

/// A gateway configuration against nginx: medians over rounds of the
/// per-round comparisons, and whether both nginx targets are met.
#[derive(Debug, Clone, Serialize)]
pub struct NginxComparison {
    pub throughput_pct: f64,
    pub throughput_pct_per_round: Vec<f64>,
    pub added_p50_ratio: f64,
    pub added_p50_ratio_per_round: Vec<f64>,
    pub targets_met: bool,
}

/// The mcpgate configurations compared with "audit off, no policy", paired
/// per round, median over rounds.
#[derive(Debug, Clone, Serialize)]
pub struct FeatureVerdicts {
    /// Audit on: req/s ÷ audit-off req/s × 100.
    pub audit_throughput_pct: f64,
    /// Audit on: p50 − audit-off p50.
    pub audit_added_p50_ms: f64,
    /// Audit and policies on: req/s ÷ audit-off req/s × 100.
    pub policies_throughput_pct: f64,
    pub policies_throughput_pct_per_round: Vec<f64>,
    pub policies_added_p50_ms: f64,
    /// The policies alone: p50 with them − p50 with audit on only.
    pub policy_added_p50_us: f64,
    pub policy_added_p50_us_per_round: Vec<f64>,
    /// The policies alone: mcpgate's CPU per request with them − without.
    pub policy_added_cpu_us_per_req: Option<f64>,
    pub throughput_pass: bool,
    pub policy_latency_pass: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub setup: Setup,
    pub runs: Vec<RunStats>,
    pub summary: Vec<Summary>,
    pub sse: Vec<SseStats>,
    pub verdicts: Verdicts,
}

/// The `--features-matrix` comparisons, if its three configurations ran.
fn feature_verdicts(runs: &[RunStats], rounds: usize) -> Option<FeatureVerdicts> {
    let (mut audit_pct, mut audit_p50, mut pol_pct, mut pol_p50) = (vec![], vec![], vec![], vec![]);
    let (mut added_us, mut added_cpu) = (vec![], vec![]);
    for round in 1..=rounds {
        let get = |t: &str| runs.iter().find(|r| r.round == round && r.target == t);
        let (Some(off), Some(on), Some(pol)) =
            (get(GW_AUDIT_OFF), get(GW_DEFAULT), get(GW_POLICIES))
        else {
            continue;
        };
        audit_pct.push(100.0 * on.req_per_sec / off.req_per_sec);
        audit_p50.push(on.p50_ms - off.p50_ms);
        pol_pct.push(100.0 * pol.req_per_sec / off.req_per_sec);
        pol_p50.push(pol.p50_ms - off.p50_ms);
        added_us.push((pol.p50_ms - on.p50_ms) * 1000.0);
        if let (Some(a), Some(b)) = (pol.proxy_cpu_us_per_req, on.proxy_cpu_us_per_req) {
            added_cpu.push(a - b);
        }
    }
    let policies_throughput_pct = median_opt(&pol_pct)?;
    let policy_added_p50_us = median_opt(&added_us)?;
    Some(FeatureVerdicts {
        audit_throughput_pct: median_opt(&audit_pct)?,
        audit_added_p50_ms: median_opt(&audit_p50)?,
        policies_throughput_pct,
        policies_throughput_pct_per_round: pol_pct,
        policies_added_p50_ms: median_opt(&pol_p50)?,
        policy_added_p50_us,
        policy_added_p50_us_per_round: added_us,
        policy_added_cpu_us_per_req: median_opt(&added_cpu),
        throughput_pass: policies_throughput_pct >= MIN_FEATURES_THROUGHPUT_PCT,
        policy_latency_pass: policy_added_p50_us < MAX_POLICY_ADDED_P50_US,
    })
}

fn median_opt(v: &[f64]) -> Option<f64> {
    (!v.is_empty())
        .then(|| median(v.to_vec()))
        .filter(|m| !m.is_nan())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// One mcpgate configuration against nginx, round by round.
#[derive(Default)]
struct PerRound {
    /// mcpgate req/s ÷ nginx req/s × 100.
    pct: Vec<f64>,
    /// nginx's p50 − direct's.
    added_nginx: Vec<f64>,
    /// mcpgate's p50 − direct's.
    added_gateway: Vec<f64>,
    /// `added_gateway ÷ added_nginx`.
    ratio: Vec<f64>,
}

impl PerRound {
    /// The rounds in which `gateway`, nginx and direct all ran.
    fn against_nginx(runs: &[RunStats], rounds: usize, gateway: &str) -> Self {
        let mut out = Self::default();
        for round in 1..=rounds {
            let get = |t: &str| runs.iter().find(|r| r.round == round && r.target == t);
            let (Some(d), Some(n), Some(g)) = (get("direct"), get("nginx"), get(gateway)) else {
                continue;
            };
            out.pct.push(100.0 * g.req_per_sec / n.req_per_sec);
            let (an, ag) = (n.p50_ms - d.p50_ms, g.p50_ms - d.p50_ms);
            out.added_nginx.push(an);
            out.added_gateway.push(ag);
            // nginx adding nothing measurable: only nothing matches it.
            out.ratio.push(if an > 0.0 {
                ag / an
            } else if ag <= 0.0 {
                1.0
            } else {
                f64::INFINITY
            });
        }
        out
    }

    fn summary(self) -> Option<NginxComparison> {
        let throughput_pct = median_opt(&self.pct)?;
        let added_p50_ratio = median_opt(&self.ratio)?;
        Some(NginxComparison {
            throughput_pct,
            throughput_pct_per_round: self.pct,
            added_p50_ratio,
            added_p50_ratio_per_round: self.ratio,
            targets_met: throughput_pct >= MIN_THROUGHPUT_PCT
                && added_p50_ratio <= MAX_ADDED_P50_RATIO,
        })
    }
}

impl Report {
    pub fn new(setup: Setup, runs: Vec<RunStats>, sse: Vec<SseStats>) -> Self {
        let mut summary = Vec::new();
        for target in TARGETS {
            let rs: Vec<&RunStats> = runs.iter().filter(|r| r.target == target).collect();
            if rs.is_empty() {
                continue;
            }
            let m = |f: fn(&RunStats) -> f64| median(rs.iter().map(|r| f(r)).collect());
            summary.push(Summary {
                target,
                req_per_sec: m(|r| r.req_per_sec),
                p50_ms: m(|r| r.p50_ms),
                p90_ms: m(|r| r.p90_ms),
                p99_ms: m(|r| r.p99_ms),
                errors: rs.iter().map(|r| r.errors).sum(),
                proxy_cpu_us_per_req: rs
                    .iter()
                    .all(|r| r.proxy_cpu_us_per_req.is_some())
                    .then(|| m(|r| r.proxy_cpu_us_per_req.unwrap_or(f64::NAN))),
                upstream_cpu_us_per_req: m(|r| r.upstream_cpu_us_per_req),
                client_cpu_us_per_req: m(|r| r.client_cpu_us_per_req),
            });
        }
        // Paired per round: the targets of a round ran back to back.
        let rounds = runs.iter().map(|r| r.round).max().unwrap_or(0);
        let judged = PerRound::against_nginx(&runs, rounds, GW_AUDIT_OFF);
        let features = feature_verdicts(&runs, rounds);
        let shipped = PerRound::against_nginx(&runs, rounds, GW_DEFAULT);
        let throughput_pct = median_opt(&judged.pct);
        let added_p50_ratio = median_opt(&judged.ratio);
        let verdicts = Verdicts {
            judged: GW_AUDIT_OFF,
            throughput_pct_of_nginx: throughput_pct,
            added_p50_ms_nginx: median_opt(&judged.added_nginx),
            added_p50_ms_mcpgate: median_opt(&judged.added_gateway),
            added_p50_ratio,
            throughput_pass: throughput_pct.map(|p| p >= MIN_THROUGHPUT_PCT),
            latency_pass: added_p50_ratio.map(|r| r <= MAX_ADDED_P50_RATIO),
            shipped_vs_nginx: shipped.summary(),
            throughput_pct_per_round: judged.pct,
            added_p50_ratio_per_round: judged.ratio,
            sse_rss_pass: sse
                .iter()
                .find(|s| s.target == "mcpgate")
                .map(|s| s.rss_kib_at_target * 1024.0 < MAX_SSE_RSS_BYTES),
            features,
            valid: runs.iter().all(|r| r.errors == 0),
        };
        Self {
            setup,
            runs,
            summary,
            sse,
            verdicts,
        }
    }

    /// Every target checked passed and no request failed.
    pub fn passed(&self) -> bool {
        let v = &self.verdicts;
        v.valid
            && [v.throughput_pass, v.latency_pass, v.sse_rss_pass]
                .iter()
                .all(|p| p.unwrap_or(true))
            && v.features
                .as_ref()
                .is_none_or(|f| f.throughput_pass && f.policy_latency_pass)
    }

    pub fn text(&self) -> String {
        let mut o = String::new();
        let s = &self.setup;
        if self.runs.is_empty() {
            let _ = writeln!(o, "mcpgate-bench: idle SSE streams only");
        } else {
            let _ = writeln!(
                o,
                "mcpgate-bench: tools/call, {} connections, {:.0}s measured (+{:.0}s warm-up) x {} rounds, medians shown",
                s.connections, s.duration_secs, s.warmup_secs, s.rounds
            );
        }
        let nginx = if s.nginx_version.is_empty() {
            String::new()
        } else {
            format!("; {}", s.nginx_version)
        };
        let _ = writeln!(
            o,
            "  {} CPUs; proxies get {} worker(s) each (nginx worker_processes, mcpgate TOKIO_WORKER_THREADS); \
             upstream {} thread(s), load generator {} thread(s){nginx}",
            s.cpus, s.proxy_workers, s.upstream_threads, s.client_threads
        );
        if !self.summary.is_empty() {
            let _ = writeln!(o);
            let w = self
                .summary
                .iter()
                .map(|t| t.target.len())
                .max()
                .unwrap_or(0);
            let _ = writeln!(
                o,
                "{:<w$} {:>9} {:>9} {:>9} {:>9} {:>7} {:>13}",
                "target", "req/s", "p50", "p90", "p99", "errors", "proxy CPU/req"
            );
            for t in &self.summary {
                let cpu = t
                    .proxy_cpu_us_per_req
                    .map_or_else(|| "-".to_owned(), |c| format!("{c:.1} µs"));
                let _ = writeln!(
                    o,
                    "{:<w$} {:>9.0} {:>7.3}ms {:>7.3}ms {:>7.3}ms {:>7} {:>13}",
                    t.target, t.req_per_sec, t.p50_ms, t.p90_ms, t.p99_ms, t.errors, cpu
                );
            }
            let _ = writeln!(o);
            let v = &self.verdicts;
            let verdict = |p: Option<bool>| match p {
                Some(true) => "PASS",
                Some(false) => "FAIL",
                None => "n/a",
            };
            let list = |v: &[f64], unit: &str| {
                v.iter()
                    .map(|x| {
                        if x.is_finite() {
                            format!("{x:.2}{unit}")
                        } else {
                            "n/a (nginx added nothing)".to_owned()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(" / ")
            };
            if v.throughput_pct_of_nginx.is_some() || v.added_p50_ratio.is_some() {
                let _ = writeln!(
                    o,
                    "against nginx, judged on {}: the gateway (authentication, scopes, the MCP-aware \
                     proxy) without the audit trail, whose cost is reported after",
                    v.judged
                );
            }
            if let Some(p) = v.throughput_pct_of_nginx {
                let _ = writeln!(
                    o,
                    "{} throughput: {p:.1} % of nginx (target >= {MIN_THROUGHPUT_PCT:.0} %)  {}\n  \
                     per round: {}",
                    v.judged,
                    verdict(v.throughput_pass),
                    list(&v.throughput_pct_per_round, " %")
                );
            }
            if let (Some(n), Some(g), Some(r)) = (
                v.added_p50_ms_nginx,
                v.added_p50_ms_mcpgate,
                v.added_p50_ratio,
            ) {
                let _ = writeln!(
                    o,
                    "added p50 over direct: nginx {n:+.3} ms, {} {g:+.3} ms, ratio {r:.2}x \
                     (target <= {MAX_ADDED_P50_RATIO}x)  {}\n  per round: {}",
                    v.judged,
                    verdict(v.latency_pass),
                    list(&v.added_p50_ratio_per_round, "x")
                );
            }
            if let Some(f) = &v.features {
                let pass = |p: bool| if p { "PASS" } else { "FAIL" };
                let cpu = f
                    .policy_added_cpu_us_per_req
                    .map_or_else(String::new, |c| format!(", proxy CPU {c:+.1} µs/req"));
                let _ = writeln!(
                    o,
                    "mcpgate configurations vs {GW_AUDIT_OFF:?} (paired per round, median):\n  \
                     audit on:             throughput {:+.1} %, p50 {:+.3} ms\n  \
                     audit + 100 policies: throughput {:+.1} %, p50 {:+.3} ms\n\
                     throughput with audit + 100 policies: {:.1} % of audit off (target >= {MIN_FEATURES_THROUGHPUT_PCT:.0} %)  {}\n  \
                     per round: {}\n\
                     100 policies over audit on: p50 {:+.1} µs{cpu} (target < {MAX_POLICY_ADDED_P50_US:.0} µs)  {}\n  \
                     per round: {}",
                    f.audit_throughput_pct - 100.0,
                    f.audit_added_p50_ms,
                    f.policies_throughput_pct - 100.0,
                    f.policies_added_p50_ms,
                    f.policies_throughput_pct,
                    pass(f.throughput_pass),
                    list(&f.policies_throughput_pct_per_round, " %"),
                    f.policy_added_p50_us,
                    pass(f.policy_latency_pass),
                    list(&f.policy_added_p50_us_per_round, " µs"),
                );
            }
            if let Some(c) = &v.shipped_vs_nginx {
                let _ = writeln!(
                    o,
                    "for reference, {GW_DEFAULT} as shipped (audit trail on: each request's record \
                     durably committed before its response) against nginx: throughput {:.1} %, \
                     added p50 ratio {:.2}x (the two targets above {})\n  per round: {}; {}",
                    c.throughput_pct,
                    c.added_p50_ratio,
                    if c.targets_met { "met" } else { "not met" },
                    list(&c.throughput_pct_per_round, " %"),
                    list(&c.added_p50_ratio_per_round, "x"),
                );
            }
            if !v.valid {
                let _ = writeln!(o, "INVALID RUN: requests failed:");
                for r in self.runs.iter().filter(|r| r.errors > 0) {
                    let _ = writeln!(
                        o,
                        "  {} round {}: {} errors, first: {}",
                        r.target,
                        r.round,
                        r.errors,
                        r.first_error.as_deref().unwrap_or("?")
                    );
                }
            }
            let _ = writeln!(
                o,
                "\nper round: req/s, p50 ms, [CPUs busy with other work on the machine]"
            );
            for t in TARGETS {
                let line: Vec<String> = self
                    .runs
                    .iter()
                    .filter(|r| r.target == t)
                    .map(|r| {
                        format!(
                            "{:.0} {:.3} [{:.2}]",
                            r.req_per_sec, r.p50_ms, r.background_cpus
                        )
                    })
                    .collect();
                if !line.is_empty() {
                    let _ = writeln!(o, "  {t:<w$} {}", line.join("   "));
                }
            }
            let busiest = self
                .runs
                .iter()
                .map(|r| r.background_cpus)
                .fold(0.0, f64::max);
            if busiest > 0.25 {
                let _ = writeln!(
                    o,
                    "  note: up to {busiest:.2} CPUs were busy with other work during a round; \
                     compare within rounds, or rerun on a quieter machine"
                );
            }
            let _ = writeln!(
                o,
                "CPU per request (median, µs): proxy / upstream / load generator"
            );
            for t in &self.summary {
                let _ = writeln!(
                    o,
                    "  {:<w$} {} / {:.1} / {:.1}",
                    t.target,
                    t.proxy_cpu_us_per_req
                        .map_or_else(|| "-".to_owned(), |c| format!("{c:.1}")),
                    t.upstream_cpu_us_per_req,
                    t.client_cpu_us_per_req
                );
            }
        }
        for sse in &self.sse {
            let mb = |kib: f64| kib * 1024.0 / 1e6;
            let _ = writeln!(o);
            let _ = writeln!(
                o,
                "idle SSE streams through {}: {} of {} requested open (each 200 text/event-stream)",
                sse.target, sse.opened, sse.requested
            );
            if let Some(why) = &sse.limited_by {
                let _ = writeln!(o, "  limited by: {why}");
            }
            let _ = writeln!(
                o,
                "  {} RSS: baseline {:.1} MB ({} fds) -> {:.1} MB with {} streams ({} fds, {} threads), {:.1} KiB/stream",
                sse.target,
                mb(sse.baseline.rss_kib as f64),
                sse.baseline_fds,
                mb(sse.at_end.rss_kib as f64),
                sse.opened,
                sse.fds_at_end,
                sse.at_end.threads,
                sse.kib_per_stream
            );
            let pts: Vec<String> = sse
                .checkpoints
                .iter()
                .map(|(n, m)| format!("{n}: {:.1} MB", mb(m.rss_kib as f64)))
                .collect();
            let _ = writeln!(o, "  checkpoints: {}", pts.join(", "));
            let projected = if sse.projected {
                " (projected from the per-stream slope)"
            } else {
                ""
            };
            let verdict = match (sse.target, self.verdicts.sse_rss_pass) {
                ("mcpgate", Some(true)) => {
                    format!("(target < {:.0} MB)  PASS", MAX_SSE_RSS_BYTES / 1e6)
                }
                ("mcpgate", Some(false)) => {
                    format!("(target < {:.0} MB)  FAIL", MAX_SSE_RSS_BYTES / 1e6)
                }
                _ => "(reference)".to_owned(),
            };
            let _ = writeln!(
                o,
                "  {} RSS at {} streams: {:.1} MB{projected} {verdict}",
                sse.target,
                sse.target_streams,
                mb(sse.rss_kib_at_target),
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(target: &'static str, round: usize, rps: f64, p50: f64) -> RunStats {
        RunStats {
            target,
            round,
            req_per_sec: rps,
            p50_ms: p50,
            p90_ms: p50,
            p99_ms: p50,
            ok: 1,
            errors: 0,
            first_error: None,
            proxy_cpu_us_per_req: None,
            upstream_cpu_us_per_req: 0.0,
            client_cpu_us_per_req: 0.0,
            background_cpus: 0.0,
        }
    }

    fn setup() -> Setup {
        Setup {
            connections: 32,
            duration_secs: 10.0,
            warmup_secs: 2.0,
            rounds: 3,
            proxy_workers: 1,
            upstream_threads: 1,
            client_threads: 1,
            cpus: 2,
            nginx_version: String::new(),
            fd_limit: (None, None),
        }
    }

    #[test]
    fn medians_and_verdicts() {
        let runs = vec![
            run("direct", 1, 100.0, 1.0),
            run("nginx", 1, 100.0, 2.0),
            run(GW_AUDIT_OFF, 1, 85.0, 2.4),
            // A noisy round: everything slower, the comparison still holds.
            run("direct", 2, 300.0, 2.0),
            run("nginx", 2, 50.0, 4.0),
            run(GW_AUDIT_OFF, 2, 30.0, 6.0),
            run("direct", 3, 200.0, 1.0),
            run("nginx", 3, 100.0, 1.5),
            run(GW_AUDIT_OFF, 3, 90.0, 1.6),
        ];
        let r = Report::new(setup(), runs, Vec::new());
        assert_eq!(r.summary[0].req_per_sec, 200.0);
        let v = &r.verdicts;
        assert_eq!(v.throughput_pct_per_round, vec![85.0, 60.0, 90.0]);
        assert_eq!(v.throughput_pct_of_nginx, Some(85.0));
        assert_eq!(v.throughput_pass, Some(true));
        // Added p50 ratios per round: 1.4, 2.0, 1.2; median 1.4.
        assert!((v.added_p50_ratio.unwrap() - 1.4).abs() < 1e-9);
        assert_eq!(v.latency_pass, Some(true));
        assert!(r.passed());
    }

    #[test]
    fn features_matrix_is_paired_with_audit_off() {
        let mut runs = Vec::new();
        for (round, off, on, pol) in [(1, 100.0, 80.0, 78.0), (2, 200.0, 150.0, 140.0)] {
            runs.push(run(GW_AUDIT_OFF, round, off, 1.0));
            runs.push(run(GW_DEFAULT, round, on, 1.2));
            runs.push(run(GW_POLICIES, round, pol, 1.21));
        }
        let r = Report::new(setup(), runs, Vec::new());
        let f = r.verdicts.features.as_ref().unwrap();
        assert_eq!(f.policies_throughput_pct_per_round, vec![78.0, 70.0]);
        assert_eq!(f.policies_throughput_pct, 74.0);
        assert!(!f.throughput_pass);
        assert!((f.policy_added_p50_us - 10.0).abs() < 1e-6);
        assert!(f.policy_latency_pass);
        assert!(!r.passed());
        assert_eq!(r.summary.len(), 3);
        assert!(r.text().contains("74.0 % of audit off"));
    }

    /// The nginx targets judge the gateway without its audit trail; as
    /// shipped it is compared for reference and decides nothing.
    #[test]
    fn nginx_targets_judge_audit_off_and_shipped_is_reference_only() {
        let mut runs = Vec::new();
        for (round, nginx, off, on) in [(1, 100.0, 90.0, 40.0), (2, 100.0, 70.0, 50.0)] {
            runs.push(run("direct", round, 300.0, 1.0));
            runs.push(run("nginx", round, nginx, 2.0));
            runs.push(run(GW_AUDIT_OFF, round, off, 2.5));
            runs.push(run(GW_DEFAULT, round, on, 4.0));
        }
        let r = Report::new(setup(), runs, Vec::new());
        let v = &r.verdicts;
        assert_eq!(v.judged, GW_AUDIT_OFF);
        assert_eq!(v.throughput_pct_per_round, vec![90.0, 70.0]);
        assert_eq!(v.throughput_pct_of_nginx, Some(80.0));
        assert_eq!(v.throughput_pass, Some(true));
        assert!((v.added_p50_ratio.unwrap() - 1.5).abs() < 1e-9);
        assert_eq!(v.latency_pass, Some(true));
        let c = v.shipped_vs_nginx.as_ref().unwrap();
        assert_eq!(c.throughput_pct_per_round, vec![40.0, 50.0]);
        assert_eq!(c.throughput_pct, 45.0);
        assert!((c.added_p50_ratio - 3.0).abs() < 1e-9);
        assert!(!c.targets_met);
        assert!(r.passed());
        let text = r.text();
        assert!(text.contains("mcpgate (audit off) throughput: 80.0 % of nginx"));
        assert!(text.contains("mcpgate as shipped (audit trail on"));
        assert!(
            text.contains(
                "throughput 45.0 %, added p50 ratio 3.00x (the two targets above not met)"
            )
        );
    }

    /// Without the audit-off configuration (`--targets` without it) there
    /// is nothing to judge, and as shipped does not stand in for it.
    #[test]
    fn shipped_alone_is_not_judged_against_nginx() {
        let runs = vec![
            run("direct", 1, 300.0, 1.0),
            run("nginx", 1, 100.0, 2.0),
            run(GW_DEFAULT, 1, 95.0, 2.1),
        ];
        let r = Report::new(setup(), runs, Vec::new());
        assert_eq!(r.verdicts.throughput_pct_of_nginx, None);
        assert_eq!(r.verdicts.throughput_pass, None);
        assert!(r.verdicts.shipped_vs_nginx.as_ref().unwrap().targets_met);
    }

    #[test]
    fn errors_make_the_run_fail() {
        let mut bad = run("mcpgate", 1, 100.0, 1.0);
        bad.errors = 1;
        let r = Report::new(setup(), vec![run("nginx", 1, 100.0, 1.0), bad], Vec::new());
        assert!(!r.verdicts.valid);
        assert!(!r.passed());
    }
}
