-- mcpgate schema, version 4 (PostgreSQL): authorization codes, grants,
-- refresh tokens, revocations, consents and client assertion ids of the
-- built-in authorization server.
-- Applied once per database (or per schema, with `options[search_path]=...`),
-- inside one transaction and under sqlx's migration advisory lock, by
-- `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0005_*.sql instead.
--
-- Kept in step with sqlite/0004_grants.sql. Times are unix seconds.
-- Identifiers use the "C" collation so they sort bytewise, as in SQLite.
-- Codes and refresh tokens are stored as 32-byte hashes, never in clear.
-- Scopes are space-separated lists (possibly empty).

-- Authorization codes. `grant_id` names the grant that redeeming the code
-- creates, so a replayed code can revoke it. `redeemed_at` is set once, by
-- a conditional UPDATE: of concurrent redemptions one wins.
CREATE TABLE auth_codes (
    tenant_id      TEXT COLLATE "C" NOT NULL,
    code_hash      BYTEA  NOT NULL CHECK (octet_length(code_hash) = 32),
    grant_id       TEXT COLLATE "C" NOT NULL,
    client_id      TEXT COLLATE "C" NOT NULL,
    subject        TEXT COLLATE "C" NOT NULL,
    redirect_uri   TEXT   NOT NULL,
    resource       TEXT COLLATE "C" NOT NULL,
    scope          TEXT   NOT NULL,
    code_challenge TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    redeemed_at    BIGINT,
    PRIMARY KEY (tenant_id, code_hash)
);

-- Serves `delete_expired_auth_codes` (tenant, expires_at below a cutoff).
CREATE INDEX auth_codes_tenant_expires ON auth_codes (tenant_id, expires_at);

-- Grants: what a subject let a client do on a resource, and the family of
-- tokens issued under it. `revoked_at` is set once and never cleared.
CREATE TABLE grants (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    grant_id   TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    resource   TEXT COLLATE "C" NOT NULL,
    scope      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    revoked_at BIGINT,
    PRIMARY KEY (tenant_id, grant_id)
);

-- Serves `revoke_grants_of` (tenant, subject, client, optionally resource).
CREATE INDEX grants_tenant_subject_client ON grants (tenant_id, subject, client_id, resource);
-- Serves `revocations_since` and `delete_expired_tokens` (tenant, revoked_at
-- at or after / before a time). Only revoked grants are indexed: the query's
-- comparison on revoked_at (a strict operator) implies the index's condition.
CREATE INDEX grants_tenant_revoked ON grants (tenant_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- Refresh tokens, each of one grant; deleting the grant deletes them.
-- `rotated_at` is set once, when the token is exchanged for its successor;
-- a rotated token is kept until it expires, so that its reuse is detected.
CREATE TABLE refresh_tokens (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    token_hash BYTEA  NOT NULL CHECK (octet_length(token_hash) = 32),
    grant_id   TEXT COLLATE "C" NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, grant_id) REFERENCES grants (tenant_id, grant_id) ON DELETE CASCADE
);

-- Serves the foreign key (deleting a grant finds its tokens) and the
-- deletion of a revoked grant's tokens in `delete_expired_tokens`.
CREATE INDEX refresh_tokens_tenant_grant ON refresh_tokens (tenant_id, grant_id);
-- Serves `delete_expired_tokens` (tenant, expires_at below a cutoff).
CREATE INDEX refresh_tokens_tenant_expires ON refresh_tokens (tenant_id, expires_at);

-- Single access tokens revoked by `jti`, kept until the token's own expiry
-- (`expires_at`, its `exp`), after which it is rejected anyway.
CREATE TABLE revoked_access_tokens (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    jti        TEXT COLLATE "C" NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, jti)
);

-- Serve `revocations_since` and `delete_expired_tokens`.
CREATE INDEX revoked_access_tokens_tenant_revoked ON revoked_access_tokens (tenant_id, revoked_at);
CREATE INDEX revoked_access_tokens_tenant_expires ON revoked_access_tokens (tenant_id, expires_at);

-- Consents, one per (tenant, subject, client, resource); a new consent
-- replaces the old. The primary key serves every query (lookups, listing by
-- subject then client then resource, deletion by subject and client).
CREATE TABLE consents (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    subject    TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    resource   TEXT COLLATE "C" NOT NULL,
    scope      TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject, client_id, resource)
);

-- `jti`s of client assertions (RFC 7523 §3), per client, kept until the
-- assertion expires; an expired row may be reused or deleted.
CREATE TABLE client_assertion_jtis (
    tenant_id  TEXT COLLATE "C" NOT NULL,
    client_id  TEXT COLLATE "C" NOT NULL,
    jti        TEXT COLLATE "C" NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, client_id, jti)
);

-- Serves the deletion of expired rows by `record_assertion_jti`.
CREATE INDEX client_assertion_jtis_tenant_expires ON client_assertion_jtis (tenant_id, expires_at);
