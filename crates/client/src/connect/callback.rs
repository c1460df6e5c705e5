//! The loopback redirect listener of a native client (RFC 8252 §7.3):
//! `http://127.0.0.1:PORT/callback` receives the authorization response.
//!
//! Only a response carrying the `state` of this flow ends the wait; anything
//! else (another tab, a stale flow, a forged request) gets an error page and
//! the listener keeps waiting until the login timeout.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::response::Html;
use axum::routing::get;
use std::collections::HashMap;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::error::ConnectError;

/// The authorization response's parameters.
#[derive(Debug)]
pub struct Callback {
    pub code: Option<Zeroizing<String>>,
    pub iss: Option<String>,
    /// `error` and `error_description`, as one line.
    pub error: Option<String>,
}

/// A bound listener, not yet serving.
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    port: u16,
}

/// Binds 127.0.0.1 on `port` (falling back to any free port when it is
/// taken), or on any free port.
pub async fn bind(port: Option<u16>) -> Result<Listener, ConnectError> {
    let listener = match port {
        Some(p) => match TcpListener::bind(("127.0.0.1", p)).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "mcpgate connect: port {p} for the login redirect is taken ({e}); using another"
                );
                TcpListener::bind(("127.0.0.1", 0))
                    .await
                    .map_err(bind_err)?
            }
        },
        None => TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(bind_err)?,
    };
    let port = listener.local_addr().map_err(bind_err)?.port();
    Ok(Listener { listener, port })
}

fn bind_err(e: std::io::Error) -> ConnectError {
    ConnectError::Authorization(format!(
        "cannot listen on 127.0.0.1 for the login redirect: {e}"
    ))
}

type Params = HashMap<String, String>;

impl Listener {
    pub fn redirect_uri(&self) -> String {
        format!("http://127.0.0.1:{}/callback", self.port)
    }

    /// Serves until a response with `state` arrives or `timeout` passes.
    pub async fn wait(self, state: &str, timeout: Duration) -> Result<Callback, ConnectError> {
        let (tx, mut rx) = mpsc::channel::<Params>(4);
        let app = axum::Router::new()
            .route("/callback", get(receive))
            .with_state((tx, Arc::<str>::from(state)));
        let server = tokio::spawn(async move {
            let _ = axum::serve(self.listener, app).await;
        });
        let result = match tokio::time::timeout(timeout, rx.recv()).await {
            Ok(Some(params)) => {
                let error = params
                    .get("error")
                    .map(|e| match params.get("error_description") {
                        Some(d) => format!("{e} ({d})"),
                        None => e.clone(),
                    });
                Ok(Callback {
                    code: params.get("code").map(|c| Zeroizing::new(c.clone())),
                    iss: params.get("iss").cloned(),
                    error,
                })
            }
            Ok(None) | Err(_) => Err(ConnectError::Authorization(format!(
                "no login completed within {} s (the browser never came back to \
                 http://127.0.0.1:{}/callback); run again, or pass --no-browser to open the URL \
                 yourself",
                timeout.as_secs(),
                self.port,
            ))),
        };
        // Let the page reach the browser before the listener goes.
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.abort();
        result
    }
}

async fn receive(
    State((tx, state)): State<(mpsc::Sender<Params>, Arc<str>)>,
    Query(params): Query<Params>,
) -> (axum::http::StatusCode, Html<&'static str>) {
    let ours = params
        .get("state")
        .is_some_and(|s| mcpgate_crypto::secret::ct_eq(s.as_bytes(), state.as_bytes()));
    if !ours {
        return (
            axum::http::StatusCode::BAD_REQUEST,
            Html(
                "<!doctype html><title>mcpgate connect</title>\
                 <p>This response is not for the login mcpgate connect is waiting for.</p>",
            ),
        );
    }
    let ok = params.contains_key("code") && !params.contains_key("error");
    let _ = tx.try_send(params);
    if ok {
        (
            axum::http::StatusCode::OK,
            Html(
                "<!doctype html><title>mcpgate connect</title>\
                 <p>Login complete. You can close this window.</p>",
            ),
        )
    } else {
        (
            axum::http::StatusCode::BAD_REQUEST,
            Html(
                "<!doctype html><title>mcpgate connect</title>\
                 <p>The login did not complete; see the terminal running mcpgate connect.</p>",
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_matching_state_ends_the_wait() {
        let l = bind(None).await.unwrap();
        let uri = l.redirect_uri();
        assert!(uri.starts_with("http://127.0.0.1:"));
        let wait = tokio::spawn(async move { l.wait("s1", Duration::from_secs(10)).await });
        let http = reqwest::Client::new();
        // A forged or stale response: refused, and the wait goes on.
        let r = http
            .get(format!("{uri}?code=evil&state=other"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
        let r = http
            .get(format!("{uri}?code=c0de&state=s1&iss=https%3A%2F%2Fas"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let cb = wait.await.unwrap().unwrap();
        assert_eq!(cb.code.as_deref().map(String::as_str), Some("c0de"));
        assert_eq!(cb.iss.as_deref(), Some("https://as"));
        assert!(cb.error.is_none());
    }

    #[tokio::test]
    async fn error_response_is_reported() {
        let l = bind(None).await.unwrap();
        let uri = l.redirect_uri();
        let wait = tokio::spawn(async move { l.wait("s", Duration::from_secs(10)).await });
        let r = reqwest::get(format!(
            "{uri}?error=access_denied&error_description=user+said+no&state=s"
        ))
        .await
        .unwrap();
        assert_eq!(r.status(), 400);
        let cb = wait.await.unwrap().unwrap();
        assert_eq!(cb.error.as_deref(), Some("access_denied (user said no)"));
        assert!(cb.code.is_none());
    }

    #[tokio::test]
    async fn times_out_with_advice() {
        let l = bind(None).await.unwrap();
        let err = l
            .wait("s", Duration::from_millis(200))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("no login completed"), "{err}");
    }
}
