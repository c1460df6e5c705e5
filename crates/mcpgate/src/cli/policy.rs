//! `mcpgate policy`: validate a Cedar policy file, print the schema, and
//! evaluate one request against a route's policy the way the gateway does.

use super::*;

pub(super) fn policy(cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Schema => {
            print!("{}", mcpgate_policy::SCHEMA);
            Ok(())
        }
        PolicyCommand::Check { file, json } => match mcpgate_policy::Policies::load(&file) {
            Ok(p) => {
                if json {
                    println!(
                        "{}",
                        json!({"ok": true, "policies": p.len(),
                                   "warnings": p.warnings().iter().map(ToString::to_string).collect::<Vec<_>>()})
                    );
                } else {
                    println!("{}: {} policies, valid", file.display(), p.len());
                    for w in p.warnings() {
                        eprintln!("warning: {w}");
                    }
                }
                Ok(())
            }
            Err(e) => Err(anyhow!("{e}")),
        },
        PolicyCommand::Test {
            common,
            route,
            principal,
            scopes,
            client_id,
            groups,
            action,
            tool,
            resource,
            prompt,
            args,
            client_ip,
        } => {
            let cfg = load(&common.config)?;
            let r = cfg.routes.iter().find(|r| r.path == route).ok_or_else(|| {
                anyhow!(
                    "--route {route:?}: no such route in {}",
                    common.config.display()
                )
            })?;
            let policies = match &r.policy {
                Some(p) => mcpgate_policy::Policies::load(&cfg.base_dir.join(p))
                    .map_err(|e| anyhow!("route {route}'s policy: {e}"))?,
                None => mcpgate_policy::Policies::allow_all(),
            };
            let (kind, id) = principal.split_once(':').ok_or_else(|| {
                anyhow!("--principal {principal:?}: write user:NAME, client:ID or apikey:ID")
            })?;
            let kind = match kind {
                "user" => mcpgate_policy::PrincipalKind::User,
                "client" => mcpgate_policy::PrincipalKind::Client,
                "apikey" => mcpgate_policy::PrincipalKind::ApiKey,
                other => {
                    bail!("--principal: unknown kind {other:?}; use user:, client: or apikey:")
                }
            };
            let scopes = ScopeSet::parse(&scopes).context("--scopes")?;
            let args: Option<serde_json::Value> = match &args {
                Some(a) => Some(serde_json::from_str(a).context("--args is not JSON")?),
                None => None,
            };
            let target = match (&tool, &resource, &prompt) {
                (Some(t), None, None) => mcpgate_policy::Target::Tool(t),
                (None, Some(u), None) => mcpgate_policy::Target::Resource(u),
                (None, None, Some(p)) => mcpgate_policy::Target::Prompt(p),
                (None, None, None) => mcpgate_policy::Target::Route,
                _ => bail!("give at most one of --tool, --resource, --prompt"),
            };
            let subject = match kind {
                mcpgate_policy::PrincipalKind::ApiKey => format!("apikey:{id}"),
                _ => id.to_owned(),
            };
            let client_id = client_id
                .or_else(|| (kind == mcpgate_policy::PrincipalKind::Client).then(|| id.to_owned()));
            let now = mcpgate_gateway::authn::now() as i64;
            let decision = policies.authorize(&mcpgate_policy::Request {
                principal: mcpgate_policy::PrincipalRef {
                    kind,
                    id,
                    subject: &subject,
                    client_id: client_id.as_deref(),
                    scopes: &scopes,
                    issuer: None,
                    tenant: DEFAULT_TENANT,
                    groups: &groups,
                    roles: &[],
                },
                action: &action,
                target,
                route: &route,
                context: mcpgate_policy::Context {
                    client_ip,
                    time: now,
                    mtls: false,
                    dpop: false,
                    arguments: args.as_ref(),
                },
            });
            if common.json {
                println!(
                    "{}",
                    json!({"allowed": decision.allowed, "policies": decision.policy_ids,
                           "errors": decision.errors})
                );
            } else {
                println!("{decision}");
            }
            if decision.allowed {
                Ok(())
            } else {
                Err(Reported("denied".into()).into())
            }
        }
    }
}
