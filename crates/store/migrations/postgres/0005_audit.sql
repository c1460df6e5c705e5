-- mcpgate schema, version 5 (PostgreSQL): the tamper-evident audit trail.
-- Applied once per database (or per schema, with `options[search_path]=...`),
-- inside one transaction and under sqlx's migration advisory lock, by
-- `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0006_*.sql instead.
--
-- Kept in step with sqlite/0005_audit.sql. Times are unix milliseconds.
-- Identifiers use the "C" collation so they sort bytewise, as in SQLite.
-- Free text is TEXT, never JSONB: the hashes cover the exact bytes stored,
-- and JSONB would normalise them.
--
-- The audit trail belongs to the deployment, not to a tenant: gateway-wide
-- events (configuration and policy reloads, key rotation) have none. Rows
-- are partitioned by `chain_id` instead, one hash chain each (a deployment
-- normally writes one chain, `main`). The hashes and tags are computed by
-- `mcpgate-audit`, which documents their encoding; this schema only keeps
-- them. Nothing here stops an UPDATE or DELETE: the chain makes one
-- detectable, it does not prevent it.

-- One row per audited event, `seq` counting from 1 without gaps within a
-- chain. `hash` covers every other column of the row (and the chain id,
-- `seq` and `prev_hash`, the previous row's `hash`); `tag` is a MAC of
-- `hash` under a key derived from the master key. `policy_ids` is a JSON
-- array and `details` a JSON object, both as text, hashed as stored.
-- The primary key serves appends, verification and export in `seq` order.
CREATE TABLE audit_records (
    chain_id    TEXT COLLATE "C" NOT NULL,
    seq         BIGINT NOT NULL CHECK (seq > 0),
    time_ms     BIGINT NOT NULL,
    kind        TEXT COLLATE "C" NOT NULL,
    route       TEXT COLLATE "C",
    subject     TEXT COLLATE "C",
    client_id   TEXT COLLATE "C",
    method      TEXT COLLATE "C",
    name        TEXT COLLATE "C",
    outcome     TEXT COLLATE "C" NOT NULL,
    reason      TEXT,
    policy_ids  TEXT   NOT NULL,
    args_digest TEXT,
    latency_us  BIGINT,
    peer        TEXT,
    details     TEXT,
    prev_hash   BYTEA  NOT NULL,
    hash        BYTEA  NOT NULL,
    tag         TEXT   NOT NULL,
    PRIMARY KEY (chain_id, seq)
);

-- Serves `audit_first_seq_since` (export from a time).
CREATE INDEX audit_records_chain_time ON audit_records (chain_id, time_ms);

-- The newest record of each chain, with a MAC over it, updated in the
-- transaction that appends. Appends lock this row (SELECT ... FOR UPDATE),
-- which is what keeps one chain linear when several replicas write it.
-- `seq` 0 with 32 zero bytes is the head of a chain without records.
CREATE TABLE audit_heads (
    chain_id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    seq      BIGINT NOT NULL CHECK (seq >= 0),
    hash     BYTEA  NOT NULL,
    tag      TEXT   NOT NULL
);

-- Signed checkpoints: the hash of record `seq` at `time_ms`, with a MAC,
-- written every N records or T seconds and at clean shutdown.
CREATE TABLE audit_checkpoints (
    chain_id TEXT COLLATE "C" NOT NULL,
    seq      BIGINT NOT NULL CHECK (seq >= 0),
    hash     BYTEA  NOT NULL,
    time_ms  BIGINT NOT NULL,
    tag      TEXT   NOT NULL,
    PRIMARY KEY (chain_id, seq)
);
