-- mcpgate schema, version 2 (PostgreSQL): state of the built-in authorization server.
-- Applied once per database (or per schema, with `options[search_path]=...`),
-- inside one transaction and under sqlx's migration advisory lock, by
-- `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0003_*.sql instead.
--
-- Kept in step with sqlite/0002_authorization_server.sql. Times are unix seconds.
-- Identifiers use the "C" collation so they sort bytewise, as in SQLite.

-- Token-signing keys. `private_key_enc` is the private key as encrypted by
-- the caller; the plaintext key never reaches the database.
-- Life cycle: next -> current -> retired -> deleted once `publish_until` has
-- passed (it stays in the JWKS until then, so tokens it signed still verify).
CREATE TABLE signing_keys (
    tenant_id       TEXT COLLATE "C" NOT NULL,
    kid             TEXT COLLATE "C" NOT NULL,
    alg             TEXT   NOT NULL,
    state           TEXT   NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key_enc BYTEA  NOT NULL,
    public_jwk      TEXT   NOT NULL,
    created_at      BIGINT NOT NULL,
    activated_at    BIGINT,
    retired_at      BIGINT,
    publish_until   BIGINT,
    PRIMARY KEY (tenant_id, kid)
);

-- At most one current and one next key per tenant. Besides guarding the
-- rotation, this makes the loser of two replicas bootstrapping the first keys
-- at once fail (unique violation) instead of signing with a second key.
-- A tenant has a handful of keys: the primary key serves every query.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (tenant_id) WHERE state = 'current';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (tenant_id) WHERE state = 'next';

-- OAuth clients, registered by the admin CLI ('cli'), dynamic client
-- registration ('dcr', RFC 7591) or fetched client ID metadata documents
-- ('cimd'). Only 32-byte hashes of client secrets are stored, never a secret.
-- `redirect_uris` and `grant_types` are newline-separated lists (the store
-- rejects elements that are empty or contain a newline, so this is unambiguous).
-- `origin` and `token_endpoint_auth_method` are not CHECKed, as in SQLite,
-- where a new value (e.g. tls_client_auth) would need a table rebuild.
-- A previous secret always comes with the deadline of its grace period.
CREATE TABLE oauth_clients (
    tenant_id                   TEXT COLLATE "C" NOT NULL,
    client_id                   TEXT COLLATE "C" NOT NULL,
    name                        TEXT   NOT NULL,
    token_endpoint_auth_method  TEXT   NOT NULL,
    redirect_uris               TEXT   NOT NULL,
    grant_types                 TEXT   NOT NULL,
    scope                       TEXT,
    jwks                        TEXT,
    secret_hash                 BYTEA CHECK (secret_hash IS NULL OR octet_length(secret_hash) = 32),
    previous_secret_hash        BYTEA CHECK (previous_secret_hash IS NULL OR octet_length(previous_secret_hash) = 32),
    previous_secret_valid_until BIGINT,
    origin                      TEXT   NOT NULL,
    created_at                  BIGINT NOT NULL,
    last_used_at                BIGINT,
    PRIMARY KEY (tenant_id, client_id),
    CHECK ((previous_secret_hash IS NULL) = (previous_secret_valid_until IS NULL))
);

-- Serves `list_clients` (tenant, ordered by created_at then client_id) and
-- `delete_unused_registrations` (tenant, created_at below a cutoff).
CREATE INDEX oauth_clients_tenant_created ON oauth_clients (tenant_id, created_at, client_id);
