//! `mcpgate client` and `mcpgate keys`.

use super::*;

/// The master key: `MCPGATE_MASTER_KEY`, else the key file (created on
/// first use, mode 0600).
pub(super) fn master_key(cfg: &Config) -> anyhow::Result<mcpgate_crypto::master::MasterKey> {
    Ok(match std::env::var("MCPGATE_MASTER_KEY") {
        Ok(v) => mcpgate_crypto::master::MasterKey::from_env_value(&v)?,
        Err(_) => mcpgate_crypto::master::MasterKey::load_or_create_file(&cfg.master_key_path())?,
    })
}

pub(super) async fn open_key_ring(
    cfg: &Config,
    store: Arc<dyn Store>,
) -> anyhow::Result<Arc<mcpgate_authserver::KeyRing>> {
    let a = &cfg.authorization_server;
    mcpgate_authserver::KeyRing::open(
        store,
        master_key(cfg)?,
        a.access_token_ttl_secs,
        a.key_rotation_days,
    )
    .await
    .context("loading the authorization server's signing keys")
}

pub(super) fn require_authorization_server(cfg: &Config, path: &Path) -> anyhow::Result<()> {
    if !cfg.authorization_server.enabled {
        bail!(
            "the built-in authorization server is off in {}; add\n  [authorization_server]\n  enabled = true",
            path.display()
        );
    }
    Ok(())
}

pub(super) async fn client(cmd: ClientCommand) -> anyhow::Result<()> {
    let now = mcpgate_gateway::authn::now() as i64;
    match cmd {
        ClientCommand::Add {
            common,
            name,
            redirect_uris,
            confidential,
            grants,
            auth_method,
            jwks,
            scope,
        } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let grants = if grants.is_empty() {
                vec!["authorization_code".to_owned(), "refresh_token".to_owned()]
            } else {
                grants
            };
            for g in &grants {
                if !matches!(
                    g.as_str(),
                    "authorization_code" | "refresh_token" | "client_credentials"
                ) {
                    bail!(
                        "--grant {g:?}: choose authorization_code, refresh_token or client_credentials"
                    );
                }
            }
            if grants.iter().any(|g| g == "client_credentials") && !confidential {
                bail!(
                    "--grant client_credentials needs --confidential (the client must authenticate)"
                );
            }
            for u in &redirect_uris {
                if let Err(why) = mcpgate_authserver::redirect::check_registrable(u) {
                    bail!("--redirect-uri {u:?}: {why}");
                }
            }
            if let Some(sc) = &scope {
                ScopeSet::parse(sc).context("--scope")?;
            }
            let spec = mcpgate_authserver::clients::ClientSpec {
                name: name.clone(),
                redirect_uris,
                confidential,
                grant_types: grants,
                scope,
            };
            let mut new = mcpgate_authserver::clients::build(&spec, now)?;
            match (auth_method.as_str(), jwks) {
                ("private_key_jwt", Some(path)) => {
                    if !confidential {
                        bail!("--auth-method private_key_jwt needs --confidential");
                    }
                    let text = std::fs::read_to_string(&path)
                        .with_context(|| format!("--jwks {}", path.display()))?;
                    let parsed = mcpgate_crypto::jwt::Jwks::parse(text.as_bytes())
                        .with_context(|| format!("--jwks {}: not a JWK Set", path.display()))?;
                    if parsed.is_empty() {
                        bail!(
                            "--jwks {}: no usable public key (ES256, EdDSA, RS256 or PS256)",
                            path.display()
                        );
                    }
                    new.record.token_endpoint_auth_method = auth_method;
                    new.record.jwks = Some(text);
                    // The key replaces the secret.
                    new.record.secret_hash = None;
                    new.secret = None;
                }
                ("private_key_jwt", None) => {
                    bail!("--auth-method private_key_jwt needs --jwks FILE")
                }
                (_, Some(_)) => bail!("--jwks is only for --auth-method private_key_jwt"),
                _ if confidential => new.record.token_endpoint_auth_method = auth_method,
                _ => {}
            }
            let store = open_store(&cfg).await?;
            store.insert_client(&new.record).await?;
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::ClientRegistered)
                    .client_id(&new.record.client_id)
                    .details(json!({"origin": "cli", "name": name,
                                    "redirect_uris": new.record.redirect_uris,
                                    "token_endpoint_auth_method": new.record.token_endpoint_auth_method})),
            )
            .await?;
            let secret = match &new.secret {
                Some(s) => Some(std::str::from_utf8(s.expose())?.to_owned()),
                None => None,
            };
            if common.json {
                let mut v = json!({
                    "client_id": new.record.client_id, "name": name,
                    "token_endpoint_auth_method": new.record.token_endpoint_auth_method,
                    "grant_types": new.record.grant_types, "redirect_uris": new.record.redirect_uris,
                });
                if let Some(s) = &secret {
                    v["client_secret"] = json!(s);
                }
                println!("{v}");
            } else {
                println!("client_id: {}", new.record.client_id);
                if let Some(s) = &secret {
                    println!("client_secret: {s}");
                    eprintln!("This is the only time the secret is shown; store it now.");
                }
            }
            Ok(())
        }
        ClientCommand::List { common } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let clients = store.list_clients(DEFAULT_TENANT).await?;
            if common.json {
                let v: Vec<_> = clients
                    .iter()
                    .map(|c| {
                        json!({
                            "client_id": c.client_id, "name": c.name,
                            "token_endpoint_auth_method": c.token_endpoint_auth_method,
                            "grant_types": c.grant_types, "redirect_uris": c.redirect_uris,
                            "origin": c.origin, "created_at": c.created_at, "last_used_at": c.last_used_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if clients.is_empty() {
                println!("no clients");
            } else {
                println!("{:<24} {:<20} {:<20} GRANTS", "CLIENT_ID", "NAME", "AUTH");
                for c in &clients {
                    println!(
                        "{:<24} {:<20} {:<20} {}",
                        c.client_id,
                        c.name,
                        c.token_endpoint_auth_method,
                        c.grant_types.join(" ")
                    );
                }
            }
            Ok(())
        }
        ClientCommand::Remove { common, client_id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            if !store.delete_client(DEFAULT_TENANT, &client_id).await? {
                bail!("no client {client_id:?} (see `mcpgate client list`)");
            }
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::ClientDeleted)
                    .client_id(&client_id),
            )
            .await?;
            if common.json {
                println!("{}", json!({"client_id": client_id, "removed": true}));
            } else {
                println!("removed client {client_id}");
            }
            Ok(())
        }
        ClientCommand::RotateSecret { common, client_id } => {
            let cfg = load(&common.config)?;
            let store = open_store(&cfg).await?;
            let Some(c) = store.client(DEFAULT_TENANT, &client_id).await? else {
                bail!("no client {client_id:?} (see `mcpgate client list`)");
            };
            if c.secret_hash.is_none() {
                bail!("client {client_id:?} is public: it has no secret to rotate");
            }
            let (secret, hash) = mcpgate_authserver::clients::new_secret()?;
            let until = now + cfg.authorization_server.secret_rotation_grace_secs as i64;
            store
                .rotate_client_secret(DEFAULT_TENANT, &client_id, &hash, until)
                .await?;
            super::audit::record_admin(
                &cfg,
                super::audit::admin_event(mcpgate_audit::EventKind::ClientSecretRotated)
                    .client_id(&client_id)
                    .details(json!({"previous_valid_until": until})),
            )
            .await?;
            let secret = std::str::from_utf8(secret.expose())?.to_owned();
            if common.json {
                println!(
                    "{}",
                    json!({"client_id": client_id, "client_secret": secret, "previous_secret_valid_until": until})
                );
            } else {
                println!("client_secret: {secret}");
                eprintln!("The previous secret keeps working until unix time {until}.");
            }
            Ok(())
        }
    }
}

pub(super) async fn keys(cmd: KeysCommand) -> anyhow::Result<()> {
    match cmd {
        KeysCommand::List { common } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let keys = mcpgate_authserver::keys::list(&*store).await?;
            let state = |k: &mcpgate_store::SigningKeyRecord| match k.state {
                mcpgate_store::KeyState::Next => "next",
                mcpgate_store::KeyState::Current => "current",
                mcpgate_store::KeyState::Retired => "retired",
            };
            if common.json {
                let v: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        json!({
                            "kid": k.kid, "alg": k.alg, "state": state(k), "created_at": k.created_at,
                            "activated_at": k.activated_at, "retired_at": k.retired_at,
                            "publish_until": k.publish_until,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(v));
            } else if keys.is_empty() {
                println!("no signing keys yet (they are created when `serve` first starts)");
            } else {
                println!(
                    "{:<45} {:<8} {:<12} {:<12} PUBLISHED UNTIL",
                    "KID", "STATE", "CREATED", "ACTIVATED"
                );
                for k in &keys {
                    println!(
                        "{:<45} {:<8} {:<12} {:<12} {}",
                        k.kid,
                        state(k),
                        k.created_at,
                        k.activated_at
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                        k.publish_until
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "-".into()),
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Rotate { common } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let ring = open_key_ring(&cfg, store).await?;
            let rotated = ring.rotate().await?;
            let current = ring.signer().kid.clone();
            if rotated.is_some() {
                super::audit::record_admin(
                    &cfg,
                    super::audit::admin_event(mcpgate_audit::EventKind::SigningKeyRotated)
                        .details(json!({"current_kid": current})),
                )
                .await?;
            }
            if common.json {
                println!(
                    "{}",
                    json!({"rotated": rotated.is_some(), "current_kid": current})
                );
            } else if rotated.is_some() {
                println!(
                    "rotated: {current} signs from now on; running gateways pick it up within 30 s"
                );
            } else {
                println!("another process rotated at the same moment; current key: {current}");
            }
            Ok(())
        }
    }
}

pub(super) async fn grants(cmd: GrantsCommand) -> anyhow::Result<()> {
    let tenant = mcpgate_store::DEFAULT_TENANT;
    match cmd {
        GrantsCommand::List { common, user } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let list = store.list_consents(tenant, user.as_deref()).await?;
            if common.json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| {
                        json!({"user": c.subject, "client_id": c.client_id, "resource": c.resource,
                               "scope": c.scope, "created_at": c.created_at})
                    })
                    .collect();
                println!("{}", json!(v));
            } else if list.is_empty() {
                println!("no consents");
            } else {
                for c in &list {
                    println!(
                        "{}  {}  {}  scope={:?}  created_at={}",
                        c.subject, c.client_id, c.resource, c.scope, c.created_at
                    );
                }
            }
            Ok(())
        }
        GrantsCommand::Revoke {
            common,
            user,
            client_id,
            resource,
        } => {
            let cfg = load(&common.config)?;
            require_authorization_server(&cfg, &common.config)?;
            let store = open_store(&cfg).await?;
            let now = mcpgate_gateway::authn::now() as i64;
            let consents = store
                .delete_consents(tenant, &user, &client_id, resource.as_deref())
                .await?;
            let grants = store
                .revoke_grants_of(tenant, &user, &client_id, resource.as_deref(), now)
                .await?;
            if consents > 0 || grants > 0 {
                let mut ev = super::audit::admin_event(mcpgate_audit::EventKind::ConsentRevoked)
                    .subject(&user)
                    .client_id(&client_id)
                    .details(json!({"consents_removed": consents, "grants_revoked": grants}));
                if let Some(r) = &resource {
                    ev = ev.route(r);
                }
                super::audit::record_admin(&cfg, ev).await?;
            }
            if consents == 0 && grants == 0 {
                bail!(
                    "{user} has no consent or grant for client {client_id}; see `mcpgate grants list`"
                );
            }
            if common.json {
                println!(
                    "{}",
                    json!({"ok": true, "consents_removed": consents, "grants_revoked": grants})
                );
            } else {
                println!(
                    "removed {consents} consent(s) and revoked {grants} grant(s) of {user} to {client_id}"
                );
            }
            Ok(())
        }
    }
}
