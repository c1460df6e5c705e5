-- mcpgate schema, version 2 (SQLite): state of the built-in authorization server.
-- Applied once per database, inside one transaction, by `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0003_*.sql instead.
--
-- Kept in step with postgres/0002_authorization_server.sql. Times are unix seconds.

-- Token-signing keys. `private_key_enc` is the private key as encrypted by
-- the caller; the plaintext key never reaches the database.
-- Life cycle: next -> current -> retired -> deleted once `publish_until` has
-- passed (it stays in the JWKS until then, so tokens it signed still verify).
CREATE TABLE signing_keys (
    tenant_id       TEXT    NOT NULL,
    kid             TEXT    NOT NULL,
    alg             TEXT    NOT NULL,
    state           TEXT    NOT NULL CHECK (state IN ('next', 'current', 'retired')),
    private_key_enc BLOB    NOT NULL,
    public_jwk      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    activated_at    INTEGER,
    retired_at      INTEGER,
    publish_until   INTEGER,
    PRIMARY KEY (tenant_id, kid)
) STRICT;

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
-- `origin` and `token_endpoint_auth_method` are not CHECKed: a new value
-- (e.g. tls_client_auth) would need SQLite to rebuild the table.
-- A previous secret always comes with the deadline of its grace period.
CREATE TABLE oauth_clients (
    tenant_id                   TEXT    NOT NULL,
    client_id                   TEXT    NOT NULL,
    name                        TEXT    NOT NULL,
    token_endpoint_auth_method  TEXT    NOT NULL,
    redirect_uris               TEXT    NOT NULL,
    grant_types                 TEXT    NOT NULL,
    scope                       TEXT,
    jwks                        TEXT,
    secret_hash                 BLOB CHECK (secret_hash IS NULL OR length(secret_hash) = 32),
    previous_secret_hash        BLOB CHECK (previous_secret_hash IS NULL OR length(previous_secret_hash) = 32),
    previous_secret_valid_until INTEGER,
    origin                      TEXT    NOT NULL,
    created_at                  INTEGER NOT NULL,
    last_used_at                INTEGER,
    PRIMARY KEY (tenant_id, client_id),
    CHECK ((previous_secret_hash IS NULL) = (previous_secret_valid_until IS NULL))
) STRICT;

-- Serves `list_clients` (tenant, ordered by created_at then client_id) and
-- `delete_unused_registrations` (tenant, created_at below a cutoff).
CREATE INDEX oauth_clients_tenant_created ON oauth_clients (tenant_id, created_at, client_id);
