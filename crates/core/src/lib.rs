//! Core types of mcpgate, with no I/O.
//!
//! Everything here is built once from untrusted input (network or
//! configuration) and trusted afterwards: [`ResourceUri`], [`Scope`] and
//! [`ScopeSet`] (RFC 6749 §3.3), the JSON-RPC envelope the gateway parses to
//! authorise a request ([`jsonrpc`]), the MCP transport headers ([`mcp`]) and
//! the typed configuration tree ([`config`]).
//!
//! Trust boundary: parsers in this crate take attacker-controlled bytes and
//! must bound size and depth; nothing here holds keys or secrets in the clear
//! beyond the configuration's [`config::SecretString`], whose `Debug` is
//! redacted.

pub mod config;
pub mod jsonrpc;
pub mod mcp;
mod resource;
mod scope;

pub use resource::{ResourceUri, ResourceUriError};
pub use scope::{Scope, ScopeError, ScopeSet};
