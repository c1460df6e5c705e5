//! Decisions.

use mcpgate_core::ScopeSet;
use mcpgate_policy::{Context, Policies, PrincipalKind, PrincipalRef, Request, Target};
use serde_json::json;

use crate::support::{ENGINEERS, MONDAY_1330, SATURDAY_1330, call, parse, user};
use crate::validate::ISSUE_EXAMPLES;

#[test]
fn allow_all_allows_everything() {
    let p = Policies::allow_all();
    assert!(p.is_allow_all());
    let d = p.authorize(&call(user("bob"), "write_file"));
    assert!(
        d.allowed && d.policy_ids.is_empty() && d.errors.is_empty(),
        "{d}"
    );
    let mut r = call(user("bob"), "x");
    r.action = "not/a/method";
    assert!(p.authorize(&r).allowed);
}

#[test]
fn issue_example_forbid_one_tool_for_one_user() {
    let p = parse(ISSUE_EXAMPLES);
    let bob = PrincipalRef {
        groups: &ENGINEERS,
        ..user("bob")
    };
    let d = p.authorize(&call(bob, "write_file"));
    assert!(!d.allowed);
    assert_eq!(d.policy_ids, ["bob-no-write"]);
    // Another tool, or another engineer: the group permit applies.
    assert!(p.authorize(&call(bob, "read_file")).allowed);
    let alice = PrincipalRef {
        groups: &ENGINEERS,
        ..user("alice")
    };
    let d = p.authorize(&call(alice, "write_file"));
    assert!(d.allowed, "{d}");
}

#[test]
fn issue_example_arguments_like() {
    let p = parse(ISSUE_EXAMPLES);
    let at = |args: serde_json::Value| {
        let args = args;
        let mut r = call(user("carol"), "read_file");
        r.context = Context {
            arguments: Some(&args),
            ..Context::at(SATURDAY_1330)
        };
        p.authorize(&r)
    };
    let d = at(json!({"path": "/srv/shared/notes.txt"}));
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy_ids, ["shared-reads"]);
    assert!(!at(json!({"path": "/etc/passwd"})).allowed);
    assert!(!at(json!({})).allowed);
    assert!(!at(json!({"path": 7})).allowed);
}

#[test]
fn issue_example_working_hours() {
    let p = parse(ISSUE_EXAMPLES);
    let at = |time: i64| {
        let mut r = call(user("carol"), "write_file");
        r.context.time = time;
        p.authorize(&r)
    };
    let d = at(MONDAY_1330);
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy_ids, ["working-hours"]);
    assert!(!at(SATURDAY_1330).allowed);
    assert!(!at(MONDAY_1330 + 5 * 3600).allowed, "18:30 is after hours");
}

#[test]
fn issue_example_permit_by_group() {
    let p = parse(ISSUE_EXAMPLES);
    let mut r = call(
        PrincipalRef {
            groups: &ENGINEERS,
            ..user("dave")
        },
        "deploy",
    );
    r.context.time = SATURDAY_1330;
    let d = p.authorize(&r);
    assert!(d.allowed, "{d}");
    assert_eq!(d.policy_ids, ["engineering"]);
    r.principal.groups = &[];
    assert!(!p.authorize(&r).allowed);
}

#[test]
fn forbid_wins_over_permit() {
    let p = parse(
        "@id(\"all\") permit (principal, action, resource);\n\
         @id(\"no-delete\") forbid (principal, action, resource == Tool::\"delete\");",
    );
    let d = p.authorize(&call(user("a"), "delete"));
    assert!(!d.allowed);
    assert_eq!(d.policy_ids, ["no-delete"]);
    let d = p.authorize(&call(user("a"), "list"));
    assert!(d.allowed);
    assert_eq!(d.policy_ids, ["all"]);
}

#[test]
fn decisions_name_policies_by_id_annotation_or_file_and_line() {
    let p = parse(
        "// two permits\n\
         permit (principal, action, resource);\n\
         \n\
         @id(\"named\")\n\
         permit (principal, action == Action::\"tools/call\", resource);",
    );
    let d = p.authorize(&call(user("a"), "x"));
    assert_eq!(d.policy_ids, ["named", "test.cedar:2"]);
    assert_eq!(d.to_string(), "allow by named, test.cedar:2");
    let d = parse("permit (principal, action, resource == Tool::\"y\");")
        .authorize(&call(user("a"), "x"));
    assert!(!d.allowed && d.policy_ids.is_empty());
    assert_eq!(d.to_string(), "deny: no policy permits this request");
}

#[test]
fn undeclared_method_is_denied_under_a_loaded_set() {
    let p = parse("permit (principal, action, resource);");
    let mut r = call(user("a"), "x");
    r.action = "tools/explode";
    let d = p.authorize(&r);
    assert!(!d.allowed);
    assert!(d.errors[0].contains("tools/explode"), "{d}");
}

#[test]
fn target_that_does_not_fit_the_method_is_denied() {
    let p = parse("permit (principal, action, resource);");
    let mut r = call(user("a"), "x");
    r.target = Target::Prompt("x");
    let d = p.authorize(&r);
    assert!(!d.allowed);
    assert!(d.errors[0].contains("Tool"), "{d}");
}

#[test]
fn arguments_beyond_the_bounds_deny_when_a_policy_reads_them() {
    let mut deep = json!("x");
    for _ in 0..=mcpgate_policy::MAX_ARGUMENT_DEPTH {
        deep = json!({ "d": deep });
    }
    let long = json!({ "path": "/srv/shared/".to_owned() + &"a".repeat(5000) });
    let reads = parse(
        "permit (principal, action, resource);\n\
         forbid (principal, action, resource) when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
    );
    let ignores = parse("permit (principal, action, resource);");
    for args in [&deep, &long] {
        let mut r = call(user("a"), "x");
        r.context.arguments = Some(args);
        let d = reads.authorize(&r);
        assert!(!d.allowed, "{d}");
        assert!(d.errors[0].contains("bound"), "{d}");
        assert!(ignores.authorize(&r).allowed);
    }
    let ok = json!({ "path": "/srv/x" });
    let mut r = call(user("a"), "x");
    r.context.arguments = Some(&ok);
    assert!(reads.authorize(&r).allowed);
}

#[test]
fn forbid_that_fails_to_evaluate_denies() {
    // `path` is a Long at run time, so `like` errors; Cedar would skip the
    // forbid and let the permit allow.
    let p = parse(
        "permit (principal, action, resource);\n\
         @id(\"no-etc\") forbid (principal, action, resource) when { context.arguments has path && context.arguments.path like \"/etc/*\" };",
    );
    let args = json!({ "path": 5 });
    let mut r = call(user("a"), "x");
    r.context.arguments = Some(&args);
    let d = p.authorize(&r);
    assert!(!d.allowed, "{d}");
    assert_eq!(d.policy_ids, ["no-etc"]);
    assert!(!d.errors.is_empty());
}

#[test]
fn principal_kinds_map_to_entity_types() {
    let p = parse(
        "permit (principal is Client, action, resource);\n\
         permit (principal == ApiKey::\"k1\", action, resource) when { principal.subject == \"apikey:k1\" };",
    );
    let client = PrincipalRef {
        kind: PrincipalKind::Client,
        ..user("svc")
    };
    assert!(p.authorize(&call(client, "x")).allowed);
    let key = PrincipalRef {
        kind: PrincipalKind::ApiKey,
        subject: "apikey:k1",
        issuer: None,
        ..user("k1")
    };
    assert!(p.authorize(&call(key, "x")).allowed);
    assert!(!p.authorize(&call(user("svc"), "x")).allowed);
}

#[test]
fn context_carries_address_binding_and_scopes() {
    let p = parse(
        "permit (principal, action, resource) when {\n\
           context has client_ip && context.client_ip.isInRange(ip(\"10.0.0.0/8\"))\n\
           && context.dpop && !context.mtls && context.scopes.contains(\"mcp:tools\")\n\
           && principal.scopes.contains(\"mcp:read\") };",
    );
    let mut r = call(user("a"), "x");
    assert!(!p.authorize(&r).allowed, "no address");
    r.context.client_ip = Some("10.1.2.3".parse().unwrap());
    r.context.dpop = true;
    assert!(p.authorize(&r).allowed);
    r.context.client_ip = Some("::1".parse().unwrap());
    assert!(!p.authorize(&r).allowed);
}

#[test]
fn resources_and_prompts_are_in_their_route() {
    let p = parse(
        "permit (principal, action, resource in Route::\"/docs\");\n\
         permit (principal, action == Action::\"resources/list\", resource == Route::\"/mcp\");",
    );
    let req = |route, action, target| Request {
        principal: user("a"),
        action,
        target,
        route,
        context: Context::at(MONDAY_1330),
    };
    assert!(
        p.authorize(&req(
            "/docs",
            "resources/read",
            Target::Resource("file:///a")
        ))
        .allowed
    );
    assert!(
        p.authorize(&req("/docs", "prompts/get", Target::Prompt("p")))
            .allowed
    );
    assert!(
        !p.authorize(&req(
            "/mcp",
            "resources/read",
            Target::Resource("file:///a")
        ))
        .allowed
    );
    assert!(
        p.authorize(&req("/mcp", "resources/list", Target::Route))
            .allowed
    );
}

#[test]
fn list_filtering_shows_only_usable_items() {
    let p = parse(
        "permit (principal, action == Action::\"tools/list\", resource);\n\
         permit (principal, action == Action::\"tools/call\", resource == Tool::\"read_file\");",
    );
    let list = Request {
        principal: user("a"),
        action: "tools/list",
        target: Target::Route,
        route: "/mcp",
        context: Context::at(MONDAY_1330),
    };
    assert!(p.authorize(&list).allowed);
    let visible: Vec<_> = ["read_file", "write_file"]
        .into_iter()
        .filter(|t| p.may_use(&list, Target::Tool(t)))
        .collect();
    assert_eq!(visible, ["read_file"]);
    assert!(!p.may_use(&list, Target::Prompt("read_file")), "wrong kind");
    assert!(Policies::allow_all().may_use(&list, Target::Tool("write_file")));
    assert_eq!(
        mcpgate_policy::list_item_method("prompts/list"),
        Some("prompts/get")
    );
}

#[test]
fn cached_entities_follow_the_caller_and_the_target() {
    // Entities are cached per caller and target: any difference in what
    // they are built from must be seen.
    let p = parse(
        "permit (principal, action, resource == Tool::\"t\") when {\n\
           principal.groups.contains(\"g\") && principal.tenant == \"default\" && resource.name == \"t\" };",
    );
    let g = vec!["g".to_owned()];
    let with_group = PrincipalRef {
        groups: &g,
        ..user("a")
    };
    assert!(p.authorize(&call(with_group, "t")).allowed);
    assert!(
        !p.authorize(&call(user("a"), "t")).allowed,
        "groups changed"
    );
    let other_tenant = PrincipalRef {
        tenant: "other",
        ..with_group
    };
    assert!(
        !p.authorize(&call(other_tenant, "t")).allowed,
        "tenant changed"
    );
    assert!(!p.authorize(&call(with_group, "u")).allowed, "tool changed");
    assert!(p.authorize(&call(with_group, "t")).allowed, "and back");
}

#[test]
fn remembered_decisions_follow_every_field_of_the_request() {
    // Decisions are remembered within a second when no policy reads the
    // arguments: each field a policy can test must still change the
    // answer, and the first answer must come back unchanged.
    let p = parse(
        r#"@id("all") permit (principal, action, resource) when {
             context.scopes.contains("mcp:tools")
             && principal has client_id && principal.client_id == "cli"
             && principal has issuer && principal.issuer == "https://issuer.example"
             && principal.roles.isEmpty()
             && context has client_ip && context.client_ip == ip("10.0.0.1")
             && !context.mtls && !context.dpop && context.time < 1704115801
           };
           @id("not-b") forbid (principal, action, resource in Route::"/b");"#,
    );
    let ip = |last: u8| Some(std::net::IpAddr::from([10, 0, 0, last]));
    let base = || {
        let mut r = call(user("a"), "t");
        r.context.client_ip = ip(1);
        r
    };
    let mut ok = p.authorize(&base());
    assert!(ok.allowed, "{ok}");
    assert_eq!(ok.policy_ids, ["all"]);
    let other_scopes = ScopeSet::parse("mcp:read").unwrap();
    let roles = vec!["admin".to_owned()];
    let with = |change: &dyn Fn(&mut Request<'_>)| {
        let mut r = base();
        change(&mut r);
        r
    };
    let mut changed = vec![
        (
            "client_id",
            with(&|r| r.principal.client_id = Some("other")),
        ),
        ("issuer", with(&|r| r.principal.issuer = None)),
        ("client_ip", with(&|r| r.context.client_ip = ip(2))),
        ("no client_ip", with(&|r| r.context.client_ip = None)),
        ("mtls", with(&|r| r.context.mtls = true)),
        ("dpop", with(&|r| r.context.dpop = true)),
        ("route", with(&|r| r.route = "/b")),
        ("next second", with(&|r| r.context.time += 1)),
    ];
    let mut r = base();
    r.principal.scopes = &other_scopes;
    changed.push(("scopes", r));
    let mut r = base();
    r.principal.roles = &roles;
    changed.push(("roles", r));
    for (what, r) in &changed {
        let d = p.authorize(r);
        assert!(!d.allowed, "{what} changed: {d}");
        // The remembered allow is still the allow it was.
        let again = p.authorize(&base());
        assert_eq!(again, ok, "after {what}");
    }
    // Another action on the same target kind is decided on its own.
    let mut prompt = base();
    prompt.action = "prompts/get";
    prompt.target = Target::Prompt("t");
    ok = p.authorize(&prompt);
    assert!(ok.allowed, "{ok}");
}
