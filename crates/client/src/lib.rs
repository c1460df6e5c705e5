//! The client side of mcpgate: what an MCP client does before it can call a
//! protected server. [`connect`] is `mcpgate connect URL`, a stdio bridge
//! that authorizes as an MCP client and relays; [`probe`] is the
//! authorization check-up behind `mcpgate probe URL`. Both use
//! [`discovery`] and [`challenge`].
//!
//! The probe walks the discovery an MCP client walks, without credentials:
//! an unauthenticated request and its `WWW-Authenticate` challenge
//! (RFC 6750 §3, RFC 9728 §5.1), Protected Resource Metadata (RFC 9728 §3),
//! authorization server metadata (RFC 8414 §3, OpenID Connect Discovery, in
//! the order of the MCP specification's "Authorization Server Metadata
//! Discovery"), and reports a verdict per requirement of the MCP
//! authorization specification (revisions 2025-11-25 and 2026-07-28).
//!
//! Trust boundary: every byte the probed servers send is untrusted. Bodies
//! are read up to [`http::MAX_BODY`], each request times out after
//! [`http::TIMEOUT`], redirects are never followed, and the only credential
//! ever sent is the one the caller passes in [`probe::ProbeOptions::token`],
//! and only to the MCP endpoint itself (and to the caller's own
//! `--other-resource`, which must share its origin).

pub mod challenge;
pub mod connect;
pub mod discovery;
pub mod http;
pub mod probe;

// A module and a function may share a name: they live in different namespaces.
pub use probe::{Check, ClientCompat, Compat, Level, ProbeOptions, Report, Token, Verdict, probe};
