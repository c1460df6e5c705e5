//! Integration tests of mcpgate-policy: one binary, a module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod authorize;
mod reload;
mod support;
mod validate;
