-- Accepting a delivery in one call: the duplicate check, its cancellations, its jobs with
-- their creation events, and the delivery with its answer, in one round trip and one
-- implicit transaction, instead of five round trips (BEGIN, delivery, job, answer, COMMIT).
-- The delivery is written last and whole, so it costs one write instead of an insert and an
-- update. The wake-up for other replicas is sent after the commit (src/store/pg_notifier.rs).
--
-- The client passes everything already decided (rules, emails, truncated details) as JSON;
-- this function only does what needs the database: dedupe, the one-live-job-per-person
-- rule, chaining, and the answer, which is built here in exactly the shape the API shows a
-- job (tests compare it with the job as read back).

-- A job as the API shows it: ids as strings, times RFC 3339 UTC with milliseconds.
CREATE FUNCTION offboard_job_json(j jobs) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', j.id::text,
        'action', j.action,
        'params', j.params::jsonb,
        'state', j.state,
        'email', j.email,
        'account_id', j.account_id,
        'depends_on', j.depends_on::text,
        'run_at', to_char(j.run_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'attempts', j.attempts,
        'max_attempts', j.max_attempts,
        'last_error', j.last_error,
        'outcome', j.outcome,
        'source', j.source,
        'rule', j.rule,
        'delivery_id', j.delivery_id,
        'created_at', to_char(j.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'updated_at', to_char(j.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
    )
$$;

-- Records the delivery with its answer, last, so one statement writes it whole. A
-- concurrent copy of the same delivery that committed first makes this raise OBDUP: the
-- caller rolls everything back and calls again, and the first check then replays the
-- winner's answer.
CREATE FUNCTION offboard_record_delivery(
    p_source text, p_delivery_id text, p_received_at timestamptz, p_body_sha256 text,
    p_status text, p_error text, p_job_ids bigint[], p_response text
) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, status, error,
        job_ids, response)
    VALUES (p_source, p_delivery_id, p_received_at, p_body_sha256, p_status, p_error,
        to_jsonb(p_job_ids::text[])::text, p_response)
    ON CONFLICT (source, delivery_id) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % of source % was recorded concurrently', p_delivery_id, p_source
            USING ERRCODE = 'OBDUP';
    END IF;
END;
$$;

-- p_chains: [{"email", "account_id", "rule", "approval", "max_attempts", "detail",
--             "steps": [{"action", "params", "run_at"}]}]
-- p_cancels: [{"email", "last_error", "detail"}]
-- p_error non-null records the delivery as unmappable (chains and cancels are then empty).
-- Returns whether the delivery was already recorded, and the recorded status and answer.
CREATE FUNCTION offboard_accept_delivery(
    p_source text,
    p_delivery_id text,
    p_received_at timestamptz,
    p_body_sha256 text,
    p_error text,
    p_chains jsonb,
    p_cancels jsonb,
    p_refused jsonb,
    p_dependent_reason text,
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
    SELECT d.status, d.response INTO status, response
    FROM deliveries d WHERE d.source = p_source AND d.delivery_id = p_delivery_id;
    IF FOUND THEN
        duplicate := true;
        RETURN;
    END IF;
    duplicate := false;

    IF p_error IS NOT NULL THEN
        status := 'unmappable';
        response := jsonb_build_object('error', 'unmappable', 'message', p_error)::text;
        PERFORM offboard_record_delivery(p_source, p_delivery_id, p_received_at, p_body_sha256,
            status, p_error, '{}', response);
        RETURN;
    END IF;
    status := 'accepted';

    FOR v_cancel IN SELECT * FROM jsonb_array_elements(p_cancels) LOOP
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
            SELECT id, now(), old_state, 'cancelled', 'offboard', p_dependent_reason FROM cancelled
            RETURNING job_id
        ) SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') INTO v_dependents FROM events;
        v_cancelled := v_cancelled || v_direct || v_dependents;
    END LOOP;

    FOR v_chain IN SELECT * FROM jsonb_array_elements(p_chains) LOOP
        v_previous := NULL;
        FOR v_step IN SELECT * FROM jsonb_array_elements(v_chain->'steps') LOOP
            v_found := false;
            -- Each round either inserts, or finds the live job that blocked the insert; that
            -- job can finish in between, so a few rounds may be needed under contention.
            FOR v_round IN 1..5 LOOP
                INSERT INTO jobs (action, params, state, email, account_id, depends_on, run_at,
                    max_attempts, source, rule, delivery_id, created_at, updated_at)
                VALUES (
                    v_step->>'action',
                    (v_step->'params')::text,
                    CASE WHEN (v_chain->>'approval')::boolean THEN 'awaiting_approval' ELSE 'pending' END,
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
                ON CONFLICT (action, email) WHERE state IN ('pending', 'awaiting_approval', 'running')
                DO NOTHING
                RETURNING * INTO v_job;
                IF FOUND THEN
                    INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                    VALUES (v_job.id, now(), NULL, v_job.state, v_actor, v_chain->>'detail');
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

    response := jsonb_build_object(
        'delivery_id', p_delivery_id,
        'duplicate', false,
        'jobs', v_jobs,
        'cancelled', to_jsonb(v_cancelled::text[]),
        'refused', p_refused
    )::text;
    PERFORM offboard_record_delivery(p_source, p_delivery_id, p_received_at, p_body_sha256,
        status, NULL, v_job_ids, response);
END;
$$;
