-- Times are INTEGER microseconds since the Unix epoch (UTC): they compare and index exactly.
CREATE TABLE deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    source        TEXT    NOT NULL,
    delivery_id   TEXT    NOT NULL,
    received_at   INTEGER NOT NULL,
    body_sha256   TEXT    NOT NULL CHECK (length(body_sha256) = 64),
    status        TEXT    NOT NULL CHECK (status IN ('accepted', 'unmappable')),
    error         TEXT,
    job_ids       TEXT    NOT NULL DEFAULT '[]',
    response      TEXT    NOT NULL,
    CONSTRAINT deliveries_source_delivery_id_key UNIQUE (source, delivery_id),
    CHECK ((status = 'unmappable') = (error IS NOT NULL))
);
CREATE INDEX deliveries_source_id_idx ON deliveries (source, id DESC);

CREATE TABLE jobs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    action           TEXT    NOT NULL CHECK (action IN (
                        'revoke_portal_access', 'delete_portal_customer', 'remove_from_service_desk',
                        'remove_from_customer_organization', 'suspend_access', 'restore_access',
                        'remove_from_directory', 'remove_from_group', 'deactivate_account',
                        'delete_account')),
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
    CHECK ((state = 'succeeded') = (outcome IS NOT NULL)),
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finalized_at IS NOT NULL))
);
CREATE UNIQUE INDEX jobs_one_live_per_action_email ON jobs (action, email)
    WHERE state IN ('pending', 'awaiting_approval', 'running');
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_email_idx ON jobs (email, id DESC);
CREATE INDEX jobs_state_idx ON jobs (state, id DESC);
CREATE INDEX jobs_depends_on_idx ON jobs (depends_on) WHERE depends_on IS NOT NULL;
CREATE INDEX jobs_done_idx ON jobs (finalized_at) WHERE outcome = 'done';

CREATE TABLE job_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id     INTEGER NOT NULL REFERENCES jobs (id),
    at         INTEGER NOT NULL,
    from_state TEXT,
    to_state   TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    detail     TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);
CREATE TRIGGER job_events_no_update BEFORE UPDATE ON job_events
BEGIN
    SELECT RAISE(ABORT, 'job_events is append-only');
END;
CREATE TRIGGER job_events_no_delete BEFORE DELETE ON job_events
BEGIN
    SELECT RAISE(ABORT, 'job_events is append-only');
END;

CREATE TABLE worker_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    paused     INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    reason     TEXT    CHECK (reason IN ('manual', 'auth', 'blast_radius')),
    resumed_at INTEGER,
    updated_at INTEGER NOT NULL,
    CHECK (paused = (reason IS NOT NULL))
);
INSERT INTO worker_state (id, paused, updated_at) VALUES (1, 0, 0);
