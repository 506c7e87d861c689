-- The account a job acts on is recorded before its first mutating call, and later steps of a
-- chain act on it without searching by email again (a revoked customer or a suspended
-- account is no longer found by the search). `account_type` is set exactly when the account
-- was resolved from Atlassian's own record; an `account_id` without it is a payload's claim,
-- still to be checked against the lookup.
ALTER TABLE jobs ADD COLUMN account_type TEXT
    CHECK (account_type IS NULL OR account_id IS NOT NULL);

-- A site token that lost "Browse users and groups" pauses the worker instead of turning
-- every customer job into `not_found`. SQLite cannot alter a CHECK, so the one-row table is
-- rebuilt with the new reason allowed.
CREATE TABLE worker_state_new (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    reason     TEXT    CHECK (reason IN ('manual', 'auth', 'permission', 'blast_radius')),
    resumed_at INTEGER,
    updated_at INTEGER NOT NULL,
    CHECK (paused = (reason IS NOT NULL))
);
INSERT INTO worker_state_new (id, paused, reason, resumed_at, updated_at)
    SELECT id, paused, reason, resumed_at, updated_at FROM worker_state;
DROP TABLE worker_state;
ALTER TABLE worker_state_new RENAME TO worker_state;
