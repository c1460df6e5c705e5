//! What is audited: [`Event`], its [`EventKind`], conventional outcomes, and
//! [`args_digest`] for recording *that* arguments were sent without
//! recording them.
//!
//! # Never put a secret in an event
//!
//! Records are kept forever, exported to a SIEM and readable by anyone with
//! database access. Callers put in identifiers (subjects, client ids, key
//! ids, token `jti`s, grant ids, policy ids, route names), never a
//! credential or anything that works as one: no bearer tokens, refresh
//! tokens, authorization codes, API key secrets, client secrets, passwords,
//! cookies, `Authorization` headers or DPoP proofs, and no hashes of them
//! either (a hash of a low-entropy secret can be guessed). An
//! authentication failure records *why* (`reason`: "expired", "bad
//! signature", "unknown key id"), not what was presented. Tool arguments go
//! in as [`args_digest`], their values only where configuration explicitly
//! asks for them (in `details`).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Conventional values of [`Event::outcome`].
pub mod outcome {
    /// A request served, an operation done.
    pub const OK: &str = "ok";
    /// A request or operation that failed (upstream error, internal error).
    pub const ERROR: &str = "error";
    /// An authorization decision that allowed.
    pub const ALLOWED: &str = "allowed";
    /// An authorization decision that denied, a credential rejected.
    pub const DENIED: &str = "denied";
    /// A request the gateway refused before deciding (limits, overload,
    /// audit unavailable).
    pub const REFUSED: &str = "refused";
    /// An attack noticed (code replay, refresh token reuse).
    pub const DETECTED: &str = "detected";
}

/// Defines [`EventKind`] with one stable name per variant.
macro_rules! event_kinds {
    ($($(#[doc = $doc:literal])* $variant:ident => $name:literal,)*) => {
        /// What happened. Each kind has a stable snake_case name
        /// ([`EventKind::as_str`]): it is what the database stores and what
        /// exports carry, so a name is never changed or reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum EventKind {
            $($(#[doc = $doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The stable name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }

        impl FromStr for EventKind {
            type Err = UnknownEventKind;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($name => Ok(EventKind::$variant),)*
                    _ => Err(UnknownEventKind),
                }
            }
        }
    };
}

event_kinds! {
    /// A credential (access token, API key) was accepted. `subject`,
    /// `client_id`, `route`; the key id or `jti` in `details`.
    AuthnSuccess => "authn_success",
    /// A credential was rejected; `reason` says why (never the credential).
    AuthnFailure => "authn_failure",
    /// An authorization decision; `outcome` allowed/denied, `policy_ids` the
    /// deciding policies.
    AuthzDecision => "authz_decision",
    /// A proxied MCP request: `method`, `name` (tool, resource or prompt),
    /// `args_digest`, `outcome`, `latency_us`.
    McpRequest => "mcp_request",
    /// The authorization server issued tokens (authorization code or client
    /// credentials grant).
    TokenIssued => "token_issued",
    /// A refresh token was exchanged for new tokens.
    TokenRefreshed => "token_refreshed",
    /// A token or grant was revoked (RFC 7009, admin CLI, consent revoked).
    TokenRevoked => "token_revoked",
    /// A rotated refresh token was presented again; its grant was revoked.
    RefreshReuseDetected => "refresh_reuse_detected",
    /// An authorization code was redeemed twice; its grant was revoked.
    CodeReplayDetected => "code_replay_detected",
    /// An OAuth client was registered (RFC 7591, CIMD or admin CLI).
    ClientRegistered => "client_registered",
    /// An OAuth client was deleted.
    ClientDeleted => "client_deleted",
    /// An OAuth client's secret was rotated.
    ClientSecretRotated => "client_secret_rotated",
    /// A user consented to a client.
    ConsentGiven => "consent_given",
    /// A consent was withdrawn.
    ConsentRevoked => "consent_revoked",
    /// A local user logged in to the authorization server.
    LoginSuccess => "login_success",
    /// A login failed (unknown user, wrong password, locked, disabled).
    LoginFailure => "login_failure",
    /// A local user account was created.
    UserCreated => "user_created",
    /// A local user account was disabled.
    UserDisabled => "user_disabled",
    /// A local user account was enabled again.
    UserEnabled => "user_enabled",
    /// A local user's password was changed.
    UserPasswordChanged => "user_password_changed",
    /// An API key was created (its id, never its secret).
    ApikeyCreated => "apikey_created",
    /// An API key was revoked.
    ApikeyRevoked => "apikey_revoked",
    /// The authorization server created its first signing keys.
    SigningKeyCreated => "signing_key_created",
    /// The authorization server's signing keys rotated.
    SigningKeyRotated => "signing_key_rotated",
    /// Policies were (re)loaded.
    PolicyReloaded => "policy_reloaded",
    /// New policies were rejected; the old ones stay in force.
    PolicyRejected => "policy_rejected",
    /// The configuration was loaded at start.
    ConfigLoaded => "config_loaded",
    /// The configuration was reloaded or changed.
    ConfigChanged => "config_changed",
    /// A request was refused by a rate limit.
    RateLimited => "rate_limited",
    /// An audit writer started (written by [`AuditLog::open`](crate::AuditLog::open)).
    AuditStarted => "audit_started",
    /// The audit store took writes again after failing; `details` says how
    /// many records were refused meanwhile (their requests were refused too).
    AuditRecovered => "audit_recovered",
    /// An audit writer stopped cleanly (written by
    /// [`AuditLog::shutdown`](crate::AuditLog::shutdown)); an `audit_started`
    /// without one before the next marks a crash.
    AuditStopped => "audit_stopped",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for EventKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A name that is not an [`EventKind`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown audit event kind")]
pub struct UnknownEventKind;

/// One audited event, before it has a place in the chain.
///
/// Build with [`Event::new`] and the builder methods; every optional field
/// defaults to absent. See the [module documentation](self) for what must
/// never go in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Unix milliseconds; [`Event::new`] sets the current time.
    pub time_ms: i64,
    pub kind: EventKind,
    /// The gateway route (its configured name).
    pub route: Option<String>,
    /// The principal: token `sub`, API key owner, local username.
    pub subject: Option<String>,
    pub client_id: Option<String>,
    /// JSON-RPC method (`tools/call`) or HTTP endpoint (`POST /token`).
    pub method: Option<String>,
    /// Tool, resource or prompt name.
    pub name: Option<String>,
    /// See [`outcome`](mod@outcome) for the conventional values.
    pub outcome: String,
    /// Why: the failure or denial reason, never a credential.
    pub reason: Option<String>,
    /// The policies that decided, in evaluation order.
    pub policy_ids: Vec<String>,
    /// [`args_digest`] of the request's arguments.
    pub args_digest: Option<String>,
    pub latency_us: Option<u64>,
    /// The client's address.
    pub peer: Option<String>,
    /// Anything else, as a JSON object (key id, `jti`, grant id, scopes …).
    pub details: Option<serde_json::Value>,
}

impl Event {
    /// An event of `kind` with `outcome`, now.
    pub fn new(kind: EventKind, outcome: impl Into<String>) -> Self {
        Self {
            time_ms: now_ms(),
            kind,
            route: None,
            subject: None,
            client_id: None,
            method: None,
            name: None,
            outcome: outcome.into(),
            reason: None,
            policy_ids: Vec::new(),
            args_digest: None,
            latency_us: None,
            peer: None,
            details: None,
        }
    }

    /// Sets the time (unix milliseconds).
    pub fn at(mut self, time_ms: i64) -> Self {
        self.time_ms = time_ms;
        self
    }

    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.route = Some(route.into());
        self
    }

    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = Some(subject.into());
        self
    }

    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    pub fn method(mut self, method: impl Into<String>) -> Self {
        self.method = Some(method.into());
        self
    }

    /// The tool, resource or prompt name.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = Some(reason.into());
        self
    }

    pub fn policy_ids<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.policy_ids = ids.into_iter().map(Into::into).collect();
        self
    }

    /// Sets [`args_digest`] of `args`.
    pub fn args(mut self, args: &serde_json::Value) -> Self {
        self.args_digest = Some(args_digest(args));
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency_us = Some(u64::try_from(latency.as_micros()).unwrap_or(u64::MAX));
        self
    }

    pub fn peer(mut self, peer: impl Into<String>) -> Self {
        self.peer = Some(peer.into());
        self
    }

    /// Sets the peer to `ip`'s text, written into one allocation of the
    /// longest size an address takes (`ip.to_string()` grows its string
    /// two or three times, per request on the gateway's path).
    pub fn peer_ip(mut self, ip: std::net::IpAddr) -> Self {
        use std::fmt::Write as _;
        // "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
        const LONGEST: usize = 45;
        let mut text = String::with_capacity(LONGEST);
        // Writing to a String cannot fail.
        let _ = write!(text, "{ip}");
        self.peer = Some(text);
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }
}

/// SHA-256 (lowercase hex) of the canonical JSON of `args`: object members
/// sorted by key (bytewise, UTF-8), no whitespace, strings escaped as
/// `serde_json` does, numbers as `serde_json` writes them. Equal arguments
/// give equal digests whatever their member order, so a SIEM can correlate
/// calls, and someone who knows the arguments can confirm them, without the
/// log holding them. Low-entropy arguments can be guessed from their digest:
/// it hides values from casual reading, not from a determined guesser.
pub fn args_digest(args: &serde_json::Value) -> String {
    let mut out = Vec::with_capacity(256);
    canonical_json(args, &mut out);
    crate::hex(&mcpgate_crypto::sha256(&out))
}

fn canonical_json(v: &serde_json::Value, out: &mut Vec<u8>) {
    use serde_json::Value;
    match v {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, value)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                compact(key, out);
                out.push(b':');
                canonical_json(value, out);
            }
            out.push(b'}');
        }
        scalar => compact(scalar, out),
    }
}

/// serde_json's compact form of a string or scalar, appended to `out`.
fn compact<T: Serialize + ?Sized>(v: &T, out: &mut Vec<u8>) {
    // Serializing a string or a scalar `Value` into a `Vec` cannot fail.
    let _ = serde_json::to_writer(out, v);
}

/// The current time in unix milliseconds (0 if the clock is before 1970).
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn peer_ip_is_the_address_text() {
        for text in [
            "127.0.0.1",
            "::1",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            "::ffff:255.255.255.255",
        ] {
            let ip: std::net::IpAddr = text.parse().unwrap();
            let ev = Event::new(EventKind::McpRequest, outcome::OK).peer_ip(ip);
            assert_eq!(ev.peer.as_deref(), Some(text));
        }
    }

    #[test]
    fn kind_names_are_snake_case_unique_and_round_trip() {
        let mut seen = std::collections::HashSet::new();
        for &kind in EventKind::ALL {
            let name = kind.as_str();
            assert!(
                name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                "{name}"
            );
            assert!(seen.insert(name), "duplicate {name}");
            assert_eq!(name.parse::<EventKind>(), Ok(kind));
        }
        assert_eq!(EventKind::McpRequest.as_str(), "mcp_request");
        assert_eq!(EventKind::ApikeyCreated.to_string(), "apikey_created");
        assert!("McpRequest".parse::<EventKind>().is_err());
    }

    #[test]
    fn args_digest_ignores_member_order_and_whitespace() {
        let a = json!({"b": [1, {"y": 2, "x": "é"}], "a": null});
        let b: serde_json::Value =
            serde_json::from_str(r#"{ "a" : null, "b" : [ 1, { "x": "é", "y": 2 } ] }"#).unwrap();
        assert_eq!(args_digest(&a), args_digest(&b));
        assert_ne!(args_digest(&a), args_digest(&json!({"a": null})));
        let mut canonical = Vec::new();
        canonical_json(&a, &mut canonical);
        assert_eq!(
            std::str::from_utf8(&canonical).unwrap(),
            r#"{"a":null,"b":[1,{"x":"é","y":2}]}"#
        );
        // Keys and strings escaped as serde_json escapes them.
        let mut escaped = Vec::new();
        canonical_json(&json!({"q\"": "\n\u{1}"}), &mut escaped);
        assert_eq!(escaped, br#"{"q\"":"\n\u0001"}"#);
        // SHA-256 of the canonical text, lowercase hex.
        assert_eq!(
            args_digest(&json!({})),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }

    #[test]
    fn builder_sets_fields() {
        let ev = Event::new(EventKind::McpRequest, outcome::OK)
            .at(5)
            .route("github")
            .subject("alice")
            .client_id("c1")
            .method("tools/call")
            .name("search")
            .policy_ids(["p1", "p2"])
            .args(&json!({"q": "x"}))
            .latency(Duration::from_micros(1500))
            .peer("127.0.0.1:5000");
        assert_eq!(ev.time_ms, 5);
        assert_eq!(ev.policy_ids, ["p1", "p2"]);
        assert_eq!(ev.latency_us, Some(1500));
        assert_eq!(ev.args_digest.as_deref().map(str::len), Some(64));
        assert_eq!(
            serde_json::to_value(&ev).unwrap()["kind"],
            json!("mcp_request")
        );
    }
}
