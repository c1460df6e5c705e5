//! The probe's HTTP client: no redirects followed, [`TIMEOUT`] per request,
//! at most [`MAX_BODY`] bytes read of any body, no cookies, and no
//! credentials unless a caller adds a header to one request.

use std::time::Duration;

use reqwest::header::{CONTENT_TYPE, HeaderMap};
use serde_json::{Map, Value};

/// The most of a response body that is ever read.
pub const MAX_BODY: usize = 256 * 1024;
/// The limit for one request, from connecting to the last byte read.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// A response, with its body read up to [`MAX_BODY`].
#[derive(Debug, Clone)]
pub struct Fetched {
    pub url: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// The body was longer than [`MAX_BODY`], or stopped early (an event
    /// stream is read only up to its first event).
    pub truncated: bool,
}

impl Fetched {
    /// The media type, lower-cased, without parameters.
    pub fn media_type(&self) -> Option<String> {
        let v = self.headers.get(CONTENT_TYPE)?.to_str().ok()?;
        let t = v
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        (!t.is_empty()).then_some(t)
    }

    /// `application/json` (RFC 8414 §3.2, RFC 9728 §3.2).
    pub fn is_json_media_type(&self) -> bool {
        self.media_type()
            .is_some_and(|t| t == "application/json" || t.ends_with("+json"))
    }

    /// The body as a JSON object, if it is one.
    pub fn json_object(&self) -> Option<Map<String, Value>> {
        if self.truncated {
            return None;
        }
        match serde_json::from_slice::<Value>(&self.body).ok()? {
            Value::Object(m) => Some(m),
            _ => None,
        }
    }

    /// Every value of a header, in order (values that are not visible
    /// ASCII are skipped).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.header_values(name).into_iter().next()
    }

    /// The start of the body as text, for evidence: at most `max` characters
    /// on one line.
    pub fn body_excerpt(&self, max: usize) -> String {
        one_line(&String::from_utf8_lossy(&self.body), max)
    }
}

/// `text` on one line (whitespace runs as one space), cut to `max`
/// characters with an ellipsis: for showing what a server wrote.
pub(crate) fn one_line(text: &str, max: usize) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() > max {
        let cut: String = line.chars().take(max).collect();
        format!("{cut}…")
    } else {
        line
    }
}

/// The client all probe requests go through.
#[derive(Debug, Clone)]
pub struct Http {
    client: reqwest::Client,
}

impl Http {
    pub fn new(timeout: Duration) -> Result<Self, String> {
        Self::with_user_agent(
            timeout,
            concat!("mcpgate-probe/", env!("CARGO_PKG_VERSION")),
        )
    }

    pub fn with_user_agent(timeout: Duration, agent: &str) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(agent)
            .build()
            .map_err(|e| error_chain(&e))?;
        Ok(Self { client })
    }

    pub fn get(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.get(url)
    }

    pub fn post(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.post(url)
    }

    pub fn delete(&self, url: &str) -> reqwest::RequestBuilder {
        self.client.delete(url)
    }

    /// A GET for a JSON document.
    pub async fn fetch_json(&self, url: &str) -> Result<Fetched, String> {
        self.send(self.get(url).header("accept", "application/json"))
            .await
    }

    /// Sends the request and reads the body within the limits. An error
    /// means no response (connection, TLS, timeout before headers).
    pub async fn send(&self, req: reqwest::RequestBuilder) -> Result<Fetched, String> {
        let mut resp = req.send().await.map_err(|e| error_chain(&e))?;
        let url = resp.url().to_string();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let event_stream = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
        let mut body = Vec::new();
        let mut truncated = false;
        loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    let room = MAX_BODY - body.len();
                    if chunk.len() > room {
                        body.extend_from_slice(&chunk[..room]);
                        truncated = true;
                        break;
                    }
                    body.extend_from_slice(&chunk);
                    // An event stream may stay open: its first event is
                    // all the probe needs.
                    if event_stream && has_complete_event(&body) {
                        truncated = true;
                        break;
                    }
                }
                Ok(None) => break,
                // The status and headers arrived; a body cut short by the
                // timeout is still evidence.
                Err(_) => {
                    truncated = true;
                    break;
                }
            }
        }
        Ok(Fetched {
            url,
            status,
            headers,
            body,
            truncated,
        })
    }
}

/// An SSE event with data has ended (a blank line after a `data:` line).
fn has_complete_event(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(body);
    let text = text.replace("\r\n", "\n");
    let events: Vec<&str> = text.split("\n\n").collect();
    // The last part has not ended yet.
    events[..events.len().saturating_sub(1)]
        .iter()
        .any(|ev| ev.lines().any(|l| l.starts_with("data:")))
}

/// The error and its causes on one line ("connection refused" is in the
/// source, not in reqwest's own message).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !parts.iter().any(|p| p.contains(&m)) {
            parts.push(m);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_first_event_is_complete_only_after_blank_line() {
        assert!(!has_complete_event(b"id: 1\ndata: {\"a\":1}\n"));
        assert!(has_complete_event(b"id: 1\ndata: {\"a\":1}\n\n"));
        assert!(has_complete_event(b"data: x\r\n\r\n"));
        // A priming event (id, no data) is not the answer.
        assert!(!has_complete_event(b"id: 0\n\n"));
    }
}
