//! A configured route at run time.

use std::sync::Arc;

use mcpgate_core::ResourceUri;
use mcpgate_core::config::{Config, Route, Upstream};

use crate::metadata;
use crate::proxy::http::HttpUpstream;
use crate::proxy::stdio::StdioUpstream;

#[derive(Debug)]
pub struct RouteRuntime {
    pub config: Route,
    pub resource: ResourceUri,
    pub prm_url: String,
    pub allowed_origins: Vec<String>,
    /// For a loopback `public_url`: the Host header must be loopback too
    /// (DNS-rebinding protection for local deployments).
    pub loopback_only_host: bool,
    pub upstream: UpstreamRuntime,
    /// `[[routes.rate_limits]]`.
    pub limits: crate::limits::RouteLimits,
    /// The route's policy set and where it is loaded from (`policy`).
    pub policy: Option<(mcpgate_policy::PolicyHandle, std::path::PathBuf)>,
    /// The route's path as its metrics label.
    pub metrics_name: crate::metrics::RouteName,
}

#[derive(Debug)]
pub enum UpstreamRuntime {
    Http(Box<HttpUpstream>),
    Stdio(Arc<StdioUpstream>),
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RouteError {
    #[error("route {path}: {message}")]
    Invalid { path: String, message: String },
}

impl RouteRuntime {
    pub fn new(
        config: &Config,
        route: &Route,
        http: crate::proxy::http::Client,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, RouteError> {
        let invalid = |message: String| RouteError::Invalid {
            path: route.path.clone(),
            message,
        };
        let resource = config
            .resource_uri(route)
            .map_err(|e| invalid(e.to_string()))?;
        let public = config.public_url.as_str();
        let origin = config.public_url.origin();
        let loopback = is_loopback_origin(&origin);
        let allowed_origins = if route.allowed_origins.is_empty() {
            if loopback {
                loopback_aliases(&origin)
            } else {
                vec![origin]
            }
        } else {
            route.allowed_origins.clone()
        };
        let upstream = match &route.upstream {
            Upstream::Http { url } => UpstreamRuntime::Http(Box::new(
                HttpUpstream::new(url, http, config.limits.upstream_timeout_secs)
                    .map_err(invalid)?,
            )),
            Upstream::Stdio {
                command,
                env,
                cwd,
                idle_timeout_secs,
            } => UpstreamRuntime::Stdio(StdioUpstream::new(
                route.path.clone(),
                command.clone(),
                env.iter()
                    .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                    .collect(),
                cwd.as_ref().map(|c| config.base_dir.join(c)),
                *idle_timeout_secs,
                config.limits.upstream_timeout_secs,
                metrics,
            )),
        };
        Ok(Self {
            config: route.clone(),
            resource,
            prm_url: metadata::prm_url(public, &route.path),
            allowed_origins,
            loopback_only_host: loopback,
            upstream,
            limits: crate::limits::RouteLimits::new(&route.rate_limits),
            metrics_name: crate::metrics::RouteName::new(&route.path),
            policy: match &route.policy {
                None => None,
                Some(p) => {
                    let path = config.base_dir.join(p);
                    // Fail closed: a gateway whose policy does not load
                    // does not start.
                    let set = mcpgate_policy::Policies::load(&path)
                        .map_err(|e| invalid(format!("policy {}: {e}", path.display())))?;
                    Some((mcpgate_policy::PolicyHandle::new(set), path))
                }
            },
        })
    }

    /// Whether `tools/list` answers must be filtered per caller or for
    /// everyone (tool scopes, include/exclude lists).
    pub fn filters_tools(&self) -> bool {
        self.policy.is_some()
            || !self.config.tool_scopes.is_empty()
            || !self.config.tools_include.is_empty()
            || !self.config.tools_exclude.is_empty()
    }
}

fn is_loopback_origin(origin: &str) -> bool {
    url::Url::parse(origin).is_ok_and(|u| match u.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    })
}

/// For a loopback origin, the same scheme and port under each loopback name
/// (browsers and SDKs use `localhost` and `127.0.0.1` interchangeably).
fn loopback_aliases(origin: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(origin) else {
        return vec![origin.to_owned()];
    };
    let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .map(|h| format!("{}://{h}{port}", u.scheme()))
        .collect()
}

/// Whether a Host header names a loopback host.
pub fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_host_forms() {
        assert!(is_loopback_host("localhost:8080"));
        assert!(is_loopback_host("127.0.0.1:1"));
        assert!(is_loopback_host("[::1]:80"));
        assert!(is_loopback_host("localhost"));
        assert!(!is_loopback_host("evil.example.com"));
        assert!(!is_loopback_host("evil.example.com:8080"));
        assert!(!is_loopback_host("127.0.0.1.evil.example:80"));
    }

    #[test]
    fn loopback_origin_has_aliases() {
        assert_eq!(
            loopback_aliases("http://127.0.0.1:9"),
            vec!["http://localhost:9", "http://127.0.0.1:9", "http://[::1]:9"]
        );
    }
}
