//! Cost of policy evaluation per request, with 100-policy sets.
//!
//! `cargo run --release -p mcpgate-policy --example bench`
//!
//! Two generated sets of 100 policies (permits and forbids with `when` /
//! `unless` conditions on scopes, groups, roles, time, address and
//! arguments):
//! - **scoped**, shaped like a real MCP deployment: most policies name the
//!   tool, user or route they are about, a few apply to everything, so a
//!   request meets a handful of them;
//! - **unscoped**, the worst case: every policy's scope matches every
//!   `tools/call`, so all 100 conditions are evaluated on each request.
//!
//! For each, times 200,000 `tools/call` requests (64 users, 100 tools, 5
//! routes, half with arguments) and prints p50/p99 per call of: building
//! the request without evaluating it (the baseline: checks, scope index,
//! argument conversion, Cedar entities and context), and the whole
//! `authorize`.

use std::hint::black_box;
use std::time::Instant;

use mcpgate_core::ScopeSet;
use mcpgate_policy::{Context, Policies, PrincipalKind, PrincipalRef, Request, Target};
use serde_json::json;

const REQUESTS: usize = 200_000;
const WARMUP: usize = 20_000;

/// 40 tool permits, 20 tool forbids on arguments, 20 user forbids, 10 route
/// permits, 5 session permits, 5 policies on everything.
fn scoped_set() -> String {
    let mut out = String::new();
    for i in 0..40 {
        out += &format!(
            "@id(\"tool{i}-users\")\npermit (principal, action == Action::\"tools/call\", resource == Tool::\"tool{i}\")\n\
             when {{ principal.groups.contains(\"g{}\") || principal.scopes.contains(\"admin:tools\") }};\n",
            i % 10
        );
    }
    for i in 0..20 {
        out += &format!(
            "forbid (principal, action == Action::\"tools/call\", resource == Tool::\"tool{}\")\n\
             when {{ context.arguments has path && context.arguments.path like \"/secret/*\" }};\n",
            i * 2
        );
    }
    for i in 0..20 {
        out += &format!(
            "forbid (principal == User::\"user{}\", action, resource)\n\
             when {{ context.hour_utc < 6 || !context.scopes.contains(\"mcp:tools\") }};\n",
            i * 3
        );
    }
    for i in 0..10 {
        out += &format!(
            "permit (principal, action == Action::\"tools/call\", resource in Route::\"/r{}\")\n\
             when {{ context.scopes.contains(\"s{i}\") && context.arguments has limit && context.arguments.limit < 100 }};\n",
            i % 5
        );
    }
    for i in 0..5 {
        out += &format!(
            "permit (principal, action in [Action::\"initialize\", Action::\"ping\", Action::\"tools/list\", \
             Action::\"resources/list\", Action::\"prompts/list\"], resource == Route::\"/r{i}\");\n"
        );
    }
    out += "forbid (principal, action, resource) unless { context.weekday_utc < 5 || principal.roles.contains(\"oncall\") };\n\
            forbid (principal, action == Action::\"tools/call\", resource)\n  \
              when { context has client_ip && !context.client_ip.isInRange(ip(\"10.0.0.0/8\")) };\n\
            permit (principal, action == Action::\"resources/read\", resource) when { resource.uri like \"file:///srv/shared/*\" };\n\
            forbid (principal is ApiKey, action == Action::\"tools/call\", resource) unless { context.mtls };\n\
            @id(\"admins\") permit (principal, action, resource) when { principal.roles.contains(\"admin\") };\n";
    out
}

/// 100 policies whose scope matches every `tools/call`.
fn unscoped_set() -> String {
    let mut out = String::new();
    for i in 0..100 {
        out += &match i % 4 {
            0 => format!(
                "permit (principal, action == Action::\"tools/call\", resource)\n\
                 when {{ principal.groups.contains(\"g{}\") && resource.name == \"tool{i}\" }};\n",
                i % 10
            ),
            1 => format!(
                "forbid (principal, action == Action::\"tools/call\", resource)\n\
                 when {{ context.arguments has path && context.arguments.path like \"/secret/{i}/*\" }};\n"
            ),
            2 => format!(
                "permit (principal, action == Action::\"tools/call\", resource)\n\
                 when {{ context.scopes.contains(\"s{i}\") && context.hour_utc >= 8 && context.hour_utc < 18 }};\n"
            ),
            _ => format!(
                "forbid (principal, action == Action::\"tools/call\", resource)\n\
                 when {{ resource.name == \"tool{i}\" }} unless {{ principal.roles.contains(\"admin\") || context.mtls }};\n"
            ),
        };
    }
    out
}

struct Caller {
    id: String,
    groups: Vec<String>,
    roles: Vec<String>,
}

fn percentiles(mut ns: Vec<u32>) -> (f64, f64) {
    ns.sort_unstable();
    let at = |q: f64| f64::from(ns[((ns.len() - 1) as f64 * q) as usize]) / 1000.0;
    (at(0.5), at(0.99))
}

struct Run {
    build: (f64, f64),
    full: (f64, f64),
    allowed: f64,
}

fn run(policies: &Policies) -> Result<Run, Box<dyn std::error::Error>> {
    let scopes = ScopeSet::parse("mcp:tools mcp:read s1 s2 s7 s12 s17 s22")?;
    let callers: Vec<Caller> = (0..64usize)
        .map(|i| Caller {
            id: format!("user{i}"),
            groups: vec![format!("g{}", i % 10), "staff".into()],
            roles: if i.is_multiple_of(8) {
                vec!["admin".into()]
            } else {
                vec![]
            },
        })
        .collect();
    let tools: Vec<String> = (0..100).map(|i| format!("tool{i}")).collect();
    let routes: Vec<String> = (0..5).map(|i| format!("/r{i}")).collect();
    let args = [
        json!({ "path": "/secret/1/key", "limit": 10 }),
        json!({ "path": "/srv/shared/a.txt", "limit": 50, "recursive": true, "tags": ["a", "b"] }),
    ];
    // 2024-01-01T10:00:00Z, a Monday.
    let time = 1_704_103_200;

    let request = |n: usize| {
        let c = &callers[n % callers.len()];
        Request {
            principal: PrincipalRef {
                kind: PrincipalKind::User,
                id: &c.id,
                subject: &c.id,
                client_id: Some("bench-client"),
                scopes: &scopes,
                issuer: Some("https://issuer.example"),
                tenant: "default",
                groups: &c.groups,
                roles: &c.roles,
            },
            action: "tools/call",
            target: Target::Tool(&tools[(n * 7) % tools.len()]),
            route: &routes[n % routes.len()],
            context: Context {
                client_ip: Some([10, 0, (n % 3) as u8, (n % 250) as u8].into()),
                time,
                mtls: n.is_multiple_of(3),
                dpop: false,
                arguments: n.is_multiple_of(2).then(|| &args[(n / 2) % 2]),
            },
        }
    };

    for n in 0..WARMUP {
        black_box(policies.authorize(&request(n)));
        black_box(policies.prepare_only(&request(n)));
    }
    let mut build = Vec::with_capacity(REQUESTS);
    let mut full = Vec::with_capacity(REQUESTS);
    let mut allowed = 0usize;
    for n in 0..REQUESTS {
        let r = request(n);
        let t = Instant::now();
        black_box(policies.prepare_only(black_box(&r)));
        build.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        let t = Instant::now();
        let d = black_box(policies.authorize(black_box(&r)));
        full.push(u32::try_from(t.elapsed().as_nanos()).unwrap_or(u32::MAX));
        allowed += usize::from(d.allowed);
    }
    Ok(Run {
        build: percentiles(build),
        full: percentiles(full),
        allowed: allowed as f64 * 100.0 / REQUESTS as f64,
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("{REQUESTS} tools/call requests per set, µs per call\n");
    println!(
        "| set (100 policies) | allowed | build only p50 | p99 | authorize p50 | p99 | evaluation p50 |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    // `bench scoped` or `bench unscoped` runs one set (for profiling).
    let only = std::env::args().nth(1);
    for (name, text) in [
        ("scoped", scoped_set()),
        ("unscoped (worst case)", unscoped_set()),
    ] {
        if only.as_deref().is_some_and(|o| !name.starts_with(o)) {
            continue;
        }
        let policies = Policies::parse(&text, "bench.cedar")?;
        assert_eq!(policies.len(), 100);
        let r = run(&policies)?;
        println!(
            "| {name} | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.allowed,
            r.build.0,
            r.build.1,
            r.full.0,
            r.full.1,
            r.full.0 - r.build.0
        );
    }
    Ok(())
}
