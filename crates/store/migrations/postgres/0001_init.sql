-- mcpgate schema, version 1 (PostgreSQL).
-- Applied once per database (or per schema, with `options[search_path]=...`),
-- inside one transaction and under sqlx's migration advisory lock, by
-- `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0002_*.sql instead.

-- API keys. Only the 32-byte hash of the secret is stored, never the secret.
-- Times are unix seconds. `scopes` is the space-separated scope list.
-- Identifiers use the "C" collation so they sort bytewise, as in SQLite,
-- whatever the database's locale.
CREATE TABLE api_keys (
    tenant_id   TEXT COLLATE "C" NOT NULL,
    id          TEXT COLLATE "C" NOT NULL,
    name        TEXT   NOT NULL,
    route       TEXT   NOT NULL,
    scopes      TEXT   NOT NULL,
    secret_hash BYTEA  NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT,
    revoked_at  BIGINT,
    PRIMARY KEY (tenant_id, id)
);

-- Serves `list_api_keys` (tenant, ordered by created_at then id).
CREATE INDEX api_keys_tenant_created ON api_keys (tenant_id, created_at, id);
