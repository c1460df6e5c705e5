//! The gateway end to end on loopback: real HTTP, a real JWKS issuer, real
//! upstreams (a recording Streamable HTTP server, the example stdio server),
//! real SQLite. One test binary for link speed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod http;
mod limits;
mod policy;
mod replicas;
mod stdio;
mod support;
mod upstream_h1;
