-- Two rules of INTERFACE §10, both decided in Rust and handed to the accepting functions as
-- values (src/store/model.rs).
--
-- Unsigned delivery ids are not trusted (`Dedupe`). Where the sender does not sign the id,
-- the same id is the same delivery only with the same body, and a body accepted from the
-- source since `replay_since` is a repeat whatever its id. The dedupe key becomes
-- (source, delivery_id, key_body_sha256): key_body_sha256 is the body's SHA-256 for an
-- unsigned id and empty for a signed one, whose id alone is the key. Deliveries recorded
-- before this migration were keyed by their id alone, and keep that key.
--
-- Mass offboarding needs a person (`require_approval_above`): a delivery's answer says why
-- all of its jobs wait for approval, and the delivery row keeps that reason for the console.
--
-- The accepting functions gain parameters, so they are dropped and created anew.

ALTER TABLE deliveries ADD COLUMN key_body_sha256 text NOT NULL DEFAULT '';
ALTER TABLE deliveries ALTER COLUMN key_body_sha256 DROP DEFAULT;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_key_body_sha256_check
    CHECK (key_body_sha256 IN ('', body_sha256));
ALTER TABLE deliveries DROP CONSTRAINT deliveries_source_delivery_id_key;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_dedupe_key
    UNIQUE (source, delivery_id, key_body_sha256);
-- The replay lookup: this source's copies of this body, newest first.
CREATE INDEX deliveries_source_body_idx ON deliveries (source, body_sha256, received_at);

ALTER TABLE deliveries ADD COLUMN approval_required text;

-- The answer's `approval_required` key: present only when the delivery needed approval, so
-- every other answer keeps exactly the shape it had.
CREATE FUNCTION offboard_approval_json(p_reason text) RETURNS jsonb LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE WHEN p_reason IS NULL THEN '{}'::jsonb
        ELSE jsonb_build_object('approval_required', p_reason) END
$$;

-- Two copies of one body under different unsigned ids can arrive at once, and no unique
-- index can tell (the window is a range of time): they take this transaction lock first,
-- so the later one's lookup sees the earlier one committed.
CREATE FUNCTION offboard_body_lock(p_source text, p_body_sha256 text) RETURNS bigint
LANGUAGE sql IMMUTABLE AS $$
    SELECT hashtextextended(p_source || '/' || p_body_sha256, 0)
$$;

DROP FUNCTION offboard_accept_delivery(text, text, timestamptz, text, text, jsonb, jsonb, jsonb, text);
DROP FUNCTION offboard_accept_batch(text[], text[], timestamptz[], text[], text[], integer[],
    integer[], text[], text[], text[], text[], text[], timestamptz[], integer[], text[], text[]);

-- As in 20261128000002_accept_in_one_call.sql, plus the dedupe key's body part, the replay
-- window's start (NULL for a signed id) and p_approval_required.
CREATE FUNCTION offboard_accept_delivery(
    p_source text,
    p_delivery_id text,
    p_received_at timestamptz,
    p_body_sha256 text,
    p_key_body_sha256 text,
    p_replay_since timestamptz,
    p_error text,
    p_chains jsonb,
    p_cancels jsonb,
    p_refused jsonb,
    p_dependent_reason text,
    p_approval_required text,
    OUT duplicate boolean,
    OUT status text,
    OUT response text
) LANGUAGE plpgsql AS $$
DECLARE
    v_actor text := 'source:' || p_source;
    v_chain jsonb;
    v_step jsonb;
    v_cancel jsonb;
    v_previous bigint;
    v_job jobs;
    v_found boolean;
    v_jobs jsonb := '[]';
    v_job_ids bigint[] := '{}';
    v_direct bigint[];
    v_dependents bigint[];
    v_cancelled bigint[] := '{}';
BEGIN
    IF p_replay_since IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(offboard_body_lock(p_source, p_body_sha256));
    END IF;
    SELECT d.status, d.response INTO status, response
    FROM deliveries d
    WHERE d.source = p_source AND d.delivery_id = p_delivery_id
      AND (p_key_body_sha256 = '' OR d.body_sha256 = p_key_body_sha256)
    ORDER BY d.id LIMIT 1;
    IF NOT FOUND AND p_replay_since IS NOT NULL THEN
        SELECT d.status, d.response INTO status, response
        FROM deliveries d
        WHERE d.source = p_source AND d.body_sha256 = p_body_sha256
          AND d.received_at >= p_replay_since
        ORDER BY d.received_at DESC, d.id DESC LIMIT 1;
    END IF;
    IF FOUND THEN
        duplicate := true;
        RETURN;
    END IF;
    duplicate := false;

    IF p_error IS NOT NULL THEN
        status := 'unmappable';
        response := jsonb_build_object('error', 'unmappable', 'message', p_error)::text;
    ELSE
        status := 'accepted';
        FOR v_i IN 0 .. jsonb_array_length(p_cancels) - 1 LOOP
            v_cancel := p_cancels -> v_i;
            WITH target AS (
                SELECT id, state AS old_state FROM jobs
                WHERE email = v_cancel->>'email' AND state IN ('pending', 'awaiting_approval')
                FOR UPDATE
            ), cancelled AS (
                UPDATE jobs SET state = 'cancelled', last_error = v_cancel->>'last_error',
                    finalized_at = now(), updated_at = now()
                FROM target WHERE jobs.id = target.id RETURNING jobs.id, target.old_state
            ), events AS (
                INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                SELECT id, now(), old_state, 'cancelled', v_actor, v_cancel->>'detail' FROM cancelled
                RETURNING job_id
            ) SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') INTO v_direct FROM events;
            IF cardinality(v_direct) > 0 THEN
                -- The later steps of the cancelled chains can never run: cancel them too.
                WITH RECURSIVE chain (id) AS (
                    SELECT id FROM jobs WHERE depends_on = ANY (v_direct)
                    UNION SELECT j.id FROM jobs j JOIN chain c ON j.depends_on = c.id
                ), target AS (
                    SELECT id, state AS old_state FROM jobs
                    WHERE id IN (SELECT id FROM chain) AND state IN ('pending', 'awaiting_approval')
                    FOR UPDATE
                ), cancelled AS (
                    UPDATE jobs SET state = 'cancelled', last_error = p_dependent_reason,
                        finalized_at = now(), updated_at = now()
                    FROM target WHERE jobs.id = target.id RETURNING jobs.id, target.old_state
                ), events AS (
                    INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                    SELECT id, now(), old_state, 'cancelled', 'offboard', p_dependent_reason
                    FROM cancelled
                    RETURNING job_id
                ) SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') INTO v_dependents
                FROM events;
                v_cancelled := v_cancelled || v_direct || v_dependents;
            END IF;
        END LOOP;

        FOR v_c IN 0 .. jsonb_array_length(p_chains) - 1 LOOP
            v_chain := p_chains -> v_c;
            v_previous := NULL;
            FOR v_s IN 0 .. jsonb_array_length(v_chain->'steps') - 1 LOOP
                v_step := v_chain->'steps'->v_s;
                v_found := false;
                -- Each round either inserts, or finds the live job that blocked the insert;
                -- that job can finish in between, so a few rounds may be needed.
                FOR v_round IN 1..5 LOOP
                    WITH created AS (
                        INSERT INTO jobs (action, params, state, email, account_id, depends_on,
                            run_at, max_attempts, source, rule, delivery_id, created_at, updated_at)
                        VALUES (
                            v_step->>'action',
                            (v_step->'params')::text,
                            CASE WHEN (v_chain->>'approval')::boolean
                                THEN 'awaiting_approval' ELSE 'pending' END,
                            v_chain->>'email',
                            v_chain->>'account_id',
                            v_previous,
                            (v_step->>'run_at')::timestamptz,
                            (v_chain->>'max_attempts')::integer,
                            p_source,
                            v_chain->>'rule',
                            p_delivery_id,
                            now(),
                            now())
                        ON CONFLICT (action, email)
                            WHERE state IN ('pending', 'awaiting_approval', 'running')
                        DO NOTHING
                        RETURNING *
                    ), event AS (
                        INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                        SELECT id, now(), NULL, state, v_actor, v_chain->>'detail' FROM created
                    ) SELECT * INTO v_job FROM created;
                    IF FOUND THEN
                        v_found := true;
                        EXIT;
                    END IF;
                    SELECT * INTO v_job FROM jobs
                    WHERE action = v_step->>'action' AND email = v_chain->>'email'
                      AND state IN ('pending', 'awaiting_approval', 'running');
                    IF FOUND THEN
                        v_found := true;
                        EXIT;
                    END IF;
                END LOOP;
                IF NOT v_found THEN
                    RAISE EXCEPTION 'could not insert or find the live % job for %',
                        v_step->>'action', v_chain->>'email';
                END IF;
                v_previous := v_job.id;
                IF NOT v_job.id = ANY (v_job_ids) THEN
                    v_job_ids := v_job_ids || v_job.id;
                    v_jobs := v_jobs || jsonb_build_array(offboard_job_json(v_job));
                END IF;
            END LOOP;
        END LOOP;

        response := (jsonb_build_object(
            'delivery_id', p_delivery_id,
            'duplicate', false,
            'jobs', v_jobs,
            'cancelled', to_jsonb(v_cancelled::text[]),
            'refused', p_refused
        ) || offboard_approval_json(p_approval_required))::text;
    END IF;

    INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256,
        status, error, job_ids, response, approval_required)
    VALUES (p_source, p_delivery_id, p_received_at, p_body_sha256, p_key_body_sha256,
        status, p_error, to_jsonb(v_job_ids::text[])::text, response, p_approval_required)
    ON CONFLICT (source, delivery_id, key_body_sha256) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % of source % was recorded concurrently', p_delivery_id, p_source
            USING ERRCODE = 'OBDUP';
    END IF;
END;
$$;

-- As in 20261128000002_accept_in_one_call.sql, plus d_key_body_sha256, d_replay_since and
-- d_approval_required. The client keeps (source, delivery_id) unique within a batch, and
-- (source, body_sha256) among the deliveries with a d_replay_since (src/store/pg_accept.rs).
CREATE FUNCTION offboard_accept_batch(
    d_source text[],
    d_delivery_id text[],
    d_received_at timestamptz[],
    d_body_sha256 text[],
    d_key_body_sha256 text[],
    d_replay_since timestamptz[],
    d_refused text[],
    d_approval_required text[],
    j_delivery integer[],
    j_previous integer[],
    j_action text[],
    j_params text[],
    j_state text[],
    j_email text[],
    j_account_id text[],
    j_run_at timestamptz[],
    j_max_attempts integer[],
    j_rule text[],
    j_detail text[]
) RETURNS TABLE (k integer, duplicate boolean, status text, response text)
LANGUAGE plpgsql
-- Arrays of unknown length would be planned anew on every call; the generic plans are
-- index probes by construction (see the LATERAL lookups), so keep them.
SET plan_cache_mode = force_generic_plan
AS $$
#variable_conflict use_column
DECLARE
    v_dups integer[];
    v_dup_status text[];
    v_dup_response text[];
    -- The live job of each job request, once it has one.
    v_job_of bigint[] := array_fill(NULL::bigint, ARRAY[coalesce(cardinality(j_action), 0)]);
    v_turn integer[];
    v_resolved integer;
    v_expected integer;
    v_recorded integer;
BEGIN
    -- Copies of one unsigned body queue as in offboard_accept_delivery, taken in key order
    -- so that batches never wait for each other in a cycle. (The test is a cheap expression;
    -- a batch of signed ids runs no statement for it.)
    IF cardinality(array_remove(d_replay_since, NULL)) > 0 THEN
        PERFORM pg_advisory_xact_lock(l.key)
        FROM (
            SELECT DISTINCT offboard_body_lock(u.source, u.body_sha256) AS key
            FROM unnest(d_source, d_body_sha256, d_replay_since) AS u (source, body_sha256, since)
            WHERE u.since IS NOT NULL
            ORDER BY 1
        ) l;
    END IF;

    -- Deliveries already recorded are answered with their stored answer and skipped: the
    -- same key, else (for an unsigned id) the newest copy of the body within the window.
    -- Lookups here are LATERAL with LIMIT 1 so that they stay one index probe per entry:
    -- plans are cached, and a join planned while a table was small would scan it whole.
    SELECT coalesce(array_agg(i.k::integer), '{}'), array_agg(d.status), array_agg(d.response)
    INTO v_dups, v_dup_status, v_dup_response
    FROM unnest(d_source, d_delivery_id, d_body_sha256, d_key_body_sha256, d_replay_since)
        WITH ORDINALITY AS i (source, delivery_id, body_sha256, key_body_sha256, since, k)
    CROSS JOIN LATERAL (
        SELECT m.status, m.response FROM (
            (SELECT d.status, d.response, 1 AS rank FROM deliveries d
             WHERE d.source = i.source AND d.delivery_id = i.delivery_id
               AND (i.key_body_sha256 = '' OR d.body_sha256 = i.key_body_sha256)
             ORDER BY d.id LIMIT 1)
            UNION ALL
            (SELECT d.status, d.response, 2 FROM deliveries d
             WHERE i.since IS NOT NULL AND d.source = i.source
               AND d.body_sha256 = i.body_sha256 AND d.received_at >= i.since
             ORDER BY d.received_at DESC, d.id DESC LIMIT 1)
        ) m
        ORDER BY m.rank LIMIT 1
    ) d;
    RETURN QUERY SELECT u.k, true, u.status, u.response
        FROM unnest(v_dups, v_dup_status, v_dup_response) AS u (k, status, response);

    -- First steps, then second steps (which depend on the first), and so on.
    LOOP
        SELECT coalesce(array_agg(i.n::integer), '{}') INTO v_turn
        FROM unnest(j_delivery, j_previous) WITH ORDINALITY AS i (k, previous, n)
        WHERE NOT i.k = ANY (v_dups) AND v_job_of[i.n] IS NULL
          AND (i.previous IS NULL OR v_job_of[i.previous] IS NOT NULL);
        EXIT WHEN cardinality(v_turn) = 0;

        -- New jobs, in (action, email) order so that concurrent batches lock alike, with
        -- their creation events. A person who already has a live job of that action gets no
        -- new one.
        WITH input AS (
            SELECT i.*, v_job_of[i.previous] AS depends_on
            FROM unnest(j_delivery, j_previous, j_action, j_params, j_state, j_email,
                j_account_id, j_run_at, j_max_attempts, j_rule, j_detail) WITH ORDINALITY
                AS i (k, previous, action, params, state, email, account_id, run_at,
                    max_attempts, rule, detail, n)
            WHERE i.n = ANY (v_turn)
        ), created AS (
            INSERT INTO jobs (action, params, state, email, account_id, depends_on, run_at,
                max_attempts, source, rule, delivery_id, created_at, updated_at)
            SELECT i.action, i.params, i.state, i.email, i.account_id, i.depends_on, i.run_at,
                i.max_attempts, d_source[i.k], i.rule, d_delivery_id[i.k], now(), now()
            FROM input i ORDER BY i.action, i.email, i.k
            ON CONFLICT (action, email) WHERE state IN ('pending', 'awaiting_approval', 'running')
            DO NOTHING
            RETURNING jobs.id, jobs.state, jobs.source, jobs.delivery_id, jobs.action, jobs.email
        )
        INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
        SELECT DISTINCT ON (c.id) c.id, now(), NULL, c.state, 'source:' || c.source, i.detail
        FROM created c
        JOIN input i ON i.action = c.action AND i.email = c.email
            AND d_source[i.k] = c.source AND d_delivery_id[i.k] = c.delivery_id
        ORDER BY c.id;

        -- Each of these requests now has a live job: the one created above or the one that
        -- was there. One that finished in between is retried by the one-delivery path.
        SELECT array_agg(coalesce(v_job_of[i.n], live.id) ORDER BY i.n), count(live.id)
        INTO v_job_of, v_resolved
        FROM unnest(j_action, j_email) WITH ORDINALITY AS i (action, email, n)
        LEFT JOIN LATERAL (
            SELECT j.id FROM jobs j
            WHERE i.n = ANY (v_turn) AND j.action = i.action AND j.email = i.email
              AND j.state IN ('pending', 'awaiting_approval', 'running')
            LIMIT 1
        ) live ON true;
        IF v_resolved <> cardinality(v_turn) THEN
            RAISE EXCEPTION 'a live job finished while the batch was being accepted'
                USING ERRCODE = 'OBRTY';
        END IF;
    END LOOP;

    v_expected := cardinality(d_source) - cardinality(v_dups);
    RETURN QUERY
    WITH found AS (
        -- Each delivery's jobs once, in the order its rules asked for them.
        SELECT DISTINCT ON (i.k, v_job_of[i.n]) i.k, i.n, v_job_of[i.n] AS id
        FROM unnest(j_delivery) WITH ORDINALITY AS i (k, n)
        WHERE NOT i.k = ANY (v_dups)
        ORDER BY i.k, v_job_of[i.n], i.n
    ), per_delivery AS (
        SELECT f.k, jsonb_agg(offboard_job_json(job.jrow) ORDER BY f.n) AS jobs,
            array_agg(f.id ORDER BY f.n) AS ids
        FROM found f
        CROSS JOIN LATERAL (SELECT j AS jrow FROM jobs j WHERE j.id = f.id LIMIT 1) job
        GROUP BY f.k
    ), input AS (
        SELECT d.*, coalesce(p.jobs, '[]') AS jobs, coalesce(p.ids, '{}') AS ids
        FROM unnest(d_source, d_delivery_id, d_received_at, d_body_sha256, d_key_body_sha256,
                d_refused, d_approval_required)
            WITH ORDINALITY AS d (source, delivery_id, received_at, body_sha256,
                key_body_sha256, refused, approval_required, k)
        LEFT JOIN per_delivery p ON p.k = d.k
        WHERE NOT d.k::integer = ANY (v_dups)
    ), recorded AS (
        INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256,
            status, job_ids, response, approval_required)
        SELECT i.source, i.delivery_id, i.received_at, i.body_sha256, i.key_body_sha256,
            'accepted', to_jsonb(i.ids::text[])::text,
            (jsonb_build_object('delivery_id', i.delivery_id, 'duplicate', false, 'jobs', i.jobs,
                'cancelled', '[]'::jsonb, 'refused', i.refused::jsonb)
                || offboard_approval_json(i.approval_required))::text,
            i.approval_required
        FROM input i ORDER BY i.source, i.delivery_id
        ON CONFLICT (source, delivery_id, key_body_sha256) DO NOTHING
        RETURNING deliveries.source, deliveries.delivery_id, deliveries.response
    )
    SELECT i.k::integer, false, 'accepted'::text, r.response
    FROM recorded r JOIN input i ON i.source = r.source AND i.delivery_id = r.delivery_id;
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    IF v_recorded <> v_expected THEN
        RAISE EXCEPTION 'a delivery of the batch was recorded concurrently' USING ERRCODE = 'OBDUP';
    END IF;
END;
$$;
