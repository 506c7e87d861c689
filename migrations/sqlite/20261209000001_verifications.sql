-- Proof of offboarding (README, "Proof for auditors"): what the worker saw when it read a
-- person's account once their chain had ended live, and the one recheck of it later.
-- A row is written once the read is made; a due recheck (recheck_at passed, rechecked_at
-- NULL) is claimed like a job, with a lease, so that it survives a restart. Decisions are
-- made in Rust and bound. Times are INTEGER microseconds since the Unix epoch (UTC), as in
-- the first migration.
CREATE TABLE verifications (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    email            TEXT    NOT NULL,
    job_id           INTEGER NOT NULL REFERENCES jobs (id),
    account_id       TEXT,
    verified_at      INTEGER NOT NULL,
    state            TEXT    NOT NULL CHECK (state IN ('verified', 'verification_failed')),
    seen             TEXT    NOT NULL,
    recheck_at       INTEGER,
    rechecked_at     INTEGER,
    recheck_seen     TEXT,
    reactivated_at   INTEGER,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    CHECK ((lease_owner IS NULL) = (lease_expires_at IS NULL))
);
CREATE INDEX verifications_email_idx ON verifications (email, id DESC);
CREATE UNIQUE INDEX verifications_job_idx ON verifications (job_id);
CREATE INDEX verifications_recheck_due_idx ON verifications (recheck_at, id)
    WHERE rechecked_at IS NULL AND recheck_at IS NOT NULL;
