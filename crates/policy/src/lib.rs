//! Authorization policies for MCP, written in Cedar.
//!
//! **Role.** After the gateway has authenticated a caller and checked the
//! route's scopes, it asks this crate whether the route's policies let that
//! caller make this MCP call: [`Policies::authorize`] takes a [`Request`]
//! (who, which method, on which tool / resource / prompt of which route,
//! with what arguments) and returns a [`Decision`] naming the policies that
//! decided it. A route with no policy file uses [`Policies::allow_all`]:
//! scopes alone decide.
//!
//! **Trust boundary.** Policy files are trusted configuration, but they are
//! validated against the published [`SCHEMA`] before use and a set that
//! fails keeps the previous one in force ([`PolicyHandle::reload`]). Request
//! data is untrusted: the principal's claims come from a verified
//! credential, the call's arguments straight from the client, so argument
//! conversion is bounded (see [`Context::arguments`]).
//!
//! **Fail closed.** A loaded set denies, with the reason in
//! [`Decision::errors`], when: the method is not declared in the schema; the
//! target does not fit the method; the arguments exceed the conversion
//! bounds and a policy that applies reads `context.arguments`; or a
//! `forbid` policy fails to evaluate (Cedar would skip it, which could let
//! through a request the `forbid` was written to stop). A policy that can
//! never apply is refused at load, not warned about.
//!
//! **Cost.** Cedar evaluates every policy it is given, so policies are
//! first selected by their scope (`index`), and the entities of a caller
//! and target are built once and cached (`entities`); see `README.md` for
//! the numbers.
//!
//! The schema, the conversion rules and the validation design are
//! described in `README.md` and on [`Policies::parse`] and [`Context`].

#![forbid(unsafe_code)]

mod arguments;
mod authorize;
mod decision;
mod entities;
mod error;
mod index;
mod load;
mod memo;
mod reload;
mod request;
mod schema;

pub use arguments::{MAX_ARGUMENT_DEPTH, MAX_ARGUMENT_STRING_BYTES, MAX_ARGUMENT_VALUES};
pub use decision::Decision;
pub use error::{PolicyError, Problem};
pub use load::Policies;
pub use reload::{OnReload, PolicyHandle, WATCH_INTERVAL, spawn_watch, spawn_watch_with};
pub use request::{Context, PrincipalKind, PrincipalRef, Request, Target};
pub use schema::{SCHEMA, is_declared_method, list_item_method};
