-- mcpgate schema, version 6 (SQLite): the audit trail in fewer B-trees.
-- Applied once per database, inside one transaction, by `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0007_*.sql instead.
--
-- Every audited request appends a row and moves its chain's head, and each
-- B-tree a transaction touches is one more page written to the WAL and
-- fsynced at its commit. Version 5 kept a record in three B-trees (the
-- rowid table, the primary key's index, the time index) and a head in two.
-- Here both tables are WITHOUT ROWID (one B-tree each, ordered by the
-- primary key), and the time index is gone: `export --since` finds its
-- first record by scanning the chain in `seq` order, which is an offline
-- command's cost, not every request's. Columns and meaning are unchanged.
-- Kept in step with postgres/0006_audit_compact.sql, which drops the time
-- index (a PostgreSQL table is a heap plus its indexes either way).

CREATE TABLE audit_records_v6 (
    chain_id    TEXT    NOT NULL,
    seq         INTEGER NOT NULL CHECK (seq > 0),
    time_ms     INTEGER NOT NULL,
    kind        TEXT    NOT NULL,
    route       TEXT,
    subject     TEXT,
    client_id   TEXT,
    method      TEXT,
    name        TEXT,
    outcome     TEXT    NOT NULL,
    reason      TEXT,
    policy_ids  TEXT    NOT NULL,
    args_digest TEXT,
    latency_us  INTEGER,
    peer        TEXT,
    details     TEXT,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL,
    tag         TEXT    NOT NULL,
    PRIMARY KEY (chain_id, seq)
) STRICT, WITHOUT ROWID;

INSERT INTO audit_records_v6 (chain_id, seq, time_ms, kind, route, subject, client_id,
    method, name, outcome, reason, policy_ids, args_digest, latency_us, peer, details,
    prev_hash, hash, tag)
SELECT chain_id, seq, time_ms, kind, route, subject, client_id,
    method, name, outcome, reason, policy_ids, args_digest, latency_us, peer, details,
    prev_hash, hash, tag
FROM audit_records;

DROP TABLE audit_records;
ALTER TABLE audit_records_v6 RENAME TO audit_records;

CREATE TABLE audit_heads_v6 (
    chain_id TEXT    NOT NULL PRIMARY KEY,
    seq      INTEGER NOT NULL CHECK (seq >= 0),
    hash     BLOB    NOT NULL,
    tag      TEXT    NOT NULL
) STRICT, WITHOUT ROWID;

INSERT INTO audit_heads_v6 (chain_id, seq, hash, tag)
SELECT chain_id, seq, hash, tag FROM audit_heads;

DROP TABLE audit_heads;
ALTER TABLE audit_heads_v6 RENAME TO audit_heads;
