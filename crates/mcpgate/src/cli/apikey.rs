//! `mcpgate apikey`.

use super::*;

pub(super) async fn apikey(cmd: ApiKeyCommand) -> anyhow::Result<()> {
    match cmd {
        ApiKeyCommand::Create {
            common,
            name,
            route,
            scopes,
            expires_in,
        } => {
            let cfg = load(&common.config)?;
            let Some(r) = cfg.routes.iter().find(|r| r.path == route) else {
                bail!(
                    "no route with path {route:?} in {}; configured routes: {}",
                    common.config.display(),
                    cfg.routes
                        .iter()
                        .map(|r| r.path.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            if r.auth == AuthMode::None {
                bail!("route {route:?} has auth = \"none\": it needs no key");
            }
            let scopes = ScopeSet::parse(&scopes).context("--scopes")?;
            let now = mcpgate_gateway::authn::now() as i64;
            let expires_at = match expires_in {
                Some(d) => Some(now + parse_duration(&d)? as i64),
                None => None,
            };
            let store = open_store(&cfg).await?;
            let key = mcpgate_crypto::apikey::generate()?;
            let rec = ApiKeyRecord {
                tenant_id: DEFAULT_TENANT.into(),
                id: key.id.clone(),
                name: name.clone(),
                route: route.clone(),
                scopes: scopes.iter().map(|s| s.as_str().to_owned()).collect(),
                secret_hash: key.hash.to_vec(),
                created_at: now,
                expires_at,
                revoked_at: None,
            };
            store.insert_api_key(&rec).await?;
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::ApikeyCreated)
                    .route(&route)
                    .subject(format!("apikey:{}", key.id))
                    .details(json!({"id": key.id, "name": name, "scopes": rec.scopes, "expires_at": expires_at})),
            )
            .await?;
            let secret = std::str::from_utf8(key.key.expose())?;
            let missing = scopes.missing(&r.scopes);
            if common.json {
                println!(
                    "{}",
                    json!({
                        "id": key.id, "key": secret, "name": name, "route": route,
                        "scopes": rec.scopes, "expires_at": expires_at,
                    })
                );
            } else {
                println!("{secret}");
                eprintln!(
                    "Created API key {} ({name}) for route {route} with scopes \"{}\"{}.\n\
                     This is the only time the key is shown; store it now. Use it as\n  Authorization: Bearer {}…",
                    key.id,
                    scopes.to_space_delimited(),
                    expires_at
                        .map(|e| format!(", expiring at unix time {e}"))
                        .unwrap_or_default(),
                    &secret[..12],
                );
            }
            if !missing.is_empty() {
                eprintln!(
                    "warning: route {route} needs scope(s) {:?} that this key lacks; its requests will be refused",
                    missing.iter().map(|s| s.as_str()).collect::<Vec<_>>()
                );
            }
            Ok(())
        }
        ApiKeyCommand::List { common } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let keys = store.list_api_keys(DEFAULT_TENANT).await?;
            let now = mcpgate_gateway::authn::now() as i64;
            if common.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "id": k.id, "name": k.name, "route": k.route, "scopes": k.scopes,
                            "created_at": k.created_at, "expires_at": k.expires_at,
                            "revoked_at": k.revoked_at, "state": state(k, now),
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if keys.is_empty() {
                println!("no API keys");
            } else {
                println!(
                    "{:<18} {:<20} {:<16} {:<8} SCOPES",
                    "ID", "NAME", "ROUTE", "STATE"
                );
                for k in &keys {
                    println!(
                        "{:<18} {:<20} {:<16} {:<8} {}",
                        k.id,
                        k.name,
                        k.route,
                        state(k, now),
                        k.scopes.join(" ")
                    );
                }
            }
            Ok(())
        }
        ApiKeyCommand::Revoke { common, id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let now = mcpgate_gateway::authn::now() as i64;
            let Some(_) = store.api_key(DEFAULT_TENANT, &id).await? else {
                bail!("no API key with id {id:?} (see `mcpgate apikey list`)");
            };
            let changed = store.revoke_api_key(DEFAULT_TENANT, &id, now).await?;
            if changed {
                super::audit::record_admin(
                    &cfg,
                    super::audit::admin_event(mcpgate_audit::EventKind::ApikeyRevoked)
                        .subject(format!("apikey:{id}"))
                        .details(json!({"id": id})),
                )
                .await?;
            }
            if common.json {
                println!(
                    "{}",
                    json!({"id": id, "revoked": true, "already_revoked": !changed})
                );
            } else if changed {
                println!("revoked API key {id}");
            } else {
                println!("API key {id} was already revoked");
            }
            Ok(())
        }
    }
}

fn state(k: &ApiKeyRecord, now: i64) -> &'static str {
    if k.revoked_at.is_some() {
        "revoked"
    } else if k.expires_at.is_some_and(|e| e <= now) {
        "expired"
    } else {
        "active"
    }
}

/// `30d`, `12h`, `15m`, `3600s` or a bare number of seconds.
fn parse_duration(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, 'd')) => (&s[..i], 86_400),
        Some((i, 'h')) => (&s[..i], 3_600),
        Some((i, 'm')) => (&s[..i], 60),
        Some((i, 's')) => (&s[..i], 1),
        _ => (s, 1),
    };
    let n: u64 = num
        .parse()
        .with_context(|| format!("--expires-in {s:?}: expected e.g. 30d, 12h, 15m or 3600s"))?;
    if n == 0 {
        bail!("--expires-in must be positive");
    }
    n.checked_mul(mult)
        .with_context(|| format!("--expires-in {s:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("30d").unwrap(), 2_592_000);
        assert_eq!(parse_duration("12h").unwrap(), 43_200);
        assert_eq!(parse_duration("15m").unwrap(), 900);
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert!(parse_duration("0d").is_err());
        assert!(parse_duration("soon").is_err());
    }
}
