//! Persistent state for the mcpgate gateway: one [`Store`] trait, two SQL
//! backends, and their migrations; and, beside it, the [`AuditStore`] trait
//! for the tamper-evident audit trail (see [`open_audit`]), implemented by
//! the same backends.
//!
//! # Trust boundary
//!
//! The store holds what the gateway must remember across restarts (API keys,
//! and the built-in authorization server's signing keys, OAuth clients and
//! local user accounts) and is shared by the running `serve` process, its
//! replicas and admin CLI commands. It never sees a secret: callers hash
//! secrets (in `mcpgate-crypto`) before they reach this crate, and only the
//! 32-byte hash is written (for users' passwords, a salted Argon2id PHC
//! string); private signing keys arrive already encrypted and are stored as
//! opaque bytes. Anyone who reads the database learns key ids, names,
//! routes, scopes, client metadata, usernames and public keys, not secrets
//! or private keys (password hashes still allow offline guessing, slowed by
//! Argon2id). Lookups compare ids, not secrets; constant-time comparison of
//! the hash is the caller's job. The `Debug` output of records never shows
//! a hash or key material.
//!
//! # Tenancy
//!
//! Every row belongs to a tenant (`tenant_id` column, part of the primary key)
//! and every query filters by tenant: a tenant cannot read, list or revoke
//! another tenant's rows, and ids only need to be unique within a tenant.
//! Single-tenant deployments use [`DEFAULT_TENANT`].
//!
//! # Backends
//!
//! [`open`] picks the backend from the URL:
//!
//! - `sqlite://PATH` (`sqlite://gateway.db` is relative to the working
//!   directory, `sqlite:///var/lib/mcpgate/gateway.db` is absolute). The file
//!   is created if missing; its directory is not. The database runs in WAL
//!   mode with `synchronous=FULL` (an acknowledged revocation survives power
//!   loss) and a 5 s busy timeout, so a `serve` process and a CLI command can
//!   use it at the same time.
//! - `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE` (or `postgresql://`),
//!   with the usual libpq-style query parameters (`sslmode`, …). To keep
//!   mcpgate's tables in their own, existing schema, add
//!   `?options[search_path]=SCHEMA`.
//!
//! Migrations are embedded in the binary and applied on every [`open`];
//! applying them is idempotent and safe when several processes open the same
//! database at once.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

mod audit;
mod migrate;
mod sql;

pub use audit::{
    AUDIT_HASH_LEN, AuditCheckpoint, AuditHead, AuditRecord, AuditSealer, AuditStore, SealedBatch,
};

/// The tenant of single-tenant deployments.
pub const DEFAULT_TENANT: &str = "default";

/// An API key as stored: metadata plus the hash of its secret.
///
/// Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub tenant_id: String,
    /// Unique within the tenant; the public half of the key.
    pub id: String,
    /// Human label shown by the admin CLI.
    pub name: String,
    /// The gateway route this key grants access to.
    pub route: String,
    /// Granted scopes. Scope tokens contain no whitespace (RFC 6749 §3.3),
    /// which is what lets the store keep them space-separated in one column.
    pub scopes: Vec<String>,
    /// 32-byte hash of the secret; the database rejects any other length.
    pub secret_hash: Vec<u8>,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// Where a signing key is in its life cycle: `Next` (published in the JWKS
/// ahead of use, so verifiers have it before the first token it signs) →
/// `Current` (signs new tokens) → `Retired` (no longer signs; published until
/// its `publish_until`, then deleted). A tenant has at most one `Next` and
/// one `Current` key; the database enforces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    Next,
    Current,
    Retired,
}

/// A signing key of the built-in authorization server, as stored.
///
/// Times are unix seconds. Not `Debug`-derived: the private key, although
/// encrypted, is shown as its length only.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub tenant_id: String,
    /// Key id (JWS `kid`), unique within the tenant.
    pub kid: String,
    /// JWS algorithm, e.g. `ES256`.
    pub alg: String,
    pub state: KeyState,
    /// The private key, encrypted by the caller; opaque to the store.
    pub private_key_enc: Vec<u8>,
    /// The public key as a JWK (JSON text), as published.
    pub public_jwk: String,
    pub created_at: i64,
    /// When the key became `Current`.
    pub activated_at: Option<i64>,
    /// When the key became `Retired`.
    pub retired_at: Option<i64>,
    /// A retired key stays in the JWKS until then, and is deleted after.
    pub publish_until: Option<i64>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("tenant_id", &self.tenant_id)
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("state", &self.state)
            .field(
                "private_key_enc",
                &format_args!("<{} bytes>", self.private_key_enc.len()),
            )
            .field("public_jwk", &self.public_jwk)
            .field("created_at", &self.created_at)
            .field("activated_at", &self.activated_at)
            .field("retired_at", &self.retired_at)
            .field("publish_until", &self.publish_until)
            .finish()
    }
}

/// An OAuth client of the built-in authorization server, as stored.
///
/// Times are unix seconds. Not `Debug`-derived: hashes are shown as present
/// or absent only.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub tenant_id: String,
    /// Unique within the tenant.
    pub client_id: String,
    pub name: String,
    /// `none`, `client_secret_basic`, `client_secret_post` or
    /// `private_key_jwt` (RFC 7591 §2); not interpreted by the store.
    pub token_endpoint_auth_method: String,
    /// Registered redirect URIs. No element may be empty or contain a
    /// newline ([`StoreError::InvalidRecord`]): the list is stored
    /// newline-separated. A redirect URI is absolute (RFC 6749 §3.1.2) and
    /// has no raw whitespace (RFC 3986 §2), so neither restricts a valid one.
    pub redirect_uris: Vec<String>,
    /// Allowed grant types; stored like `redirect_uris`, same restriction.
    pub grant_types: Vec<String>,
    /// Space-separated scopes the client may request, if restricted.
    pub scope: Option<String>,
    /// The client's JWK Set (JSON text), for `private_key_jwt`.
    pub jwks: Option<String>,
    /// 32-byte hash of the client secret; the database rejects any other
    /// length. `None` for clients that authenticate without a secret.
    pub secret_hash: Option<Vec<u8>>,
    /// The secret replaced by the last rotation (32-byte hash), accepted
    /// until `previous_secret_valid_until`. The two are set together or not
    /// at all (the database rejects one without the other).
    pub previous_secret_hash: Option<Vec<u8>>,
    pub previous_secret_valid_until: Option<i64>,
    /// How the client was registered: `cli`, `dcr` (RFC 7591) or `cimd`
    /// (client ID metadata document). `dcr` clients are subject to
    /// [`Store::delete_unused_registrations`].
    pub origin: String,
    pub created_at: i64,
    /// Last time the client was used ([`Store::touch_client`]).
    pub last_used_at: Option<i64>,
}

impl fmt::Debug for ClientRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientRecord")
            .field("tenant_id", &self.tenant_id)
            .field("client_id", &self.client_id)
            .field("name", &self.name)
            .field(
                "token_endpoint_auth_method",
                &self.token_endpoint_auth_method,
            )
            .field("redirect_uris", &self.redirect_uris)
            .field("grant_types", &self.grant_types)
            .field("scope", &self.scope)
            .field("jwks", &self.jwks)
            .field("secret_hash", &Presence(self.secret_hash.is_some()))
            .field(
                "previous_secret_hash",
                &Presence(self.previous_secret_hash.is_some()),
            )
            .field(
                "previous_secret_valid_until",
                &self.previous_secret_valid_until,
            )
            .field("origin", &self.origin)
            .field("created_at", &self.created_at)
            .field("last_used_at", &self.last_used_at)
            .finish()
    }
}

/// A local user account of the built-in authorization server, as stored.
///
/// Times are unix seconds. Not `Debug`-derived: the password hash is shown
/// as `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub tenant_id: String,
    /// Unique within the tenant, also ignoring ASCII case; 1 to 64
    /// characters of `A-Z a-z 0-9 . _ @ -` ([`valid_username`]), else
    /// [`StoreError::InvalidRecord`]. Lookups are exact (case-sensitive).
    pub username: String,
    /// The password's Argon2id PHC string, made by the caller; opaque to
    /// the store.
    pub password_hash: String,
    pub created_at: i64,
    /// Set while the account is disabled: it cannot log in.
    pub disabled_at: Option<i64>,
    pub password_changed_at: i64,
    /// Failed logins since the last successful one or password change.
    pub failed_logins: u32,
    /// The account refuses logins until then ([`Store::record_login_failure`]).
    pub locked_until: Option<i64>,
    /// Last successful login ([`Store::record_login_success`]).
    pub last_login_at: Option<i64>,
}

impl fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UserRecord")
            .field("tenant_id", &self.tenant_id)
            .field("username", &self.username)
            .field("password_hash", &format_args!("<redacted>"))
            .field("created_at", &self.created_at)
            .field("disabled_at", &self.disabled_at)
            .field("password_changed_at", &self.password_changed_at)
            .field("failed_logins", &self.failed_logins)
            .field("locked_until", &self.locked_until)
            .field("last_login_at", &self.last_login_at)
            .finish()
    }
}

/// What [`Store::record_login_failure`] left on the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    /// Failed logins since the last success, this one included.
    pub failed_logins: u32,
    /// The account refuses logins until then, if set (it may lie in the
    /// past: an expired lock).
    pub locked_until: Option<i64>,
}

/// An authorization code of the built-in authorization server, as stored:
/// the code itself never is, only its hash.
///
/// Times are unix seconds. Not `Debug`-derived: the hash is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct AuthCodeRecord {
    pub tenant_id: String,
    /// 32-byte hash of the code; any other length is
    /// [`StoreError::InvalidRecord`].
    /// Unique within the tenant.
    pub code_hash: Vec<u8>,
    /// The grant (token family) that redeeming the code creates. Chosen when
    /// the code is issued, so that a replayed code can revoke what the first
    /// redemption produced ([`Store::revoke_grant`]).
    pub grant_id: String,
    pub client_id: String,
    /// The user who authorized (username of a local account).
    pub subject: String,
    /// The `redirect_uri` of the authorization request, exactly as sent.
    pub redirect_uri: String,
    /// The RFC 8707 resource (the token's `aud`).
    pub resource: String,
    /// Granted scopes, space-separated (may be empty).
    pub scope: String,
    /// PKCE S256 `code_challenge` (RFC 7636).
    pub code_challenge: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set once, by the first redemption.
    pub redeemed_at: Option<i64>,
}

impl fmt::Debug for AuthCodeRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthCodeRecord")
            .field("tenant_id", &self.tenant_id)
            .field("code_hash", &format_args!("<redacted>"))
            .field("grant_id", &self.grant_id)
            .field("client_id", &self.client_id)
            .field("subject", &self.subject)
            .field("redirect_uri", &self.redirect_uri)
            .field("resource", &self.resource)
            .field("scope", &self.scope)
            .field("code_challenge", &self.code_challenge)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("redeemed_at", &self.redeemed_at)
            .finish()
    }
}

/// What [`Store::redeem_auth_code`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodeRedemption {
    /// The code was unredeemed; it is now redeemed (at the given time).
    /// Expiry is not checked by the store: the caller does.
    Fresh(AuthCodeRecord),
    /// The code had been redeemed before (by this call's rivals too: of N
    /// concurrent redemptions exactly one sees `Fresh`). Nothing changed.
    Replayed(AuthCodeRecord),
    /// No such code in the tenant.
    Unknown,
}

/// A grant: what one user authorized one client to do on one resource,
/// and the family of refresh tokens (and access tokens, by their `gid`
/// claim) issued under it. Revoking the grant revokes all of them.
///
/// Times are unix seconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRecord {
    pub tenant_id: String,
    /// Unique within the tenant.
    pub grant_id: String,
    pub client_id: String,
    pub subject: String,
    pub resource: String,
    /// Space-separated scopes (may be empty).
    pub scope: String,
    pub created_at: i64,
    /// Set once; never cleared.
    pub revoked_at: Option<i64>,
}

/// A refresh token, as stored: only its hash.
///
/// Times are unix seconds. Not `Debug`-derived: the hash is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshTokenRecord {
    pub tenant_id: String,
    /// 32-byte hash of the token; any other length is [`StoreError::InvalidRecord`].
    pub token_hash: Vec<u8>,
    /// The grant it belongs to (must exist).
    pub grant_id: String,
    pub created_at: i64,
    pub expires_at: i64,
    /// Set when the token was exchanged for its successor.
    pub rotated_at: Option<i64>,
}

impl fmt::Debug for RefreshTokenRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRecord")
            .field("tenant_id", &self.tenant_id)
            .field("token_hash", &format_args!("<redacted>"))
            .field("grant_id", &self.grant_id)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .field("rotated_at", &self.rotated_at)
            .finish()
    }
}

/// One exchange of a refresh token for its successor, as
/// [`Store::rotate_refresh_tokens`] takes it: the arguments of
/// [`Store::rotate_refresh_token`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshExchange {
    pub tenant_id: String,
    /// The client presenting the token.
    pub client_id: String,
    /// 32-byte hash of the presented token.
    pub old_hash: Vec<u8>,
    /// The successor to store.
    pub new: RefreshTokenRecord,
    /// The exchange's time.
    pub at: i64,
}

/// What [`Store::rotate_refresh_token`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshRotation {
    /// The token was current: it is now rotated and its successor stored.
    /// Carries the grant (unrevoked).
    Rotated(GrantRecord),
    /// The token had already been rotated: reuse. The whole grant is now
    /// revoked (at the call's time, unless it already was), its successor
    /// was not stored. Carries the grant as it was before this call.
    Reused(GrantRecord),
    /// Unknown token, expired token, a token of another client, or a
    /// revoked grant: nothing changed.
    Invalid,
}

/// A user's consent: `subject` let `client_id` act on `resource` with
/// `scope`. One per (tenant, subject, client, resource).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentRecord {
    pub tenant_id: String,
    pub subject: String,
    pub client_id: String,
    pub resource: String,
    /// Space-separated scopes consented to (may be empty).
    pub scope: String,
    pub created_at: i64,
}

/// A revocation the gateway must honour for access tokens still within
/// their lifetime: a revoked grant (tokens carry its id as `gid`) or a
/// single token (by `jti`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Revocation {
    Grant { grant_id: String, revoked_at: i64 },
    Token { jti: String, revoked_at: i64 },
}

/// Longest username, in characters (all ASCII, so also bytes).
pub const MAX_USERNAME_LEN: usize = 64;

/// Whether `name` is a valid username: 1 to [`MAX_USERNAME_LEN`] characters
/// of `A-Z a-z 0-9 . _ @ -` (enough for e-mail-like names; nothing that
/// needs escaping in a URL, a log line or a shell).
pub fn valid_username(name: &str) -> bool {
    (1..=MAX_USERNAME_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'-'))
}

/// `Debug`s as `Some(<redacted>)` or `None`.
struct Presence(bool);

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0 { "Some(<redacted>)" } else { "None" })
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The database URL names no backend this crate supports. Carries what
    /// was wrong with it, never the URL itself (it may hold a password).
    #[error(
        "unsupported database URL ({0}): expected sqlite://PATH or postgres://USER@HOST/DATABASE"
    )]
    UnsupportedUrl(String),
    /// The database could not be reached or rejected a statement.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The schema could not be brought up to date, e.g. the database was
    /// migrated by a newer mcpgate or an applied migration was edited.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A row with the same key (tenant and id) already exists, or the
    /// record would break another uniqueness rule (a second `current` or
    /// `next` signing key for the tenant, a username differing only in case).
    #[error("a record with this id already exists")]
    Duplicate,
    /// The caller passed a record the store cannot represent or that
    /// contradicts the call; nothing was written. Carries which rule failed.
    #[error("invalid record: {0}")]
    InvalidRecord(&'static str),
    /// This call's write shared a transaction with other callers' (group
    /// commit), and that transaction failed: nothing of it was written.
    /// Carries the transaction's error, which every caller in it gets.
    #[error("the shared write transaction failed: {0}")]
    Batch(Arc<StoreError>),
    /// The audit trail's own SQLite connection failed (see
    /// [`AuditStore::append_audit`]).
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// Persistent gateway state. Implementations are cheap to share (`Arc`) and
/// safe to use from several processes at once.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// Checks that the database answers.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts a new key; [`StoreError::Duplicate`] if `(tenant_id, id)` is taken.
    async fn insert_api_key(&self, rec: &ApiKeyRecord) -> Result<(), StoreError>;

    /// The key `id` of `tenant`, revoked or expired ones included.
    async fn api_key(&self, tenant: &str, id: &str) -> Result<Option<ApiKeyRecord>, StoreError>;

    /// All keys of `tenant`, ordered by `created_at`, then `id` (bytewise).
    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;

    /// Marks the key revoked at `at`. Returns `true` if the key existed and
    /// was not revoked yet; an earlier revocation time is never overwritten.
    async fn revoke_api_key(&self, tenant: &str, id: &str, at: i64) -> Result<bool, StoreError>;

    /// Inserts a signing key; [`StoreError::Duplicate`] if `(tenant_id, kid)`
    /// is taken, or if the key is `Current` (or `Next`) and the tenant already
    /// has a `Current` (or `Next`) key.
    ///
    /// This is how the first keys are created: a replica that finds no keys
    /// inserts a current and a next key. When two replicas do that at once,
    /// the database admits one current key and one next key per tenant, so
    /// the slower replica gets `Duplicate` on its first insert; it must then
    /// reread [`signing_keys`](Store::signing_keys) and use the winner's keys
    /// rather than its own.
    async fn insert_signing_key(&self, rec: &SigningKeyRecord) -> Result<(), StoreError>;

    /// All signing keys of `tenant` (any state), ordered by `created_at`,
    /// then `kid` (bytewise).
    async fn signing_keys(&self, tenant: &str) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Rotates the tenant's keys in one transaction: the `current` key (if
    /// any) becomes `retired`, with `retired_at = now` and `publish_until =
    /// retire_publish_until`; the key `next_kid` becomes `current`, with
    /// `activated_at = now`; and `new_next` is inserted (it must be in state
    /// `next` and of `tenant`, else [`StoreError::InvalidRecord`]).
    ///
    /// Returns `Ok(false)`, changing nothing, if `next_kid` is not (or no
    /// longer) the tenant's `next` key, e.g. because another replica rotated
    /// first: of concurrent rotations with the same `next_kid`, across
    /// processes, exactly one returns `true`. [`StoreError::Duplicate`] if
    /// `new_next.kid` is taken; nothing changes then either.
    async fn rotate_signing_keys(
        &self,
        tenant: &str,
        next_kid: &str,
        new_next: &SigningKeyRecord,
        now: i64,
        retire_publish_until: i64,
    ) -> Result<bool, StoreError>;

    /// Deletes the tenant's `retired` keys whose `publish_until` is before
    /// `now`; returns how many. Keys in other states, and retired keys
    /// without `publish_until`, are kept.
    async fn delete_expired_signing_keys(&self, tenant: &str, now: i64) -> Result<u64, StoreError>;

    /// Inserts a client; [`StoreError::Duplicate`] if `(tenant_id, client_id)`
    /// is taken, [`StoreError::InvalidRecord`] if a `redirect_uris` or
    /// `grant_types` element is empty or contains a newline.
    async fn insert_client(&self, rec: &ClientRecord) -> Result<(), StoreError>;

    /// The client `client_id` of `tenant`.
    async fn client(
        &self,
        tenant: &str,
        client_id: &str,
    ) -> Result<Option<ClientRecord>, StoreError>;

    /// All clients of `tenant`, ordered by `created_at`, then `client_id`
    /// (bytewise).
    async fn list_clients(&self, tenant: &str) -> Result<Vec<ClientRecord>, StoreError>;

    /// Deletes the client; `true` if it existed.
    async fn delete_client(&self, tenant: &str, client_id: &str) -> Result<bool, StoreError>;

    /// Sets the client's secret hash to `new_hash`. The replaced hash becomes
    /// `previous_secret_hash`, valid until `old_valid_until` (grace period);
    /// a hash that was already previous is dropped. A client that had no
    /// secret gets none as previous. Returns `false` if there is no such
    /// client.
    async fn rotate_client_secret(
        &self,
        tenant: &str,
        client_id: &str,
        new_hash: &[u8],
        old_valid_until: i64,
    ) -> Result<bool, StoreError>;

    /// Records that the client was used at `at`. `last_used_at` never moves
    /// backwards (replicas' clocks differ slightly); an unknown client is
    /// ignored.
    async fn touch_client(&self, tenant: &str, client_id: &str, at: i64) -> Result<(), StoreError>;

    /// Deletes the tenant's dynamically registered clients (origin `dcr`)
    /// created before `created_before` and never used (`last_used_at` unset);
    /// returns how many.
    async fn delete_unused_registrations(
        &self,
        tenant: &str,
        created_before: i64,
    ) -> Result<u64, StoreError>;

    /// Inserts a user; [`StoreError::Duplicate`] if the tenant already has
    /// this username (in any ASCII case), [`StoreError::InvalidRecord`] if
    /// it is not a [`valid_username`].
    async fn insert_user(&self, rec: &UserRecord) -> Result<(), StoreError>;

    /// The user `username` of `tenant` (exact match), disabled or not.
    async fn user(&self, tenant: &str, username: &str) -> Result<Option<UserRecord>, StoreError>;

    /// All users of `tenant`, ordered by username (bytewise).
    async fn list_users(&self, tenant: &str) -> Result<Vec<UserRecord>, StoreError>;

    /// Disables the user (`Some(at)`) or enables it again (`None`). An
    /// earlier disable time is kept. Returns `false` if there is no such
    /// user.
    async fn set_user_disabled(
        &self,
        tenant: &str,
        username: &str,
        disabled_at: Option<i64>,
    ) -> Result<bool, StoreError>;

    /// Replaces the password hash, sets `password_changed_at = at` and
    /// clears the failure count and any lock. Returns `false` if there is
    /// no such user.
    async fn set_user_password(
        &self,
        tenant: &str,
        username: &str,
        password_hash: &str,
        at: i64,
    ) -> Result<bool, StoreError>;

    /// Counts a failed login at `at`, atomically across processes: of N
    /// concurrent calls, the count goes up by exactly N. Once the count
    /// reaches `lock_after` (this failure or any later one), the account is
    /// locked until `at + lock_for_secs`; a lock is only ever extended.
    /// Returns the new state, or `None` if there is no such user.
    /// [`StoreError::InvalidRecord`] if `lock_after` is 0 or
    /// `lock_for_secs` negative.
    async fn record_login_failure(
        &self,
        tenant: &str,
        username: &str,
        at: i64,
        lock_after: u32,
        lock_for_secs: i64,
    ) -> Result<Option<LoginThrottle>, StoreError>;

    /// Records a successful login at `at` (`last_login_at`) and clears the
    /// failure count and any lock. An unknown user is ignored.
    async fn record_login_success(
        &self,
        tenant: &str,
        username: &str,
        at: i64,
    ) -> Result<(), StoreError>;

    /// Stores a new authorization code; [`StoreError::Duplicate`] if the
    /// hash is taken.
    async fn insert_auth_code(&self, rec: &AuthCodeRecord) -> Result<(), StoreError>;

    /// Redeems the code with hash `code_hash` at `at`, atomically across
    /// processes: of N concurrent calls for one code exactly one returns
    /// [`CodeRedemption::Fresh`], the others [`CodeRedemption::Replayed`].
    async fn redeem_auth_code(
        &self,
        tenant: &str,
        code_hash: &[u8],
        at: i64,
    ) -> Result<CodeRedemption, StoreError>;

    /// Deletes codes that expired before `before`; returns how many.
    async fn delete_expired_auth_codes(&self, tenant: &str, before: i64)
    -> Result<u64, StoreError>;

    /// Creates a grant and, in the same transaction, its first refresh
    /// token (if any). [`StoreError::Duplicate`] if the grant id or token
    /// hash is taken; [`StoreError::InvalidRecord`] if the token names
    /// another grant or tenant. Nothing is written on error.
    async fn insert_grant(
        &self,
        grant: &GrantRecord,
        refresh: Option<&RefreshTokenRecord>,
    ) -> Result<(), StoreError>;

    /// The grant `grant_id` of `tenant`, revoked or not.
    async fn grant(&self, tenant: &str, grant_id: &str) -> Result<Option<GrantRecord>, StoreError>;

    /// Exchanges the refresh token `old_hash` for `new` in one transaction,
    /// atomically across processes. The old token must exist in `tenant`,
    /// be unexpired (`expires_at > at`), belong to a grant of `client_id`
    /// that is not revoked and whose subject is a user of the tenant whose
    /// account is enabled, and not be rotated yet; then it is marked
    /// rotated at `at` and `new` (same grant, same tenant, else
    /// [`StoreError::InvalidRecord`]) is stored: [`RefreshRotation::Rotated`].
    /// If it exists, belongs to `client_id` and an enabled user, and was
    /// already rotated, the grant is revoked: [`RefreshRotation::Reused`].
    /// Otherwise (a disabled account's tokens included, rotated or not)
    /// [`RefreshRotation::Invalid`]. The account is checked in the same
    /// transaction, so a refresh cannot slip past a disable that committed
    /// before it. Of N concurrent calls with one current
    /// token, exactly one returns `Rotated` and the others `Reused` (so the
    /// grant ends revoked: reuse detection holds under races).
    async fn rotate_refresh_token(
        &self,
        tenant: &str,
        client_id: &str,
        old_hash: &[u8],
        new: &RefreshTokenRecord,
        at: i64,
    ) -> Result<RefreshRotation, StoreError>;

    /// The exchanges of `batch`, in order, each as
    /// [`rotate_refresh_token`](Store::rotate_refresh_token) would do it
    /// after the ones before it: a token presented twice in one batch is
    /// rotated by the first exchange and reused by the second (which
    /// revokes the grant). One result per exchange; an exchange refused
    /// with [`StoreError::InvalidRecord`] or [`StoreError::Duplicate`]
    /// writes nothing and leaves the others alone. On SQLite the batch is
    /// one transaction (one commit, one fsync), and `Err` means none of it
    /// was written; on PostgreSQL, where transactions commit side by side,
    /// each exchange is a transaction of its own and an error is that
    /// exchange's result.
    ///
    /// SQLite's [`rotate_refresh_token`](Store::rotate_refresh_token)
    /// gathers concurrent calls into such batches itself.
    async fn rotate_refresh_tokens(
        &self,
        batch: &[RefreshExchange],
    ) -> Result<Vec<Result<RefreshRotation, StoreError>>, StoreError>;

    /// The refresh token `token_hash` of `tenant` (rotated or not, expired
    /// or not), if it exists.
    async fn refresh_token(
        &self,
        tenant: &str,
        token_hash: &[u8],
    ) -> Result<Option<RefreshTokenRecord>, StoreError>;

    /// The grant of the refresh token `token_hash` (rotated or not, expired
    /// or not), if the token exists in `tenant`.
    async fn grant_of_refresh_token(
        &self,
        tenant: &str,
        token_hash: &[u8],
    ) -> Result<Option<GrantRecord>, StoreError>;

    /// Revokes the grant at `at` (an earlier revocation time is kept);
    /// `true` if it existed and was not revoked yet.
    async fn revoke_grant(&self, tenant: &str, grant_id: &str, at: i64)
    -> Result<bool, StoreError>;

    /// Revokes every unrevoked grant of `subject` to `client_id` (on every
    /// resource, or on `resource` only); returns how many.
    async fn revoke_grants_of(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: Option<&str>,
        at: i64,
    ) -> Result<u64, StoreError>;

    /// Records the revocation of one access token by `jti` until
    /// `expires_at` (its `exp`); recording it twice is not an error.
    async fn revoke_access_token(
        &self,
        tenant: &str,
        jti: &str,
        revoked_at: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// Revocations (of grants and of single access tokens) made at or after
    /// `since`, oldest first. The gateway polls this to honour revocations
    /// made by other processes.
    async fn revocations_since(
        &self,
        tenant: &str,
        since: i64,
    ) -> Result<Vec<Revocation>, StoreError>;

    /// Deletes rotated or expired refresh tokens whose `expires_at` is
    /// before `before`, single-token revocations that expired before it,
    /// and grants revoked before it together with their tokens; returns how
    /// many rows went.
    async fn delete_expired_tokens(&self, tenant: &str, before: i64) -> Result<u64, StoreError>;

    /// Inserts or replaces the consent of (subject, client, resource).
    async fn upsert_consent(&self, rec: &ConsentRecord) -> Result<(), StoreError>;

    /// The consent of (subject, client, resource), if given.
    async fn consent(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: &str,
    ) -> Result<Option<ConsentRecord>, StoreError>;

    /// Consents of `tenant` (of one subject if given), ordered by subject,
    /// client_id, resource (bytewise).
    async fn list_consents(
        &self,
        tenant: &str,
        subject: Option<&str>,
    ) -> Result<Vec<ConsentRecord>, StoreError>;

    /// Deletes the consents of `subject` to `client_id` (for `resource`
    /// only, if given); returns how many.
    async fn delete_consents(
        &self,
        tenant: &str,
        subject: &str,
        client_id: &str,
        resource: Option<&str>,
    ) -> Result<u64, StoreError>;

    /// Records a client assertion's `jti` (RFC 7523 §3 replay check) until
    /// `expires_at`. Returns `false` if the same client already used this
    /// `jti` and it has not expired at `now` (a replay); atomically across
    /// processes: of N concurrent calls exactly one returns `true`. Expired
    /// entries may be dropped by this call.
    async fn record_assertion_jti(
        &self,
        tenant: &str,
        client_id: &str,
        jti: &str,
        expires_at: i64,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// The backend's name: `"sqlite"` or `"postgres"`.
    fn backend(&self) -> &'static str;
}

/// Opens the database at `url`, applying pending migrations.
///
/// See the [crate documentation](crate) for the accepted URLs. Fails at once
/// if the database is unreachable; a SQLite database that another process is
/// creating or migrating is waited for (up to the 5 s busy timeout). Errors
/// never contain the URL's password.
pub async fn open(url: &str) -> Result<Arc<dyn Store>, StoreError> {
    Ok(Arc::new(open_sql(url).await?))
}

/// Opens the database at `url` for the audit trail ([`AuditStore`]),
/// applying pending migrations, like [`open`]. The audit trail may live in
/// the gateway's database or in one of its own.
pub async fn open_audit(url: &str) -> Result<Arc<dyn AuditStore>, StoreError> {
    Ok(Arc::new(open_sql(url).await?))
}

/// Opens the database at `url` once, as both a [`Store`] and an
/// [`AuditStore`] sharing one connection pool.
pub async fn open_with_audit(
    url: &str,
) -> Result<(Arc<dyn Store>, Arc<dyn AuditStore>), StoreError> {
    let store = Arc::new(open_sql(url).await?);
    Ok((store.clone(), store))
}

async fn open_sql(url: &str) -> Result<sql::SqlStore, StoreError> {
    let store = match scheme(url) {
        Some("sqlite") => sql::SqlStore::open_sqlite(url).await?,
        Some("postgres" | "postgresql") => sql::SqlStore::open_postgres(url).await?,
        // Only the scheme is echoed: it cannot contain a password.
        Some(other) => return Err(StoreError::UnsupportedUrl(format!("scheme `{other}`"))),
        None => return Err(StoreError::UnsupportedUrl("no scheme".to_owned())),
    };
    tracing::debug!(
        backend = store.backend(),
        "store opened, migrations applied"
    );
    Ok(store)
}

/// The URL's scheme (RFC 3986 §3.1), if it has one.
fn scheme(url: &str) -> Option<&str> {
    let (scheme, _) = url.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    (first_ok && rest_ok).then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_is_the_part_before_the_first_colon() {
        assert_eq!(scheme("sqlite://a.db"), Some("sqlite"));
        assert_eq!(scheme("sqlite:a.db"), Some("sqlite"));
        assert_eq!(scheme("postgresql://u:p@h/db"), Some("postgresql"));
        assert_eq!(scheme("gateway.db"), None);
        assert_eq!(scheme("://x"), None);
        assert_eq!(scheme("/tmp/a:b"), None);
    }
}
