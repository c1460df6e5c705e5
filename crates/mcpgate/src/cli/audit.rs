//! `mcpgate audit` and the audit trail's set-up for `serve`.

use super::authserver::master_key;
use super::*;

/// Opens the audit writer of `serve` (`[audit]`), and records the start.
pub(super) async fn open_log(
    cfg: &Config,
    store: Arc<dyn mcpgate_store::AuditStore>,
) -> anyhow::Result<mcpgate_audit::AuditLog> {
    let sink = cfg.audit.sink.as_deref().map(|s| match s {
        "stdout" => mcpgate_audit::SinkTarget::Stdout,
        path => mcpgate_audit::SinkTarget::File(cfg.base_dir.join(path)),
    });
    let config = mcpgate_audit::AuditConfig {
        sink,
        commit_delay: std::time::Duration::from_micros(cfg.audit.commit_delay_us),
        ..mcpgate_audit::AuditConfig::default()
    };
    let log = mcpgate_audit::AuditLog::open(store, &master_key(cfg)?, config)
        .await
        .context("opening the audit trail ([audit]; it is written to the [storage] database)")?;
    let routes: Vec<&str> = cfg.routes.iter().map(|r| r.path.as_str()).collect();
    log.append(
        mcpgate_audit::Event::new(
            mcpgate_audit::EventKind::ConfigLoaded,
            mcpgate_audit::outcome::OK,
        )
        .details(json!({
            "public_url": cfg.public_url.as_str(),
            "routes": routes,
            "authorization_server": cfg.authorization_server.enabled,
        })),
    )
    .await
    .context("writing the first audit record")?;
    Ok(log)
}

pub(super) async fn audit(cmd: AuditCommand) -> anyhow::Result<()> {
    match cmd {
        AuditCommand::Verify { common, anchors } => {
            let cfg = load(&common.config)?;
            let store = mcpgate_store::open_audit(&cfg.storage.resolved_url(&cfg.base_dir))
                .await
                .context("opening storage ([storage] url)")?;
            let mut options = mcpgate_audit::VerifyOptions::default();
            for a in &anchors {
                options.anchors.push(
                    a.parse()
                        .map_err(|_| anyhow!("--anchor {a:?}: expected CHAIN:SEQ:HEX"))?,
                );
            }
            let report = mcpgate_audit::verify(&*store, &master_key(&cfg)?, &options).await?;
            if common.json {
                let defects: Vec<_> = report
                    .defects
                    .iter()
                    .map(|d| json!({"chain": d.chain_id, "seq": d.seq, "defect": d.to_string()}))
                    .collect();
                let heads: Vec<_> = report
                    .summaries
                    .iter()
                    .map(|c| json!({"chain": c.chain_id, "records": c.records, "last_seq": c.last_seq}))
                    .collect();
                println!(
                    "{}",
                    json!({"ok": report.is_clean(), "records": report.records,
                           "checkpoints": report.checkpoints, "chains": heads,
                           "defects": defects, "omitted_defects": report.omitted_defects})
                );
            } else {
                println!("{report}");
                for d in report.defects.iter().skip(1).take(20) {
                    println!("  also: {d}");
                }
            }
            if !report.is_clean() {
                let why = format!(
                    "the audit trail has been tampered with or damaged{}",
                    report
                        .first_defect()
                        .map(|d| format!(" (first: {d})"))
                        .unwrap_or_default()
                );
                // With --json the report (`"ok": false`) is the answer.
                if common.json {
                    return Err(Reported(why).into());
                }
                bail!(why);
            }
            Ok(())
        }
        AuditCommand::Export {
            common,
            since,
            text,
        } => {
            let cfg = load(&common.config)?;
            let store = mcpgate_store::open_audit(&cfg.storage.resolved_url(&cfg.base_dir))
                .await
                .context("opening storage ([storage] url)")?;
            let now_ms = (mcpgate_gateway::authn::now() * 1000) as i64;
            let since_ms = match &since {
                Some(s) => Some(
                    mcpgate_audit::parse_since(s, now_ms)
                        .map_err(|e| anyhow!("--since {s:?}: {e}"))?,
                ),
                None => None,
            };
            let options = mcpgate_audit::ExportOptions {
                since_ms,
                format: if text {
                    mcpgate_audit::ExportFormat::Text
                } else {
                    mcpgate_audit::ExportFormat::JsonLines
                },
                ..Default::default()
            };
            let mut out = tokio::io::stdout();
            mcpgate_audit::export(&*store, &options, &mut out).await?;
            Ok(())
        }
    }
}

/// An administrative change that succeeded, to pass to [`record_admin`].
pub(super) fn admin_event(kind: mcpgate_audit::EventKind) -> mcpgate_audit::Event {
    mcpgate_audit::Event::new(kind, mcpgate_audit::outcome::OK)
}

/// Records an administrative change made from the command line (API keys,
/// clients, signing keys, users, consents) in the audit trail, when it is
/// on. The change is already stored; a failure here is reported so that
/// the operator knows the trail lacks it.
/// The event is marked `"via": "cli"` in its details.
pub(super) async fn record_admin(cfg: &Config, mut ev: mcpgate_audit::Event) -> anyhow::Result<()> {
    if !cfg.audit.enabled {
        return Ok(());
    }
    match &mut ev.details {
        Some(serde_json::Value::Object(m)) => {
            m.insert("via".into(), "cli".into());
        }
        d => *d = Some(json!({"via": "cli"})),
    }
    let store = mcpgate_store::open_audit(&cfg.storage.resolved_url(&cfg.base_dir))
        .await
        .context("opening storage ([storage] url)")?;
    let log = mcpgate_audit::AuditLog::open(
        store,
        &master_key(cfg)?,
        mcpgate_audit::AuditConfig::default(),
    )
    .await
    .context("opening the audit trail")?;
    let written = log.append(ev).await;
    let closed = log.shutdown().await;
    written.context("the change was made but its audit record could not be written")?;
    closed.context("closing the audit trail")?;
    Ok(())
}
