-- mcpgate schema, version 3 (PostgreSQL): local user accounts of the built-in
-- authorization server.
-- Applied once per database (or per schema, with `options[search_path]=...`),
-- inside one transaction and under sqlx's migration advisory lock, by
-- `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0004_*.sql instead.
--
-- Kept in step with sqlite/0003_users.sql. Times are unix seconds.
-- Identifiers use the "C" collation so they sort bytewise, as in SQLite.

-- `password_hash` is an Argon2id PHC string (salt and parameters included),
-- made by `mcpgate-crypto`; the password itself never reaches the database.
-- The store checks usernames (1-64 characters of A-Z a-z 0-9 . _ @ -).
-- `failed_logins` counts failures since the last success or password change;
-- `locked_until` is set when it reaches the configured threshold.
CREATE TABLE users (
    tenant_id           TEXT COLLATE "C" NOT NULL,
    username            TEXT COLLATE "C" NOT NULL,
    password_hash       TEXT   NOT NULL,
    created_at          BIGINT NOT NULL,
    disabled_at         BIGINT,
    password_changed_at BIGINT NOT NULL,
    failed_logins       BIGINT NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until        BIGINT,
    last_login_at       BIGINT,
    PRIMARY KEY (tenant_id, username)
);

-- Usernames differing only in case ("alice", "Alice") would look like one
-- person in logs and listings: at most one of them per tenant. Lookups stay
-- exact; the primary key serves them and the listing. Usernames are ASCII,
-- so lower() is the same in every locale and in SQLite.
CREATE UNIQUE INDEX users_tenant_username_nocase ON users (tenant_id, lower(username));
