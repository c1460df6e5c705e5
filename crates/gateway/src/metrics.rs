//! Prometheus metrics, served on their own listener (`metrics_listen`).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// A route's path as a label value, made once per route: a request's
/// labels then cost a reference count, not a copy of the path.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct RouteName(Arc<str>);

impl RouteName {
    pub fn new(path: &str) -> Self {
        Self(path.into())
    }
}

impl EncodeLabelValue for RouteName {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(&self.0)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: RouteName,
    pub method: &'static str,
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: RouteName,
}

#[derive(Debug)]
pub struct Metrics {
    pub registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub upstream_latency: Family<RouteLabels, Histogram>,
    pub active_streams: Gauge<i64, AtomicI64>,
    pub stdio_children: Gauge<i64, AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("mcpgate");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "requests",
            "MCP requests by route, JSON-RPC method and outcome",
            requests.clone(),
        );
        let auth_failures = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "auth_failures",
            "Refused credentials by reason",
            auth_failures.clone(),
        );
        let upstream_latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
        });
        registry.register(
            "upstream_latency_seconds",
            "Time until the upstream's response headers",
            upstream_latency.clone(),
        );
        let active_streams = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "active_sse_streams",
            "Event streams currently open to clients",
            active_streams.clone(),
        );
        let stdio_children = Gauge::<i64, AtomicI64>::default();
        registry.register(
            "stdio_children",
            "Running stdio MCP server processes",
            stdio_children.clone(),
        );
        Self {
            registry,
            requests,
            auth_failures,
            upstream_latency,
            active_streams,
            stdio_children,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// The JSON-RPC method as a metrics label: known MCP methods by name,
/// anything else as `other` (bounded cardinality).
pub fn method_label(method: Option<&str>) -> &'static str {
    const KNOWN: &[&str] = &[
        "initialize",
        "ping",
        "server/discover",
        "tools/list",
        "tools/call",
        "resources/list",
        "resources/read",
        "resources/templates/list",
        "resources/subscribe",
        "resources/unsubscribe",
        "prompts/list",
        "prompts/get",
        "completion/complete",
        "logging/setLevel",
        "subscriptions/listen",
        "tasks/get",
        "tasks/update",
        "tasks/cancel",
        "tasks/result",
        "tasks/list",
        "notifications/initialized",
        "notifications/cancelled",
    ];
    match method {
        None => "none",
        Some(m) => KNOWN.iter().find(|k| **k == m).copied().unwrap_or("other"),
    }
}
