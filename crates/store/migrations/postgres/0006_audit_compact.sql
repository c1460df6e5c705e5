-- mcpgate schema, version 6 (PostgreSQL): the audit trail without its time index.
-- Applied once per database, inside one transaction, by `mcpgate_store::open`.
-- Never edit an applied migration: its checksum is recorded; add 0007_*.sql instead.
--
-- Kept in step with sqlite/0006_audit_compact.sql. Every audited request
-- inserts a record, and each index is one more B-tree to update (and
-- WAL to write) per record. The time index served only `export --since`,
-- which now finds its first record by scanning the chain in `seq` order:
-- an offline command's cost, not every request's.

DROP INDEX audit_records_chain_time;
