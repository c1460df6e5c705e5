//! Rate limits and the per-route tool include/exclude lists, end to end.
//! Every refusal also checks that the upstream saw nothing.

use serde_json::Value;

use crate::support::*;

async fn setup(extra: &str) -> (Issuer, Upstream, Gw) {
    let iss = Issuer::start().await;
    let up = Upstream::start().await;
    let cfg = format!(
        r#"
[[trusted_issuers]]
issuer = "{iss}"

[[routes]]
path = "/mcp"
upstream_url = "{up}"
scopes = ["mcp"]
{extra}
"#,
        iss = iss.url,
        up = up.url
    );
    let gw = Gw::start(&cfg).await;
    (iss, up, gw)
}

#[tokio::test]
async fn rate_limit_burst_beyond_the_limit_gets_429_with_retry_after() {
    let (iss, up, gw) = setup(
        r#"
[[routes.rate_limits]]
key = "principal"
limit = 5
window_secs = 60
[[routes.rate_limits]]
key = "route"
tool = "write_note"
limit = 1
window_secs = 3600
"#,
    )
    .await;
    let url = gw.url("/mcp");
    let alice = iss.token(&url, "mcp");
    let bob = iss.token_with(|c| {
        c["sub"] = "bob".into();
        c["aud"] = url.clone().into();
        c["scope"] = "mcp".into();
    });
    // The tool limit: one write_note per hour for the whole route.
    assert_eq!(
        rpc(&url, Some(&alice), &call(1, "write_note"))
            .await
            .status(),
        200
    );
    let r = rpc(&url, Some(&bob), &call(2, "write_note")).await;
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3600).contains(&retry), "{retry}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 2, "JSON-RPC error with the request id");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Rate limit")
    );
    // The principal limit: alice has 4 left of 5 (write_note counted).
    for i in 0..4 {
        assert_eq!(
            rpc(&url, Some(&alice), &call(10 + i, "echo"))
                .await
                .status(),
            200
        );
    }
    let seen_before = up.seen().len();
    let r = rpc(&url, Some(&alice), &call(20, "echo")).await;
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert_eq!(up.seen().len(), seen_before, "the upstream saw nothing");
    // Requests within bob's own budget are unaffected.
    assert_eq!(rpc(&url, Some(&bob), &call(21, "echo")).await.status(), 200);
}

#[tokio::test]
async fn tools_excluded_are_hidden_from_lists_and_refused_for_everyone() {
    let (iss, up, gw) = setup(r#"tools_exclude = ["delete_all"]"#).await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let r = rpc(&url, Some(&token), &list(1)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let names: Vec<&str> = body["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["echo", "write_note"]);
    let before = up.seen().len();
    let r = rpc(&url, Some(&token), &call(2, "delete_all")).await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["id"], 2);
    assert_eq!(body["error"]["code"], -32602);
    assert_eq!(up.seen().len(), before);
}

#[tokio::test]
async fn tools_include_lists_the_only_tools_shown() {
    let (iss, _up, gw) = setup(r#"tools_include = ["echo"]"#).await;
    let url = gw.url("/mcp");
    let token = iss.token(&url, "mcp");
    let body: Value = rpc(&url, Some(&token), &list(1))
        .await
        .json()
        .await
        .unwrap();
    let tools = body["result"]["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1);
    assert_eq!(tools[0]["name"], "echo");
    assert_eq!(
        rpc(&url, Some(&token), &call(2, "write_note"))
            .await
            .status(),
        404
    );
}
