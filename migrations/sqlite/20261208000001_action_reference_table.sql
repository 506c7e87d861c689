-- A new action needs no migration. The action CHECK of jobs listed every action, so each new
-- one took a migration and a rebuild of jobs. The actions are now the rows of a reference
-- table, which the store seeds from `Action::ALL` (src/domain/action.rs) every time it
-- migrates (src/store/same_sql.rs, `migrate`), and jobs.action references it. The fifteen
-- actions the CHECK allowed are seeded here too, so that the foreign key finds the action of
-- every job already there.
--
-- SQLite cannot drop a CHECK, so jobs is built anew with the same rows and ids, as
-- 20261206000002_undo_actions.sql did: with the foreign key checks deferred to the commit,
-- the old table is copied aside and dropped, and the new one, created under the same name,
-- gets every row back (SQLite counts a dangling reference when its row goes and uncounts it
-- when a row with that id comes back to the referenced table).
PRAGMA defer_foreign_keys = ON;

CREATE TABLE actions (
    name TEXT PRIMARY KEY
);
INSERT INTO actions (name) VALUES
    ('revoke_portal_access'), ('delete_portal_customer'), ('remove_from_service_desk'),
    ('remove_from_customer_organization'), ('suspend_access'), ('restore_access'),
    ('remove_from_directory'), ('remove_from_group'), ('deactivate_account'),
    ('delete_account'), ('enable_account'), ('cancel_delete_account'), ('add_to_group'),
    ('add_to_service_desk'), ('add_to_customer_organization');

CREATE TEMP TABLE jobs_copy AS SELECT * FROM jobs;
CREATE TEMP TABLE jobs_counter AS SELECT seq FROM sqlite_sequence WHERE name = 'jobs';
DROP TABLE jobs;

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    action           TEXT    NOT NULL REFERENCES actions (name),
    params           TEXT    NOT NULL DEFAULT '{}',
    state            TEXT    NOT NULL CHECK (state IN (
                        'pending', 'awaiting_approval', 'running', 'succeeded', 'failed', 'cancelled')),
    email            TEXT    NOT NULL CHECK (email = lower(email) AND email <> ''),
    account_id       TEXT,
    depends_on       INTEGER REFERENCES jobs (id),
    run_at           INTEGER NOT NULL,
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 1),
    last_error       TEXT,
    outcome          TEXT    CHECK (outcome IN ('done', 'already_done', 'not_found', 'dry_run')),
    source           TEXT,
    rule             TEXT,
    delivery_id      TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    finalized_at     INTEGER,
    claim_seq        INTEGER NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at INTEGER,
    account_type     TEXT    CHECK (account_type IS NULL OR account_id IS NOT NULL),
    target           TEXT    NOT NULL DEFAULT '',
    CHECK ((state = 'succeeded') = (outcome IS NOT NULL)),
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finalized_at IS NOT NULL))
);
INSERT INTO jobs (id, action, params, state, email, account_id, depends_on, run_at,
    attempts, max_attempts, last_error, outcome, source, rule, delivery_id, created_at,
    updated_at, finalized_at, claim_seq, lease_owner, lease_expires_at, account_type, target)
SELECT id, action, params, state, email, account_id, depends_on, run_at, attempts,
    max_attempts, last_error, outcome, source, rule, delivery_id, created_at, updated_at,
    finalized_at, claim_seq, lease_owner, lease_expires_at, account_type, target
FROM jobs_copy ORDER BY id;
-- Ids are never handed out twice: the new table goes on from the old one's counter.
INSERT INTO sqlite_sequence (name, seq)
SELECT 'jobs', 0 WHERE NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'jobs');
UPDATE sqlite_sequence
SET seq = max(seq, coalesce((SELECT seq FROM jobs_counter), 0))
WHERE name = 'jobs';
DROP TABLE jobs_copy;
DROP TABLE jobs_counter;

CREATE UNIQUE INDEX jobs_one_live_per_action_email_target ON jobs (action, email, target)
    WHERE state IN ('pending', 'awaiting_approval', 'running');
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_email_idx ON jobs (email, id DESC);
CREATE INDEX jobs_state_idx ON jobs (state, id DESC);
CREATE INDEX jobs_depends_on_idx ON jobs (depends_on) WHERE depends_on IS NOT NULL;
CREATE INDEX jobs_done_idx ON jobs (finalized_at) WHERE outcome = 'done';
