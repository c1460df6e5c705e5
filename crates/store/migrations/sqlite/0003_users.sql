-- mcpgate schema, version 3 (SQLite): local user accounts of the built-in
-- authorization server.
-- Applied once per database, inside one transaction, by `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0004_*.sql instead.
--
-- Kept in step with postgres/0003_users.sql. Times are unix seconds.

-- `password_hash` is an Argon2id PHC string (salt and parameters included),
-- made by `mcpgate-crypto`; the password itself never reaches the database.
-- The store checks usernames (1-64 characters of A-Z a-z 0-9 . _ @ -).
-- `failed_logins` counts failures since the last success or password change;
-- `locked_until` is set when it reaches the configured threshold.
CREATE TABLE users (
    tenant_id           TEXT    NOT NULL,
    username            TEXT    NOT NULL,
    password_hash       TEXT    NOT NULL,
    created_at          INTEGER NOT NULL,
    disabled_at         INTEGER,
    password_changed_at INTEGER NOT NULL,
    failed_logins       INTEGER NOT NULL DEFAULT 0 CHECK (failed_logins >= 0),
    locked_until        INTEGER,
    last_login_at       INTEGER,
    PRIMARY KEY (tenant_id, username)
) STRICT;

-- Usernames differing only in case ("alice", "Alice") would look like one
-- person in logs and listings: at most one of them per tenant. Lookups stay
-- exact; the primary key serves them and the listing.
CREATE UNIQUE INDEX users_tenant_username_nocase ON users (tenant_id, lower(username));
