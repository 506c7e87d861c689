-- Two rules of INTERFACE §10, both decided in Rust (src/store/model.rs).
--
-- Unsigned delivery ids are not trusted (`Dedupe`): the dedupe key becomes
-- (source, delivery_id, key_body_sha256), where key_body_sha256 is the body's SHA-256 for an
-- unsigned id and empty for a signed one, whose id alone is the key. Deliveries recorded
-- before this migration were keyed by their id alone, and keep that key. SQLite cannot drop
-- a table constraint, so the table is built anew with the same rows and ids.
--
-- Mass offboarding needs a person (`require_approval_above`): the delivery row keeps why all
-- of its jobs wait for approval, for the console.
CREATE TABLE deliveries_new (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    source          TEXT    NOT NULL,
    delivery_id     TEXT    NOT NULL,
    received_at     INTEGER NOT NULL,
    body_sha256     TEXT    NOT NULL CHECK (length(body_sha256) = 64),
    key_body_sha256 TEXT    NOT NULL CHECK (key_body_sha256 IN ('', body_sha256)),
    status          TEXT    NOT NULL CHECK (status IN ('accepted', 'unmappable')),
    error           TEXT,
    job_ids         TEXT    NOT NULL DEFAULT '[]',
    response        TEXT    NOT NULL,
    approval_required TEXT,
    CONSTRAINT deliveries_dedupe_key UNIQUE (source, delivery_id, key_body_sha256),
    CHECK ((status = 'unmappable') = (error IS NOT NULL))
);
INSERT INTO deliveries_new (id, source, delivery_id, received_at, body_sha256, key_body_sha256,
    status, error, job_ids, response)
SELECT id, source, delivery_id, received_at, body_sha256, '', status, error, job_ids, response
FROM deliveries;
-- Ids are never handed out twice: the new table goes on from the old one's counter.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'deliveries_new', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'deliveries_new');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'deliveries'), 0))
WHERE name = 'deliveries_new';
DROP TABLE deliveries;
ALTER TABLE deliveries_new RENAME TO deliveries;
CREATE INDEX deliveries_source_id_idx ON deliveries (source, id DESC);
-- The replay lookup: this source's copies of this body, newest first.
CREATE INDEX deliveries_source_body_idx ON deliveries (source, body_sha256, received_at);
