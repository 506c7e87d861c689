-- A cancel rule never cancels an undo's inverse jobs (README, "Undo on rehire"): a second
-- rehire event would otherwise cancel the first one's inverses and, finding them planned,
-- plan nothing, leaving the person offboarded. Which parameter marks an inverse is decided
-- in Rust (`domain::undo::UNDOES`) and arrives bound in each cancellation as `spare_param`;
-- the rest of offboard_accept_delivery is as in 20261207000001_target_in_live_key.
CREATE OR REPLACE FUNCTION offboard_accept_delivery(
    p_source text,
    p_delivery_id text,
    p_received_at timestamptz,
    p_body_sha256 text,
    p_key_body_sha256 text,
    p_replay_since timestamptz,
    p_error text,
    p_chains jsonb,
    p_cancels jsonb,
    p_approval_required text,
    p_actor text,
    p_live text[],
    p_cancellable text[],
    p_dependent_reason text,
    p_dependent_actor text,
    OUT duplicate boolean,
    OUT status text,
    OUT response text,
    OUT job_ids bigint[],
    OUT cancelled bigint[]
) LANGUAGE plpgsql AS $$
DECLARE
    v_chain jsonb;
    v_step jsonb;
    v_cancel jsonb;
    v_previous bigint;
    v_job_id bigint;
    v_direct bigint[];
BEGIN
    job_ids := '{}';
    cancelled := '{}';
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
    response := NULL;

    IF p_error IS NOT NULL THEN
        status := 'unmappable';
    ELSE
        status := 'accepted';
        FOR v_i IN 0 .. jsonb_array_length(p_cancels) - 1 LOOP
            v_cancel := p_cancels -> v_i;
            WITH target AS (
                SELECT id, state AS old_state FROM jobs
                WHERE email = v_cancel->>'email' AND state = ANY (p_cancellable)
                  AND NOT (params::jsonb ? (v_cancel->>'spare_param'))
                FOR UPDATE
            ), cancelled_now AS (
                UPDATE jobs SET state = 'cancelled', last_error = v_cancel->>'last_error',
                    finalized_at = now(), updated_at = now()
                FROM target WHERE jobs.id = target.id RETURNING jobs.id, target.old_state
            ), events AS (
                INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                SELECT id, now(), old_state, 'cancelled', p_actor, v_cancel->>'detail'
                FROM cancelled_now
                RETURNING job_id
            ) SELECT coalesce(array_agg(job_id ORDER BY job_id), '{}') INTO v_direct FROM events;
            IF cardinality(v_direct) > 0 THEN
                -- The later steps of the cancelled chains can never run: cancel them too.
                cancelled := cancelled || v_direct || ARRAY(
                    SELECT d FROM offboard_cancel_dependents(v_direct, p_cancellable,
                        p_dependent_reason, p_dependent_actor) AS d
                    ORDER BY d);
            END IF;
        END LOOP;

        FOR v_c IN 0 .. jsonb_array_length(p_chains) - 1 LOOP
            v_chain := p_chains -> v_c;
            v_previous := NULL;
            FOR v_s IN 0 .. jsonb_array_length(v_chain->'steps') - 1 LOOP
                v_step := v_chain->'steps'->v_s;
                v_job_id := NULL;
                -- Each round either inserts, or finds the live job that blocked the insert;
                -- that job can finish in between, so a few rounds may be needed.
                FOR v_round IN 1..5 LOOP
                    WITH created AS (
                        INSERT INTO jobs (action, params, target, state, email, account_id,
                            account_type, depends_on, run_at, max_attempts, source, rule,
                            delivery_id, created_at, updated_at)
                        VALUES (
                            v_step->>'action',
                            (v_step->'params')::text,
                            v_step->>'target',
                            v_chain->>'state',
                            v_chain->>'email',
                            v_chain->>'account_id',
                            v_chain->>'account_type',
                            v_previous,
                            (v_step->>'run_at')::timestamptz,
                            (v_chain->>'max_attempts')::integer,
                            p_source,
                            v_chain->>'rule',
                            p_delivery_id,
                            now(),
                            now())
                        ON CONFLICT (action, email, target)
                            WHERE state IN ('pending', 'awaiting_approval', 'running')
                        DO NOTHING
                        RETURNING id, state
                    ), event AS (
                        INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
                        SELECT id, now(), NULL, state, p_actor, v_chain->>'detail' FROM created
                    ) SELECT id INTO v_job_id FROM created;
                    EXIT WHEN v_job_id IS NOT NULL;
                    SELECT id INTO v_job_id FROM jobs
                    WHERE action = v_step->>'action' AND email = v_chain->>'email'
                      AND target = v_step->>'target' AND state = ANY (p_live);
                    EXIT WHEN v_job_id IS NOT NULL;
                END LOOP;
                IF v_job_id IS NULL THEN
                    RAISE EXCEPTION 'could not insert or find the live % job for %',
                        v_step->>'action', v_chain->>'email';
                END IF;
                v_previous := v_job_id;
                IF NOT v_job_id = ANY (job_ids) THEN
                    job_ids := job_ids || v_job_id;
                END IF;
            END LOOP;
        END LOOP;
    END IF;

    INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256,
        status, error, job_ids, response, approval_required)
    VALUES (p_source, p_delivery_id, p_received_at, p_body_sha256, p_key_body_sha256,
        status, p_error, to_jsonb(job_ids::text[])::text, '', p_approval_required)
    ON CONFLICT (source, delivery_id, key_body_sha256) DO NOTHING;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'delivery % of source % was recorded concurrently', p_delivery_id, p_source
            USING ERRCODE = 'OBDUP';
    END IF;
END;
$$;
