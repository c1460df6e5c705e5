//! Loading: the schema, validation, locations, directories.

use std::fs;

use mcpgate_policy::{Policies, PolicyError, SCHEMA};

use crate::support::{parse, refuse};

/// The examples of the issue, all in one set: they validate.
pub const ISSUE_EXAMPLES: &str = r#"
// Bob may never write files.
@id("bob-no-write")
forbid (principal == User::"bob", action == Action::"tools/call", resource == Tool::"write_file");

// Reads only under /srv/shared.
@id("shared-reads")
permit (principal, action == Action::"tools/call", resource == Tool::"read_file")
when { context.arguments has path && context.arguments.path like "/srv/shared/*" };

// Working hours: Monday to Friday, 09:00 to 17:00 UTC.
@id("working-hours")
permit (principal, action == Action::"tools/call", resource in Route::"/mcp")
when { context.weekday_utc < 5 && context.hour_utc >= 9 && context.hour_utc < 17 };

// Engineering may use every tool of /mcp at any time.
@id("engineering")
permit (principal, action == Action::"tools/call", resource in Route::"/mcp")
when { principal.groups.contains("engineering") };
"#;

#[test]
fn schema_text_is_published_and_compiles() {
    assert!(SCHEMA.contains("entity Tool in [Route]"));
    assert!(SCHEMA.contains("\"tools/call\""));
    // A set that names every entity type and the context attributes.
    parse(
        r#"permit (principal is User, action, resource)
           when { principal.tenant == "t" && principal has issuer && context has client_ip
                  && context.client_ip.isInRange(ip("10.0.0.0/8")) && context.mtls && !context.dpop
                  && context.scopes.contains("mcp:tools") && context.time > 0 };
           permit (principal is Client, action == Action::"resources/read", resource is Resource)
           when { resource.uri like "file:///*" && principal has client_id };
           permit (principal is ApiKey, action == Action::"prompts/get", resource is Prompt)
           when { resource.name == "p" && principal.roles.contains("admin") };
           permit (principal, action == Action::"tools/list", resource is Route)
           when { resource.path == "/mcp" };"#,
    );
}

#[test]
fn issue_examples_validate() {
    let p = parse(ISSUE_EXAMPLES);
    assert_eq!(p.len(), 4);
    assert!(p.warnings().is_empty(), "{:?}", p.warnings());
}

#[test]
fn argument_attribute_without_has_is_refused() {
    let e = refuse(
        r#"permit (principal, action == Action::"tools/call", resource)
           when { context.arguments.path like "/srv/*" };"#,
    );
    assert!(e.contains("bad.cedar:2:"), "{e}");
    assert!(e.contains("arguments.path"), "{e}");
    assert!(e.contains("test it first"), "{e}");
}

#[test]
fn unknown_attribute_is_refused_with_file_and_line() {
    let e = refuse(
        "permit (principal, action, resource);\n\
         permit (principal, action == Action::\"tools/call\", resource)\n  when { principal.grups.contains(\"x\") };",
    );
    assert!(e.starts_with("bad.cedar:3:"), "{e}");
    assert!(e.contains("grups"), "{e}");
    assert!(e.contains("did you mean `groups`?"), "{e}");
}

#[test]
fn unknown_attribute_after_an_argument_test_is_refused() {
    // The strict pass does not type what follows `context.arguments has x &&`;
    // the partial pass does.
    let e = refuse(
        r#"permit (principal, action == Action::"tools/call", resource)
           when { context.arguments has path && principal.grups.contains("x") };"#,
    );
    assert!(e.contains("bad.cedar:2:"), "{e}");
    assert!(e.contains("grups"), "{e}");
}

#[test]
fn wrong_type_is_refused() {
    let e = refuse(
        r#"permit (principal, action == Action::"tools/call", resource)
           when { context.hour_utc like "9*" };"#,
    );
    assert!(e.contains("bad.cedar:2:"), "{e}");
    let e = refuse(
        r#"permit (principal, action == Action::"tools/call", resource)
           when { context.arguments has n && context.arguments.n > "3" };"#,
    );
    assert!(e.contains("bad.cedar:2:"), "{e}");
}

#[test]
fn unknown_action_is_refused() {
    let e = refuse(r#"permit (principal, action == Action::"tools/explode", resource);"#);
    assert!(e.contains("bad.cedar:1:"), "{e}");
    assert!(e.contains("tools/explode"), "{e}");
}

#[test]
fn policy_that_can_never_apply_is_refused() {
    let e = refuse(r#"permit (principal, action == Action::"tools/call", resource is Prompt);"#);
    assert!(e.contains("bad.cedar:1:"), "{e}");
    // Also when the policy reads the arguments (checked by the strict pass
    // alone).
    let e = refuse(
        r#"forbid (principal, action == Action::"tools/call", resource is Prompt)
           when { context.arguments has x };"#,
    );
    assert!(e.contains("bad.cedar:1:"), "{e}");

    // And a condition that can never hold.
    let e = refuse(
        r#"forbid (principal, action == Action::"tools/call", resource)
           when { principal is User && principal is Client };"#,
    );
    assert!(e.contains("impossible"), "{e}");
}

#[test]
fn syntax_error_is_located() {
    match Policies::parse(
        "permit (principal, action, resource)\nwhen { principal. };",
        "s.cedar",
    ) {
        Err(PolicyError::Syntax(problems)) => {
            assert_eq!(
                (problems[0].source_name.as_str(), problems[0].line),
                ("s.cedar", 2)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn templates_duplicate_ids_and_empty_files_are_refused() {
    let e = refuse("permit (principal == ?principal, action, resource);");
    assert!(e.contains("templates"), "{e}");
    let e = refuse(
        "@id(\"a\") permit (principal, action, resource);\n@id(\"a\") forbid (principal, action, resource);",
    );
    assert!(e.contains("bad.cedar:2:") && e.contains("`a`"), "{e}");
    assert!(matches!(
        Policies::parse("// nothing\n", "e.cedar"),
        Err(PolicyError::Empty { .. })
    ));
}

#[test]
fn directory_loads_every_cedar_file_in_name_order() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("b.cedar"),
        "permit (principal, action, resource);\n",
    )
    .unwrap();
    fs::write(
        dir.path().join("a.cedar"),
        "\n@id(\"no-bob\")\nforbid (principal == User::\"bob\", action, resource);\n",
    )
    .unwrap();
    fs::write(dir.path().join("notes.txt"), "not cedar").unwrap();
    fs::write(dir.path().join(".hidden.cedar"), "garbage").unwrap();
    let p = Policies::load(dir.path()).unwrap();
    assert_eq!(p.len(), 2);

    // An error in one file names that file and line.
    fs::write(
        dir.path().join("c.cedar"),
        "permit (principal, action, resource);\npermit (principal, action == Action::\"nope\", resource);\n",
    )
    .unwrap();
    let e = Policies::load(dir.path()).unwrap_err();
    let file = dir.path().join("c.cedar").display().to_string();
    assert!(e.to_string().starts_with(&format!("{file}:2:")), "{e}");
    assert_eq!(e.problems()[0].line, 2);
}

#[test]
fn missing_file_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    let e = Policies::load(&dir.path().join("none.cedar")).unwrap_err();
    assert!(matches!(e, PolicyError::Io { .. }), "{e}");
}
