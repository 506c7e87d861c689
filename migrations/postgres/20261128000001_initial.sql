-- Deliveries: every verified webhook we answered, with the response we gave, so a repeated
-- delivery gets the same answer. Raw bodies are never stored, only their SHA-256.
CREATE TABLE deliveries (
    id            BIGSERIAL PRIMARY KEY,
    source        TEXT        NOT NULL,
    delivery_id   TEXT        NOT NULL,
    received_at   TIMESTAMPTZ NOT NULL,
    body_sha256   TEXT        NOT NULL CHECK (length(body_sha256) = 64),
    status        TEXT        NOT NULL CHECK (status IN ('accepted', 'unmappable')),
    error         TEXT,
    job_ids       TEXT        NOT NULL DEFAULT '[]',
    response      TEXT        NOT NULL,
    CONSTRAINT deliveries_source_delivery_id_key UNIQUE (source, delivery_id),
    CHECK ((status = 'unmappable') = (error IS NOT NULL))
);
CREATE INDEX deliveries_source_id_idx ON deliveries (source, id DESC);

CREATE TABLE jobs (
    id               BIGSERIAL PRIMARY KEY,
    action           TEXT        NOT NULL CHECK (action IN (
                        'revoke_portal_access', 'delete_portal_customer', 'remove_from_service_desk',
                        'remove_from_customer_organization', 'suspend_access', 'restore_access',
                        'remove_from_directory', 'remove_from_group', 'deactivate_account',
                        'delete_account')),
    params           TEXT        NOT NULL DEFAULT '{}',
    state            TEXT        NOT NULL CHECK (state IN (
                        'pending', 'awaiting_approval', 'running', 'succeeded', 'failed', 'cancelled')),
    email            TEXT        NOT NULL CHECK (email = lower(email) AND email <> ''),
    account_id       TEXT,
    depends_on       BIGINT      REFERENCES jobs (id),
    run_at           TIMESTAMPTZ NOT NULL,
    attempts         INTEGER     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER     NOT NULL CHECK (max_attempts >= 1),
    last_error       TEXT,
    outcome          TEXT        CHECK (outcome IN ('done', 'already_done', 'not_found', 'dry_run')),
    source           TEXT,
    rule             TEXT,
    delivery_id      TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    updated_at       TIMESTAMPTZ NOT NULL,
    finalized_at     TIMESTAMPTZ,
    -- Incremented by every claim; a worker's write must name the claim it holds, so a late
    -- writer whose lease was rescued cannot overwrite a newer state.
    claim_seq        BIGINT      NOT NULL DEFAULT 0,
    lease_owner      TEXT,
    lease_expires_at TIMESTAMPTZ,
    CHECK ((state = 'succeeded') = (outcome IS NOT NULL)),
    CHECK ((state = 'running') = (lease_expires_at IS NOT NULL AND lease_owner IS NOT NULL)),
    CHECK ((state IN ('succeeded', 'failed', 'cancelled')) = (finalized_at IS NOT NULL))
);
-- At most one live job per person and action: a second request returns the existing job.
CREATE UNIQUE INDEX jobs_one_live_per_action_email ON jobs (action, email)
    WHERE state IN ('pending', 'awaiting_approval', 'running');
CREATE INDEX jobs_due_idx ON jobs (run_at, id) WHERE state = 'pending';
CREATE INDEX jobs_lease_idx ON jobs (lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_email_idx ON jobs (email, id DESC);
CREATE INDEX jobs_state_idx ON jobs (state, id DESC);
CREATE INDEX jobs_depends_on_idx ON jobs (depends_on) WHERE depends_on IS NOT NULL;
CREATE INDEX jobs_done_idx ON jobs (finalized_at) WHERE outcome = 'done';

-- The audit trail: append-only, enforced by a trigger.
CREATE TABLE job_events (
    id         BIGSERIAL PRIMARY KEY,
    job_id     BIGINT      NOT NULL REFERENCES jobs (id),
    at         TIMESTAMPTZ NOT NULL,
    from_state TEXT,
    to_state   TEXT        NOT NULL,
    actor      TEXT        NOT NULL,
    detail     TEXT        NOT NULL DEFAULT ''
);
CREATE INDEX job_events_job_idx ON job_events (job_id, id);

CREATE FUNCTION job_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'job_events is append-only';
END;
$$;
CREATE TRIGGER job_events_no_update BEFORE UPDATE OR DELETE ON job_events
    FOR EACH ROW EXECUTE FUNCTION job_events_append_only();

CREATE TABLE worker_state (
    id         INTEGER     PRIMARY KEY CHECK (id = 1),
    paused     BOOLEAN     NOT NULL DEFAULT false,
    reason     TEXT        CHECK (reason IN ('manual', 'auth', 'blast_radius')),
    resumed_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    CHECK (paused = (reason IS NOT NULL))
);
INSERT INTO worker_state (id, paused, updated_at) VALUES (1, false, now());
