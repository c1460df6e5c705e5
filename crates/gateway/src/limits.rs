//! Rate limits per principal, client or route, optionally for one tool
//! (`[[routes.rate_limits]]`), as GCRA (governor): `limit` requests per
//! `window_secs`, with a burst of `limit`.
//!
//! Limits are counted in each gateway process. With several replicas
//! behind a load balancer, each enforces the full budget, so a caller
//! spread over N replicas gets up to N times the limit. Sharing the count
//! would put a database round trip (or a Redis one) on every request; the
//! limits here protect an upstream from one misbehaving agent, and a
//! per-replica budget does that. Memory is bounded by forgetting idle keys
//! periodically.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use mcpgate_core::config::{LimitKey, RateLimit};
use mcpgate_core::jsonrpc::Message;

use crate::authn::Principal;

/// Every this many checks, idle keys are dropped.
const SWEEP_EVERY: u64 = 4096;

struct Limiter {
    config: RateLimit,
    limiter: DefaultKeyedRateLimiter<String>,
}

impl std::fmt::Debug for Limiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limiter")
            .field("config", &self.config)
            .finish()
    }
}

/// The limits of one route.
#[derive(Debug)]
pub struct RouteLimits {
    limiters: Vec<Limiter>,
    checks: AtomicU64,
    clock: DefaultClock,
}

/// A refused request: which limit, and how long to wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exceeded {
    pub retry_after_secs: u64,
    pub key: LimitKey,
    pub tool: Option<String>,
}

fn quota(l: &RateLimit) -> Option<Quota> {
    let burst = NonZeroU32::new(l.limit)?;
    let period = Duration::from_secs(l.window_secs) / l.limit;
    Some(Quota::with_period(period)?.allow_burst(burst))
}

impl RouteLimits {
    /// Limits whose numbers the configuration already validated (a zero
    /// limit or window is skipped).
    pub fn new(config: &[RateLimit]) -> Self {
        let limiters = config
            .iter()
            .filter_map(|c| {
                Some(Limiter {
                    config: c.clone(),
                    limiter: RateLimiter::keyed(quota(c)?),
                })
            })
            .collect();
        Self {
            limiters,
            checks: AtomicU64::new(0),
            clock: DefaultClock::default(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.limiters.is_empty()
    }

    /// Counts the request (each message of a batch) against every limit
    /// that applies; the first exceeded limit refuses it.
    pub fn check(&self, principal: &Principal, messages: &[Message]) -> Result<(), Exceeded> {
        if self.limiters.is_empty() {
            return Ok(());
        }
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            for l in &self.limiters {
                l.limiter.retain_recent();
            }
        }
        let count = messages.len().max(1);
        for l in &self.limiters {
            let applies = match &l.config.tool {
                None => count,
                Some(tool) => messages
                    .iter()
                    .filter(|m| {
                        m.method() == Some("tools/call") && m.param_str("name") == Some(tool)
                    })
                    .count(),
            };
            if applies == 0 {
                continue;
            }
            let key = match l.config.key {
                LimitKey::Principal => principal.partition_key().to_owned(),
                LimitKey::Client => match &principal.client_id {
                    Some(c) => format!("client\u{1f}{c}"),
                    None => principal.partition_key().to_owned(),
                },
                LimitKey::Route => String::new(),
            };
            let n = NonZeroU32::new(applies as u32).unwrap_or(NonZeroU32::MIN);
            let refused = match l.limiter.check_key_n(&key, n) {
                Ok(Ok(())) => None,
                Ok(Err(not_until)) => Some(not_until.wait_time_from(self.clock.now())),
                // More messages than the whole budget: wait a full window.
                Err(_) => Some(Duration::from_secs(l.config.window_secs)),
            };
            if let Some(wait) = refused {
                return Err(Exceeded {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                    key: l.config.key,
                    tool: l.config.tool.clone(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpgate_core::ScopeSet;
    use mcpgate_core::jsonrpc::{Body, parse};

    use crate::authn::PrincipalKind;

    fn who(sub: &str, client: Option<&str>) -> Principal {
        Principal::new(
            PrincipalKind::Token,
            sub.into(),
            client.map(str::to_owned),
            ScopeSet::new(),
            Some("iss".into()),
        )
    }

    fn msg(method: &str, tool: Option<&str>) -> Message {
        let params = tool.map_or(String::new(), |t| format!(r#","params":{{"name":"{t}"}}"#));
        let Ok(Body::Single(m)) = parse(
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}"{params}}}"#).as_bytes(),
            16,
        ) else {
            panic!("bad message")
        };
        m
    }

    fn limit(key: LimitKey, tool: Option<&str>, n: u32) -> RateLimit {
        RateLimit {
            key,
            tool: tool.map(str::to_owned),
            limit: n,
            window_secs: 60,
        }
    }

    #[test]
    fn principal_limit_counts_each_principal_separately() {
        let l = RouteLimits::new(&[limit(LimitKey::Principal, None, 3)]);
        let (a, b) = (who("alice", None), who("bob", None));
        let m = [msg("tools/list", None)];
        for _ in 0..3 {
            assert!(l.check(&a, &m).is_ok());
        }
        let e = l.check(&a, &m).unwrap_err();
        assert!(e.retry_after_secs >= 1 && e.retry_after_secs <= 20, "{e:?}");
        assert!(l.check(&b, &m).is_ok(), "bob has his own budget");
    }

    #[test]
    fn tool_limit_applies_to_that_tool_only() {
        let l = RouteLimits::new(&[limit(LimitKey::Route, Some("write_note"), 1)]);
        let a = who("alice", None);
        assert!(
            l.check(&a, &[msg("tools/call", Some("write_note"))])
                .is_ok()
        );
        assert!(
            l.check(&a, &[msg("tools/call", Some("write_note"))])
                .is_err()
        );
        assert!(l.check(&a, &[msg("tools/call", Some("echo"))]).is_ok());
        assert!(l.check(&a, &[msg("tools/list", None)]).is_ok());
        // The route key is shared by everyone.
        assert!(
            l.check(&who("bob", None), &[msg("tools/call", Some("write_note"))])
                .is_err()
        );
    }

    #[test]
    fn client_limit_groups_principals_of_one_client() {
        let l = RouteLimits::new(&[limit(LimitKey::Client, None, 2)]);
        let m = [msg("ping", None)];
        assert!(l.check(&who("alice", Some("c1")), &m).is_ok());
        assert!(l.check(&who("bob", Some("c1")), &m).is_ok());
        assert!(l.check(&who("carol", Some("c1")), &m).is_err());
        assert!(l.check(&who("carol", Some("c2")), &m).is_ok());
    }

    #[test]
    fn a_batch_larger_than_the_budget_is_refused() {
        let l = RouteLimits::new(&[limit(LimitKey::Principal, None, 2)]);
        let batch = [msg("ping", None), msg("ping", None), msg("ping", None)];
        let e = l.check(&who("a", None), &batch).unwrap_err();
        assert_eq!(e.retry_after_secs, 60);
    }
}
