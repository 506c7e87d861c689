-- Tamper evidence (README, "Proof for auditors", "Tamper evidence"): every audit event is
-- sealed into one hash chain after its commit. The sealer (src/store/chain.rs) numbers the
-- events in the order it seals them (`chain_seq`), inside its write transaction, and writes
-- each event's link: `sha256` = SHA-256(`prev_sha256` || SHA-256(canonical content)),
-- computed in Rust (src/evidence/chain.rs). `chain_account_id` is the job's account id when
-- the event was sealed: the canonical content names it, as it names the job's email, by a
-- token, so that pseudonymizing both later leaves the chain intact. The unique index on
-- `chain_seq` makes a second sealer that read the same head fail instead of forking it.
ALTER TABLE job_events ADD COLUMN chain_seq INTEGER CHECK (chain_seq >= 1);
ALTER TABLE job_events ADD COLUMN prev_sha256 TEXT CHECK (length(prev_sha256) = 64);
ALTER TABLE job_events ADD COLUMN sha256 TEXT CHECK (length(sha256) = 64);
ALTER TABLE job_events ADD COLUMN chain_account_id TEXT
    CHECK (chain_seq IS NOT NULL OR chain_account_id IS NULL);
-- Partial: an event is inserted unsealed, and its insert should not pay for this index.
CREATE UNIQUE INDEX job_events_chain_seq_key ON job_events (chain_seq) WHERE chain_seq IS NOT NULL;
CREATE INDEX job_events_unsealed_idx ON job_events (id) WHERE chain_seq IS NULL;

-- The audit trail stays append-only, with two exceptions: sealing (an unsealed event gets
-- its link, its content unchanged), and pseudonymization (README, "Personal data has an
-- end"), which rewrites an event's actor and detail and its chain_account_id while the one
-- row of `evidence_rewrite` says so, inside that transaction only. Neither exception can
-- hide an edit: the chain is what proves the content, and these triggers only stop
-- accidents.
CREATE TABLE evidence_rewrite (
    id     INTEGER PRIMARY KEY CHECK (id = 1),
    active INTEGER NOT NULL CHECK (active IN (0, 1))
);
INSERT INTO evidence_rewrite (id, active) VALUES (1, 0);

DROP TRIGGER job_events_no_update;
CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
WHEN NOT (
    NEW.id = OLD.id AND NEW.job_id = OLD.job_id AND NEW.at = OLD.at
    AND NEW.from_state IS OLD.from_state AND NEW.to_state = OLD.to_state
    AND (
        (OLD.chain_seq IS NULL AND NEW.chain_seq IS NOT NULL
            AND NEW.actor = OLD.actor AND NEW.detail = OLD.detail)
        OR ((SELECT active FROM evidence_rewrite WHERE id = 1) = 1
            AND NEW.chain_seq IS OLD.chain_seq AND NEW.prev_sha256 IS OLD.prev_sha256
            AND NEW.sha256 IS OLD.sha256)
    )
)
BEGIN
    SELECT RAISE(ABORT, 'job_events is append-only');
END;
