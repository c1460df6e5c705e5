//! The audit trail end to end, against both backends: SQLite files in a
//! temporary directory and PostgreSQL in a fresh schema per test.
//!
//! PostgreSQL is expected at `postgres://postgres@127.0.0.1:5432/test`
//! (override with `MCPGATE_TEST_POSTGRES_URL`). If it is unreachable the
//! PostgreSQL tests fail, unless `MCPGATE_TEST_SKIP_POSTGRES=1`.
//!
//! Tampering is done the way an operator or attacker would: SQL on the
//! database, from a connection of its own.

// `allow-unwrap-in-tests` covers `#[test]` functions only, not this file's
// harness and per-backend bodies, which are test code all the same.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use mcpgate_audit::{
    Anchor, AuditConfig, AuditError, AuditLog, DefectKind, Event, EventKind, ExportFormat,
    ExportOptions, SinkTarget, VerifyOptions, VerifyReport, chain::record_hash, export, outcome,
    verify,
};
use mcpgate_crypto::master::MasterKey;
use mcpgate_store::{
    AuditCheckpoint, AuditHead, AuditRecord, AuditSealer, AuditStore, SealedBatch, StoreError,
    open_audit,
};
use serde_json::json;
use sqlx::{AssertSqlSafe, Connection, Executor, PgConnection};
use tempfile::TempDir;

const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Set in the child process of the SIGKILL test: the database to load.
const CHILD_URL_ENV: &str = "MCPGATE_AUDIT_CHILD_URL";

fn master_key() -> MasterKey {
    MasterKey::from_bytes(&[7; 32]).unwrap()
}

/// One test database; [`Db::audit`] gives a new handle, like a new process.
struct Db {
    url: String,
    kind: Kind,
}

enum Kind {
    Sqlite { dir: TempDir },
    Postgres { base_url: String, schema: String },
}

impl Db {
    fn sqlite() -> Db {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gateway.db").display());
        Db {
            url,
            kind: Kind::Sqlite { dir },
        }
    }

    /// `None` only when PostgreSQL tests are explicitly skipped.
    async fn postgres() -> Option<Db> {
        if std::env::var("MCPGATE_TEST_SKIP_POSTGRES").is_ok_and(|v| v == "1") {
            eprintln!("skipping PostgreSQL: MCPGATE_TEST_SKIP_POSTGRES=1");
            return None;
        }
        let base_url =
            std::env::var("MCPGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| POSTGRES_URL.to_owned());
        let schema = unique_schema();
        let mut conn = PgConnection::connect(&base_url).await.unwrap_or_else(|e| {
            panic!("PostgreSQL at {base_url} is unreachable ({e}); set MCPGATE_TEST_SKIP_POSTGRES=1 to skip")
        });
        conn.execute(AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .unwrap();
        conn.close().await.unwrap();
        let sep = if base_url.contains('?') { '&' } else { '?' };
        let url = format!("{base_url}{sep}options[search_path]={schema}");
        Some(Db {
            url,
            kind: Kind::Postgres { base_url, schema },
        })
    }

    async fn audit(&self) -> Arc<dyn AuditStore> {
        open_audit(&self.url).await.unwrap()
    }

    async fn log(&self, config: AuditConfig) -> AuditLog {
        AuditLog::open(self.audit().await, &master_key(), config)
            .await
            .unwrap()
    }

    /// Runs `sql` on a plain connection of the test database.
    async fn execute(&self, sql: &str) {
        match &self.kind {
            Kind::Sqlite { .. } => {
                let mut conn = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
                conn.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
                conn.close().await.unwrap();
            }
            Kind::Postgres { .. } => {
                let mut conn = PgConnection::connect(&self.url).await.unwrap();
                conn.execute(AssertSqlSafe(sql.to_owned())).await.unwrap();
                conn.close().await.unwrap();
            }
        }
    }

    /// A byte-string literal in the backend's SQL.
    fn bytes(&self, bytes: &[u8]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        match self.kind {
            Kind::Sqlite { .. } => format!("X'{hex}'"),
            Kind::Postgres { .. } => format!("decode('{hex}', 'hex')"),
        }
    }

    async fn cleanup(self) {
        if let Kind::Postgres { base_url, schema } = &self.kind {
            let mut conn = PgConnection::connect(base_url).await.unwrap();
            conn.execute(AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .await
                .unwrap();
        }
    }
}

fn unique_schema() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "a_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Defines each test once per backend: `NAME::sqlite` and `NAME::postgres`.
macro_rules! both_backends {
    ($(async fn $name:ident($db:ident: &Db) $body:block)*) => {$(
        mod $name {
            use super::*;

            async fn run($db: &Db) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let db = Db::sqlite();
                run(&db).await;
                db.cleanup().await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let Some(db) = Db::postgres().await else { return };
                run(&db).await;
                db.cleanup().await;
            }
        }
    )*};
}

/// The `i`th of a mix of events, as the gateway and authorization server
/// would write them.
fn mixed_event(i: u32) -> Event {
    let base = |kind, outcome| {
        Event::new(kind, outcome)
            .route("github")
            .subject(format!("user-{}", i % 7))
            .client_id(format!("client-{}", i % 3))
            .peer("127.0.0.1:40000")
    };
    match i % 6 {
        0 => base(EventKind::AuthnSuccess, outcome::OK).details(json!({ "jti": format!("j{i}") })),
        1 => base(EventKind::AuthzDecision, outcome::ALLOWED)
            .method("tools/call")
            .name("search_issues")
            .policy_ids(["allow-readers"]),
        2 => base(EventKind::McpRequest, outcome::OK)
            .method("tools/call")
            .name(format!("req-{i}"))
            .args(&json!({ "query": "secret stays out", "n": i }))
            .latency(Duration::from_micros(1200)),
        3 => base(EventKind::AuthnFailure, outcome::DENIED).reason("token expired"),
        4 => base(EventKind::TokenIssued, outcome::OK)
            .details(json!({ "grant": "g1", "scope": "read" })),
        _ => base(EventKind::McpRequest, outcome::ERROR)
            .method("resources/read")
            .name("file:///etc/motd")
            .reason("upstream 502"),
    }
}

/// A log of `n` mixed events written by 16 concurrent tasks, shut down
/// cleanly; verified clean. Returns the report.
async fn mixed_log(db: &Db, n: u32) -> VerifyReport {
    let log = db
        .log(AuditConfig {
            checkpoint_every: 50,
            ..AuditConfig::default()
        })
        .await;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in (t..n).step_by(16) {
                    log.append(mixed_event(i)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    log.shutdown().await.unwrap();
    let report = verify_db(db).await;
    assert!(report.is_clean(), "{:#?}", report.defects);
    // audit_started and audit_stopped around the events.
    assert_eq!(report.records, u64::from(n) + 2);
    report
}

async fn verify_db(db: &Db) -> VerifyReport {
    verify(&*db.audit().await, &master_key(), &VerifyOptions::default())
        .await
        .unwrap()
}

/// Every record of the chain `main`.
async fn records(db: &Db) -> Vec<AuditRecord> {
    let store = db.audit().await;
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |r: &AuditRecord| r.seq);
        let page = store.audit_records("main", after, None, 500).await.unwrap();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// Asserts the report's first defect is `what` at `seq`.
fn assert_first(report: &VerifyReport, seq: u64, what: DefectKind) {
    assert!(!report.is_clean());
    let first = report.first_defect().unwrap();
    assert_eq!(
        (first.chain_id.as_str(), first.seq, first.what),
        ("main", seq, what),
        "{:#?}",
        report.defects
    );
}

both_backends! {
    async fn append_from_concurrent_tasks_then_verify_is_clean(db: &Db) {
        let report = mixed_log(db, 300).await;
        assert_eq!((report.chains, report.omitted_defects), (1, 0));
        // Every 50 records, and at shutdown.
        assert_eq!(report.checkpoints, 7);
        let summary = &report.summaries[0];
        assert_eq!((summary.last_seq, summary.last_checkpoint_seq), (302, Some(302)));
        assert_eq!(summary.after_last_checkpoint, 0);
        let head = summary.head.as_ref().unwrap();
        assert_eq!(head.seq, 302);

        let recs = records(db).await;
        assert_eq!(recs.first().unwrap().kind, "audit_started");
        assert_eq!(recs.last().unwrap().kind, "audit_stopped");
        // Every event made it, exactly once.
        let mut names: Vec<&str> = recs.iter().filter_map(|r| r.name.as_deref()).filter(|n| n.starts_with("req-")).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), 50);
        // The arguments are digested, never stored.
        assert!(recs.iter().all(|r| !format!("{r:?}").contains("secret stays out")));
    }

    async fn modified_column_is_named_by_verify(db: &Db) {
        mixed_log(db, 300).await;
        let victim = records(db).await.into_iter().find(|r| r.seq == 123).unwrap();
        db.execute("UPDATE audit_records SET outcome = outcome || 'x' WHERE seq = 123").await;
        let report = verify_db(db).await;
        assert_first(&report, 123, DefectKind::HashMismatch);
        assert_eq!(report.defects.len(), 1, "one change, one defect: {:#?}", report.defects);
        let first = report.first_defect().unwrap();
        assert_eq!((first.time_ms, first.kind.as_deref()), (Some(victim.time_ms), Some(victim.kind.as_str())));
        assert!(first.to_string().starts_with("chain \"main\", record 123 ("), "{first}");
    }

    async fn modified_time_or_details_or_prev_hash_is_named(db: &Db) {
        mixed_log(db, 60).await;
        for (seq, sql) in [
            (10, "UPDATE audit_records SET time_ms = time_ms + 1 WHERE seq = 10".to_owned()),
            (20, "UPDATE audit_records SET details = '{}' WHERE seq = 20".to_owned()),
            (30, format!("UPDATE audit_records SET prev_hash = {} WHERE seq = 30", db.bytes(&[1; 32]))),
            (40, "UPDATE audit_records SET tag = 'AAAAAAAAAAAAAAAAAAAAAA' WHERE seq = 40".to_owned()),
        ] {
            db.execute(&sql).await;
            let report = verify_db(db).await;
            let listed: Vec<u64> = report.defects.iter().map(|d| d.seq).collect();
            assert_eq!(listed.last(), Some(&seq), "{sql}: {:#?}", report.defects);
        }
        let report = verify_db(db).await;
        let kinds: Vec<(u64, DefectKind)> = report.defects.iter().map(|d| (d.seq, d.what)).collect();
        assert_eq!(kinds, [
            (10, DefectKind::HashMismatch),
            (20, DefectKind::HashMismatch),
            (30, DefectKind::HashMismatch),
            (40, DefectKind::BadTag),
        ]);
    }

    async fn deleted_record_is_named_as_a_gap(db: &Db) {
        mixed_log(db, 300).await;
        db.execute("DELETE FROM audit_records WHERE seq = 77").await;
        let report = verify_db(db).await;
        assert_first(&report, 77, DefectKind::Gap { missing: 1 });
        assert_eq!(report.defects.len(), 1, "{:#?}", report.defects);
        assert!(report.first_defect().unwrap().to_string().contains("deleted"));

        db.execute("DELETE FROM audit_records WHERE seq BETWEEN 200 AND 209").await;
        let report = verify_db(db).await;
        assert_eq!(report.defects[1].seq, 200);
        assert_eq!(report.defects[1].what, DefectKind::Gap { missing: 10 });
    }

    async fn deleted_newest_records_are_named_as_truncated(db: &Db) {
        mixed_log(db, 100).await;
        db.execute("DELETE FROM audit_records WHERE seq = 102").await;
        let report = verify_db(db).await;
        assert_first(&report, 102, DefectKind::Truncated { missing: 1 });

        // Also moving the head back is caught: its MAC does not match.
        let rec = records(db).await.pop().unwrap();
        db.execute(&format!(
            "UPDATE audit_heads SET seq = 101, hash = {} WHERE chain_id = 'main'",
            db.bytes(&rec.hash)
        ))
        .await;
        let report = verify_db(db).await;
        let kinds: Vec<(u64, DefectKind)> = report.defects.iter().map(|d| (d.seq, d.what)).collect();
        // The shutdown checkpoint still names 102; the head's MAC fails.
        assert_eq!(kinds, [(101, DefectKind::BadHead), (102, DefectKind::Truncated { missing: 1 })]);
    }

    async fn swapped_records_are_named_out_of_order(db: &Db) {
        mixed_log(db, 300).await;
        // Swap rows 50 and 60 by exchanging their positions.
        db.execute("UPDATE audit_records SET seq = 1000000 WHERE seq = 50").await;
        db.execute("UPDATE audit_records SET seq = 50 WHERE seq = 60").await;
        db.execute("UPDATE audit_records SET seq = 60 WHERE seq = 1000000").await;
        let report = verify_db(db).await;
        assert_first(&report, 50, DefectKind::OutOfOrder { original_seq: 60 });
        let kinds: Vec<(u64, DefectKind)> = report.defects.iter().map(|d| (d.seq, d.what)).collect();
        assert_eq!(kinds, [
            (50, DefectKind::OutOfOrder { original_seq: 60 }),
            (60, DefectKind::OutOfOrder { original_seq: 50 }),
        ]);
    }

    async fn adjacent_records_swapped_by_content_are_named(db: &Db) {
        mixed_log(db, 60).await;
        // Swap every column but seq between rows 20 and 21.
        let cols = "time_ms, kind, route, subject, client_id, method, name, outcome, reason, \
            policy_ids, args_digest, latency_us, peer, details, prev_hash, hash, tag";
        db.execute("CREATE TABLE swap AS SELECT * FROM audit_records WHERE seq IN (20, 21)").await;
        let set: Vec<String> = cols.split(", ").map(|c| format!("{c} = (SELECT {c} FROM swap WHERE swap.seq = 41 - audit_records.seq)")).collect();
        db.execute(&format!("UPDATE audit_records SET {} WHERE seq IN (20, 21)", set.join(", "))).await;
        let report = verify_db(db).await;
        assert_first(&report, 20, DefectKind::OutOfOrder { original_seq: 21 });
        assert_eq!(report.defects[1].what, DefectKind::OutOfOrder { original_seq: 20 });
    }

    async fn rewritten_record_with_recomputed_hash_is_named_by_its_mac(db: &Db) {
        mixed_log(db, 60).await;
        // An attacker who knows the encoding but not the key.
        let mut rec = records(db).await.into_iter().find(|r| r.seq == 33).unwrap();
        rec.outcome = "forged".to_owned();
        let hash = record_hash(&rec);
        db.execute(&format!(
            "UPDATE audit_records SET outcome = 'forged', hash = {} WHERE seq = 33",
            db.bytes(&hash)
        ))
        .await;
        let report = verify_db(db).await;
        assert_first(&report, 33, DefectKind::BadTag);
        // Record 34 no longer links, but the defect at 33 explains it.
        assert_eq!(report.defects.len(), 1, "{:#?}", report.defects);
    }

    async fn tampered_checkpoint_is_a_bad_checkpoint(db: &Db) {
        mixed_log(db, 120).await;
        // Checkpoints close the batch that passes each 50th record.
        let cps: Vec<i64> = db.audit().await.audit_checkpoints("main", -1, 10).await.unwrap().iter().map(|c| c.seq).collect();
        assert_eq!(cps.len(), 3, "{cps:?}");
        let (first, second) = (cps[0], cps[1]);
        db.execute(&format!("UPDATE audit_checkpoints SET time_ms = time_ms + 1 WHERE seq = {second}")).await;
        let report = verify_db(db).await;
        assert_first(&report, second as u64, DefectKind::BadCheckpoint);
        assert_eq!(report.defects.len(), 1, "{:#?}", report.defects);

        // A checkpoint moved onto another record does not match it.
        db.execute(&format!("DELETE FROM audit_checkpoints WHERE seq = {second}")).await;
        db.execute(&format!("UPDATE audit_checkpoints SET seq = {} WHERE seq = {first}", first - 1)).await;
        let report = verify_db(db).await;
        assert_first(&report, first as u64 - 1, DefectKind::BadCheckpoint);
    }

    async fn wrong_master_key_fails_every_mac(db: &Db) {
        mixed_log(db, 100).await;
        let other = MasterKey::from_bytes(&[8; 32]).unwrap();
        let report = verify(&*db.audit().await, &other, &VerifyOptions::default()).await.unwrap();
        assert_first(&report, 1, DefectKind::WrongKey);
        assert_eq!(report.defects.len(), 1, "folded into one defect: {:#?}", report.defects);
        assert_eq!(report.omitted_defects, 0);
    }

    async fn crash_without_shutdown_then_reopen_continues_the_chain(db: &Db) {
        let log = db.log(AuditConfig::default()).await;
        for i in 0..40 {
            log.append(mixed_event(i)).await.unwrap();
        }
        // No shutdown: like a killed process, minus the queue (drained on drop).
        drop(log);
        // A second writer, while the first one's task may still be draining.
        let log = db.log(AuditConfig::default()).await;
        for i in 40..80 {
            log.append(mixed_event(i)).await.unwrap();
        }
        log.shutdown().await.unwrap();
        let report = verify_db(db).await;
        assert!(report.is_clean(), "{:#?}", report.defects);
        assert_eq!(report.records, 83);
        let kinds: Vec<String> = records(db).await.into_iter().map(|r| r.kind).filter(|k| k.starts_with("audit_")).collect();
        assert_eq!(kinds, ["audit_started", "audit_started", "audit_stopped"]);
    }

    async fn failing_store_makes_append_fail_promptly(db: &Db) {
        let log = db.log(AuditConfig {
            retry_interval: Duration::from_millis(50),
            ..AuditConfig::default()
        }).await;
        log.append(mixed_event(0)).await.unwrap();
        assert!(log.ready().is_ok());
        db.execute("DROP TABLE audit_records").await;
        let started = Instant::now();
        let err = log.append(mixed_event(1)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
        assert!(matches!(err, AuditError::Write(_)), "{err:?}");
        assert!(err.is_unavailable());
        assert!(matches!(log.ready(), Err(AuditError::Unavailable)));
        assert!(log.stats().failing);
        // Still failing after the probes: the gateway keeps refusing.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(log.ready().is_err());
        assert!(log.append(mixed_event(2)).await.is_err());
    }

    async fn export_lines_parse_as_json_with_the_required_fields(db: &Db) {
        mixed_log(db, 60).await;
        let store = db.audit().await;
        let mut out = Vec::new();
        let n = export(&*store, &ExportOptions::default(), &mut out).await.unwrap();
        assert_eq!(n, 62);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 62);
        for (i, line) in lines.iter().enumerate() {
            for field in ["time", "kind", "route", "subject", "client_id", "method", "name", "outcome"] {
                assert!(line.get(field).is_some(), "line {i} lacks {field}: {line}");
            }
            assert_eq!(line["seq"], json!(i + 1));
            assert!(line["time"].as_str().unwrap().ends_with('Z'));
        }
        let request = lines.iter().find(|l| l["kind"] == "mcp_request" && l["outcome"] == "ok").unwrap();
        assert_eq!(request["route"], "github");
        assert_eq!(request["method"], "tools/call");
        assert_eq!(request["latency_us"], 1200);
        assert_eq!(request["args_digest"].as_str().unwrap().len(), 64);
        let decision = lines.iter().find(|l| l["kind"] == "authz_decision").unwrap();
        assert_eq!(decision["policy_ids"], json!(["allow-readers"]));
        // The chain's linkage is in the export.
        assert_eq!(lines[1]["prev_hash"], lines[0]["hash"]);

        // --since: only records at or after the time; --after-seq likewise.
        let since = lines[40]["time_ms"].as_i64().unwrap();
        let mut out = Vec::new();
        let options = ExportOptions { since_ms: Some(since), ..ExportOptions::default() };
        export(&*store, &options, &mut out).await.unwrap();
        let text = String::from_utf8(out).unwrap();
        let since_lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert!(since_lines.iter().all(|l| l["time_ms"].as_i64().unwrap() >= since));
        assert!(since_lines.iter().any(|l| l["seq"] == 41));
        let after_all = lines.iter().map(|l| l["time_ms"].as_i64().unwrap()).max().unwrap() + 1;
        let options = ExportOptions { since_ms: Some(after_all), ..ExportOptions::default() };
        assert_eq!(export(&*store, &options, &mut Vec::new()).await.unwrap(), 0);
        let mut out = Vec::new();
        let options = ExportOptions { after_seq: Some(60), format: ExportFormat::Text, ..ExportOptions::default() };
        assert_eq!(export(&*store, &options, &mut out).await.unwrap(), 2);
        let text = String::from_utf8(out).unwrap();
        assert!(text.lines().next().unwrap().contains(" main#61 "), "{text}");
    }

    async fn live_sink_file_gets_the_same_lines_as_export(db: &Db) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "earlier line\n").unwrap();
        let log = db.log(AuditConfig {
            sink: Some(SinkTarget::File(path.clone())),
            ..AuditConfig::default()
        }).await;
        for i in 0..50 {
            log.append_nowait(mixed_event(i)).unwrap();
        }
        log.append(mixed_event(50)).await.unwrap();
        log.shutdown().await.unwrap();
        let mut exported = Vec::new();
        export(&*db.audit().await, &ExportOptions::default(), &mut exported).await.unwrap();
        let sunk = std::fs::read_to_string(&path).unwrap();
        assert_eq!(sunk, format!("earlier line\n{}", String::from_utf8(exported).unwrap()), "appended, same lines");
        assert_eq!(log.stats().sink_dropped, 0);
    }

    async fn anchor_detects_the_tail_cut_with_an_old_head_restored(db: &Db) {
        // An attacker copies the head row at some point…
        let log = db.log(AuditConfig::default()).await;
        for i in 0..10 {
            log.append(mixed_event(i)).await.unwrap();
        }
        let old_head = db.audit().await.audit_head("main").await.unwrap().unwrap();
        for i in 10..20 {
            log.append(mixed_event(i)).await.unwrap();
        }
        log.shutdown().await.unwrap();
        let report = verify_db(db).await;
        let anchor: Anchor = report.summaries[0].head.clone().unwrap();
        assert_eq!(anchor.to_string().parse::<Anchor>().unwrap(), anchor);

        // …and later cuts the records after it and restores it, deleting
        // the checkpoints that named later records.
        db.execute(&format!("DELETE FROM audit_records WHERE seq > {}", old_head.seq)).await;
        db.execute(&format!("DELETE FROM audit_checkpoints WHERE seq > {}", old_head.seq)).await;
        db.execute(&format!(
            "UPDATE audit_heads SET seq = {}, hash = {}, tag = '{}'",
            old_head.seq, db.bytes(&old_head.hash), old_head.tag
        ))
        .await;
        // Undetectable from the database alone (documented)…
        assert!(verify_db(db).await.is_clean());
        // …but not against an anchor kept elsewhere.
        let options = VerifyOptions { anchors: vec![anchor], ..VerifyOptions::default() };
        let report = verify(&*db.audit().await, &master_key(), &options).await.unwrap();
        assert_first(&report, old_head.seq as u64 + 1, DefectKind::Truncated { missing: 22 - old_head.seq as u64 });
    }

    async fn sigkill_during_load_loses_no_acknowledged_record(db: &Db) {
        sigkill_run(db).await;
    }

    async fn append_throughput_with_64_concurrent_appenders(db: &Db) {
        let log = db.log(AuditConfig::default()).await;
        let per_task = 200;
        let started = Instant::now();
        let tasks: Vec<_> = (0..64u32)
            .map(|t| {
                let log = log.clone();
                tokio::spawn(async move {
                    for i in 0..per_task {
                        log.append(mixed_event(t * per_task + i)).await.unwrap();
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        let elapsed = started.elapsed();
        let stats = log.stats();
        log.shutdown().await.unwrap();
        let n = 64 * per_task;
        let backend = match db.kind { Kind::Sqlite { .. } => "sqlite", Kind::Postgres { .. } => "postgres" };
        eprintln!(
            "audit append throughput ({backend}, 64 concurrent appenders, durable commits): \
             {n} appends in {elapsed:.2?} = {:.0}/s, {} batches, {:.1} records/batch",
            f64::from(n) / elapsed.as_secs_f64(),
            stats.batches,
            stats.committed as f64 / stats.batches as f64,
        );
        assert!(verify_db(db).await.is_clean());
    }
}

/// The SIGKILL test's parent: starts this test binary as a child that loads
/// the log from 32 tasks, printing `ack NAME` after each acknowledged
/// append; kills it with SIGKILL mid-run; then every acknowledged record
/// must be in the database and the chain must verify.
async fn sigkill_run(db: &Db) {
    use tokio::io::AsyncBufReadExt as _;

    // Created by the parent, so the child finds the schema migrated.
    drop(db.audit().await);
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "sigkill_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_URL_ENV, &db.url)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let mut acked = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.len() < 1500 && Instant::now() < deadline {
        let Ok(Ok(Some(line))) =
            tokio::time::timeout(Duration::from_secs(30), lines.next_line()).await
        else {
            break;
        };
        if let Some(name) = line.strip_prefix("ack ") {
            acked.push(name.to_owned());
        }
    }
    assert!(
        acked.len() >= 100,
        "the child acknowledged only {} appends",
        acked.len()
    );
    // SIGKILL on Unix.
    child.start_kill().unwrap();
    // Acknowledgements printed before the kill count too.
    while let Ok(Some(line)) = lines.next_line().await {
        if let Some(name) = line.strip_prefix("ack ") {
            acked.push(name.to_owned());
        }
    }
    let status = child.wait().await.unwrap();
    assert!(!status.success(), "the child was killed, not finished");

    let stored: std::collections::HashSet<String> = records(db)
        .await
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    let lost: Vec<&String> = acked
        .iter()
        .filter(|name| !stored.contains(*name))
        .collect();
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    let report = verify_db(db).await;
    assert!(report.is_clean(), "{:#?}", report.defects);
    eprintln!(
        "SIGKILL after {} acknowledged appends: none lost, {} records, chain verifies",
        acked.len(),
        report.records
    );
}

/// The SIGKILL test's child; does nothing unless started by `sigkill_run`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_child() {
    use std::io::Write as _;

    let Ok(url) = std::env::var(CHILD_URL_ENV) else {
        return;
    };
    let store = open_audit(&url).await.unwrap();
    let log = AuditLog::open(store, &master_key(), AuditConfig::default())
        .await
        .unwrap();
    let tasks: Vec<_> = (0..32u32)
        .map(|t| {
            let log = log.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let name = format!("kill-{t}-{i}");
                    let ev = Event::new(EventKind::McpRequest, outcome::OK).name(name.clone());
                    log.append(ev).await.unwrap();
                    // Straight to the pipe, past the test harness's capture.
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "ack {name}").unwrap();
                    out.flush().unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

/// An [`AuditStore`] whose appends fail or hang on demand.
#[derive(Debug)]
struct FaultyStore {
    inner: Arc<dyn AuditStore>,
    /// 0 works, 1 fails, 2 hangs.
    mode: AtomicU8,
}

#[async_trait]
impl AuditStore for FaultyStore {
    async fn append_audit(
        &self,
        chain_id: &str,
        records: &mut [AuditRecord],
        sealer: &dyn AuditSealer,
    ) -> Result<SealedBatch, StoreError> {
        match self.mode.load(Ordering::Relaxed) {
            0 => self.inner.append_audit(chain_id, records, sealer).await,
            1 => Err(StoreError::InvalidRecord("injected failure")),
            _ => std::future::pending().await,
        }
    }

    async fn audit_chains(&self) -> Result<Vec<String>, StoreError> {
        self.inner.audit_chains().await
    }

    async fn audit_head(&self, chain_id: &str) -> Result<Option<AuditHead>, StoreError> {
        self.inner.audit_head(chain_id).await
    }

    async fn audit_records(
        &self,
        chain_id: &str,
        after_seq: i64,
        since_ms: Option<i64>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        self.inner
            .audit_records(chain_id, after_seq, since_ms, limit)
            .await
    }

    async fn audit_first_seq_since(
        &self,
        chain_id: &str,
        since_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        self.inner.audit_first_seq_since(chain_id, since_ms).await
    }

    async fn audit_checkpoints(
        &self,
        chain_id: &str,
        after_seq: i64,
        limit: u32,
    ) -> Result<Vec<AuditCheckpoint>, StoreError> {
        self.inner
            .audit_checkpoints(chain_id, after_seq, limit)
            .await
    }
}

#[tokio::test]
async fn store_outage_refuses_then_recovers_without_losing_acknowledged_records() {
    let db = Db::sqlite();
    let store = Arc::new(FaultyStore {
        inner: db.audit().await,
        mode: AtomicU8::new(0),
    });
    let config = AuditConfig {
        retry_interval: Duration::from_millis(20),
        ..AuditConfig::default()
    };
    let log = AuditLog::open(store.clone(), &master_key(), config)
        .await
        .unwrap();
    log.append(mixed_event(0)).await.unwrap();

    store.mode.store(1, Ordering::Relaxed);
    let err = log.append(mixed_event(1)).await.unwrap_err();
    assert!(
        err.is_unavailable() && matches!(err, AuditError::Write(_)),
        "{err:?}"
    );
    assert!(matches!(log.ready(), Err(AuditError::Unavailable)));
    // Unacknowledged events of a failed batch are lost (and counted).
    log.append_nowait(mixed_event(2)).unwrap();
    let _ = log.append(mixed_event(3)).await;

    store.mode.store(0, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.ready().is_err() {
        assert!(
            Instant::now() < deadline,
            "the probe never saw the store recover"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    log.append(mixed_event(4)).await.unwrap();
    log.shutdown().await.unwrap();
    assert!(log.stats().failed >= 3);
    let names: Vec<String> = records(&db)
        .await
        .into_iter()
        .filter_map(|r| r.name)
        .collect();
    assert!(
        !names.iter().any(|n| n == "req-2"),
        "a failed batch is not half-written"
    );
    assert!(verify_db(&db).await.is_clean());
}

#[tokio::test]
async fn stuck_store_times_out_appends_and_fills_the_queue_without_hanging() {
    let db = Db::sqlite();
    let store = Arc::new(FaultyStore {
        inner: db.audit().await,
        mode: AtomicU8::new(0),
    });
    let config = AuditConfig {
        append_timeout: Duration::from_millis(200),
        queue_capacity: 4,
        max_batch: 1,
        ..AuditConfig::default()
    };
    let log = AuditLog::open(store.clone(), &master_key(), config)
        .await
        .unwrap();
    store.mode.store(2, Ordering::Relaxed);

    let started = Instant::now();
    let err = log.append(mixed_event(1)).await.unwrap_err();
    assert!(matches!(err, AuditError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // An append queued behind the stuck commit fails the same way, rather
    // than wait for a commit that does not come.
    let started = Instant::now();
    let err = log.append(mixed_event(2)).await.unwrap_err();
    assert!(matches!(err, AuditError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(2));
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        matches!(log.ready(), Err(AuditError::Unavailable)),
        "a commit is stuck"
    );
    // The writer is stuck on one batch; the queue fills, then appends are
    // refused at once.
    let mut refused = false;
    for i in 0..10 {
        if let Err(err) = log.append_nowait(mixed_event(i)) {
            assert!(matches!(err, AuditError::Overloaded), "{err:?}");
            refused = true;
            break;
        }
    }
    assert!(refused);
    let started = Instant::now();
    assert!(matches!(
        log.append(mixed_event(99)).await,
        Err(AuditError::Overloaded)
    ));
    assert!(started.elapsed() < Duration::from_millis(100));
}

#[tokio::test]
async fn append_after_shutdown_is_refused_and_config_is_checked() {
    let db = Db::sqlite();
    let log = db.log(AuditConfig::default()).await;
    log.shutdown().await.unwrap();
    assert!(matches!(
        log.append(mixed_event(0)).await,
        Err(AuditError::Closed)
    ));
    assert!(matches!(
        log.append_nowait(mixed_event(0)),
        Err(AuditError::Closed)
    ));
    assert!(matches!(log.ready(), Err(AuditError::Closed)));
    assert!(matches!(log.shutdown().await, Err(AuditError::Closed)));

    for bad in [
        AuditConfig {
            chain_id: String::new(),
            ..AuditConfig::default()
        },
        AuditConfig {
            queue_capacity: 0,
            ..AuditConfig::default()
        },
        AuditConfig {
            checkpoint_every: 0,
            ..AuditConfig::default()
        },
    ] {
        let err = AuditLog::open(db.audit().await, &master_key(), bad)
            .await
            .unwrap_err();
        assert!(matches!(err, AuditError::InvalidConfig(_)), "{err:?}");
    }
    let err = AuditLog::open(
        db.audit().await,
        &master_key(),
        AuditConfig {
            sink: Some(SinkTarget::File(db_dir(&db).join("absent/audit.jsonl"))),
            ..AuditConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(err, AuditError::Sink(_)), "{err:?}");
}

fn db_dir(db: &Db) -> std::path::PathBuf {
    match &db.kind {
        Kind::Sqlite { dir } => dir.path().to_owned(),
        Kind::Postgres { .. } => unreachable!(),
    }
}

#[tokio::test]
async fn several_chains_verify_independently() {
    let db = Db::sqlite();
    for chain in ["eu", "us"] {
        let log = db
            .log(AuditConfig {
                chain_id: chain.to_owned(),
                ..AuditConfig::default()
            })
            .await;
        for i in 0..10 {
            log.append(mixed_event(i)).await.unwrap();
        }
        log.shutdown().await.unwrap();
    }
    let report = verify_db(&db).await;
    assert!(report.is_clean(), "{:#?}", report.defects);
    assert_eq!((report.chains, report.records), (2, 24));
    db.execute("DELETE FROM audit_records WHERE chain_id = 'us' AND seq = 3")
        .await;
    let report = verify_db(&db).await;
    let first = report.first_defect().unwrap();
    assert_eq!((first.chain_id.as_str(), first.seq), ("us", 3));
}
