-- mcpgate schema, version 1 (SQLite).
-- Applied once per database, inside one transaction, by `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0002_*.sql instead.

-- API keys. Only the 32-byte hash of the secret is stored, never the secret.
-- Times are unix seconds. `scopes` is the space-separated scope list.
CREATE TABLE api_keys (
    tenant_id   TEXT    NOT NULL,
    id          TEXT    NOT NULL,
    name        TEXT    NOT NULL,
    route       TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    revoked_at  INTEGER,
    PRIMARY KEY (tenant_id, id)
) STRICT;

-- Serves `list_api_keys` (tenant, ordered by created_at then id).
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);
