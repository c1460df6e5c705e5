//! The HTML pages of the authorization endpoint: login, consent and error.
//!
//! Plain server-rendered HTML that works without JavaScript (there is
//! none). Every string that came from a client or a request (client name,
//! redirect URI, scopes, usernames) is HTML-escaped by [`esc`]. Every page
//! goes out with a `Content-Security-Policy` that allows no script, no
//! frames around it (`frame-ancestors 'none'`, and `X-Frame-Options: DENY`
//! for older browsers), only its own hashed stylesheet, and `no-store`.
//! `form-action` is left unset on purpose: Chromium applies it to the
//! redirect that follows a form post, and that redirect goes to the
//! client's redirect URI.

use std::fmt::Write as _;
use std::sync::LazyLock;

use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use http::{HeaderValue, StatusCode, header};

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}\
h1{font-size:1.4rem}.box{border:1px solid #ccc;border-radius:6px;padding:1rem 1.2rem}\
label{display:block;margin:.6rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}\
button{margin:1rem .5rem 0 0;padding:.5rem 1.2rem}.warn{background:#fff3cd;border:1px solid #e0b000;padding:.6rem;border-radius:4px}\
.err{background:#fde8e8;border:1px solid #d33;padding:.6rem;border-radius:4px}code{word-break:break-all}";

static CSP: LazyLock<HeaderValue> = LazyLock::new(|| {
    let hash =
        base64::engine::general_purpose::STANDARD.encode(mcpgate_crypto::sha256(STYLE.as_bytes()));
    let v = format!(
        "default-src 'none'; style-src 'sha256-{hash}'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'"
    );
    HeaderValue::from_str(&v).unwrap_or(HeaderValue::from_static(
        "default-src 'none'; frame-ancestors 'none'",
    ))
});

/// HTML-escapes `s` for text and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>{}</title>\
         <style>{STYLE}</style></head><body>{body}</body></html>",
        esc(title)
    )
}

/// A page response with the hardening headers.
pub fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CONTENT_SECURITY_POLICY, CSP.clone());
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    r
}

/// An error shown to the person, never redirected (unknown client, bad
/// redirect URI, expired form): the client cannot be trusted with it.
pub fn error(status: StatusCode, message: &str) -> Response {
    let body = format!(
        "<h1>Cannot continue</h1><p class=\"err\">{}</p>\
         <p>Go back to the application and start signing in again. If this keeps happening, \
         the application may be misconfigured.</p>",
        esc(message)
    );
    respond(status, page("Authorization error", &body))
}

/// What the login and consent pages show about the request.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub client_name: &'a str,
    /// For a metadata-document client, the host of its `client_id` URL.
    pub client_host: Option<&'a str>,
    pub redirect_host: &'a str,
    pub redirect_is_localhost: bool,
    pub resource: &'a str,
    pub scopes: &'a [&'a str],
}

fn hidden(name: &str, value: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
        esc(name),
        esc(value)
    )
}

/// The login form. `request` and `csrf` travel as hidden fields.
pub fn login(view: &RequestView<'_>, request: &str, csrf: &str, error: Option<&str>) -> Response {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Sign in</h1><p><strong>{}</strong> wants to use an MCP server on your behalf. \
         Sign in to continue.</p>",
        esc(view.client_name)
    );
    if let Some(e) = error {
        let _ = write!(b, "<p class=\"err\" role=\"alert\">{}</p>", esc(e));
    }
    let _ = write!(
        b,
        "<form class=\"box\" method=\"post\" action=\"{}\">{}{}\
         <label for=\"username\">Username</label>\
         <input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus maxlength=\"64\">\
         <label for=\"password\">Password</label>\
         <input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required maxlength=\"1024\">\
         <button type=\"submit\" name=\"action\" value=\"login\">Sign in</button></form>",
        crate::AUTHORIZE_PATH,
        hidden("request", request),
        hidden("csrf", csrf),
    );
    respond(
        if error.is_some() {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        },
        page("Sign in", &b),
    )
}

/// The consent page.
pub fn consent(view: &RequestView<'_>, user: &str, request: &str, csrf: &str) -> Response {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>Allow access?</h1><p>Signed in as <strong>{}</strong>.</p><div class=\"box\">\
         <p><strong>{}</strong> is asking to use an MCP server as you.</p><ul>",
        esc(user),
        esc(view.client_name)
    );
    if let Some(h) = view.client_host {
        let _ = write!(
            b,
            "<li>The application is described by a document at <strong>{}</strong>.</li>",
            esc(h)
        );
    }
    let _ = write!(
        b,
        "<li>After you decide, your browser goes to <strong>{}</strong>.</li>\
         <li>MCP server: <code>{}</code></li>",
        esc(view.redirect_host),
        esc(view.resource)
    );
    if view.scopes.is_empty() {
        b.push_str("<li>Permissions: the server's basic access (no extra scopes).</li>");
    } else {
        b.push_str("<li>Permissions:<ul>");
        for s in view.scopes {
            let _ = write!(b, "<li><code>{}</code></li>", esc(s));
        }
        b.push_str("</ul></li>");
    }
    b.push_str("</ul>");
    if view.redirect_is_localhost {
        b.push_str(
            "<p class=\"warn\"><strong>Warning:</strong> the answer goes to a program on this \
             computer (localhost), not to a website. Allow only if you just started signing \
             in from an application you trust on this computer.</p>",
        );
    }
    let _ = write!(
        b,
        "<form method=\"post\" action=\"{}\">{}{}\
         <button type=\"submit\" name=\"action\" value=\"allow\">Allow</button>\
         <button type=\"submit\" name=\"action\" value=\"deny\">Deny</button></form></div>",
        crate::AUTHORIZE_PATH,
        hidden("request", request),
        hidden("csrf", csrf),
    );
    respond(StatusCode::OK, page("Allow access?", &b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_supplied_strings_are_escaped() {
        assert_eq!(
            esc("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
    }

    #[test]
    fn pages_forbid_framing_and_script() {
        let r = error(StatusCode::BAD_REQUEST, "<b>x</b>");
        let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(csp.contains("frame-ancestors 'none'"));
        assert!(csp.contains("default-src 'none'"));
        assert!(!csp.contains("script-src"));
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
    }
}
