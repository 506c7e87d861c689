-- One live job per (action, email, target) (README, the section of that name). The key of
-- a live job was (action, email): removing a person from two groups kept one job, so the
-- second group was never removed, nor given back by an undo. For the actions that take a
-- `group_id`, `service_desk_id` or `organization_id`, that id is now part of the key, in a
-- column of its own, `target` (empty for every other action).
--
-- Rust decides a job's target (`Action::key_target`) and binds it; the accepting functions
-- only store it and use it in their arbiter and in their lookup of the live job. The one
-- place SQL reads the target out of `params` is the backfill below, of the rows written
-- before: a string id is its text, an integer id is written out, as `Action::param_text`
-- reads them, and anything else is no target.
ALTER TABLE jobs ADD COLUMN target TEXT NOT NULL DEFAULT '';

UPDATE jobs SET target = coalesce(
    CASE jsonb_typeof(t.id)
        WHEN 'string' THEN t.id #>> '{}'
        WHEN 'number' THEN CASE WHEN t.id::text ~ '^-?[0-9]+$' THEN t.id::text END
    END, '')
FROM (
    SELECT j.id AS job_id, j.params::jsonb -> CASE
        WHEN j.action IN ('remove_from_group', 'add_to_group') THEN 'group_id'
        WHEN j.action IN ('remove_from_service_desk', 'add_to_service_desk')
            THEN 'service_desk_id'
        ELSE 'organization_id'
    END AS id
    FROM jobs j
    WHERE j.action IN ('remove_from_group', 'add_to_group', 'remove_from_service_desk',
        'add_to_service_desk', 'remove_from_customer_organization',
        'add_to_customer_organization')
) t
WHERE jobs.id = t.job_id;

-- Live rows unique on (action, email) are unique on (action, email, target) too: the new
-- index builds over any rows there are.
CREATE UNIQUE INDEX jobs_one_live_per_action_email_target ON jobs (action, email, target)
    WHERE state IN ('pending', 'awaiting_approval', 'running');
DROP INDEX jobs_one_live_per_action_email;

-- p_chains as before, each step with its `target`: [{…, "steps": [{"action", "params",
-- "target", "run_at"}]}]. Otherwise as in 20261206000001_decisions_from_rust.sql.
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

DROP FUNCTION offboard_accept_batch(text[], text[], timestamptz[], text[], text[],
    timestamptz[], text[], text[], integer[], integer[], text[], text[], text[], text[], text[],
    timestamptz[], integer[], text[], text[], text[]);

-- As offboard_accept_delivery, for many deliveries of the common shape (accepted, no
-- cancellation) at once; j_target is each job's target, j_state its initial state, d_actor
-- each delivery's actor. A new delivery is recorded with an empty answer and returns the jobs
-- it names, in order. The client keeps (source, delivery_id) unique within a batch, and
-- (source, body_sha256) among the deliveries with a d_replay_since
-- (src/store/postgres/accept.rs). Otherwise as in 20261206000001_decisions_from_rust.sql.
CREATE FUNCTION offboard_accept_batch(
    d_source text[],
    d_delivery_id text[],
    d_received_at timestamptz[],
    d_body_sha256 text[],
    d_key_body_sha256 text[],
    d_replay_since timestamptz[],
    d_approval_required text[],
    d_actor text[],
    j_delivery integer[],
    j_previous integer[],
    j_action text[],
    j_params text[],
    j_target text[],
    j_state text[],
    j_email text[],
    j_account_id text[],
    j_run_at timestamptz[],
    j_max_attempts integer[],
    j_rule text[],
    j_detail text[],
    p_live text[]
) RETURNS TABLE (k integer, duplicate boolean, status text, response text, job_ids bigint[])
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
    -- so that batches never wait for each other in a cycle.
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
    -- Lookups are LATERAL with LIMIT 1 so that they stay one index probe per entry.
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
    RETURN QUERY SELECT u.k, true, u.status, u.response, NULL::bigint[]
        FROM unnest(v_dups, v_dup_status, v_dup_response) AS u (k, status, response);

    -- First steps, then second steps (which depend on the first), and so on.
    LOOP
        SELECT coalesce(array_agg(i.n::integer), '{}') INTO v_turn
        FROM unnest(j_delivery, j_previous) WITH ORDINALITY AS i (k, previous, n)
        WHERE NOT i.k = ANY (v_dups) AND v_job_of[i.n] IS NULL
          AND (i.previous IS NULL OR v_job_of[i.previous] IS NOT NULL);
        EXIT WHEN cardinality(v_turn) = 0;

        -- New jobs, in (action, email, target) order so that concurrent batches lock alike,
        -- with their creation events. A person who already has a live job of that action and
        -- target gets no new one.
        WITH input AS (
            SELECT i.*, v_job_of[i.previous] AS depends_on
            FROM unnest(j_delivery, j_previous, j_action, j_params, j_target, j_state, j_email,
                j_account_id, j_run_at, j_max_attempts, j_rule, j_detail) WITH ORDINALITY
                AS i (k, previous, action, params, target, state, email, account_id, run_at,
                    max_attempts, rule, detail, n)
            WHERE i.n = ANY (v_turn)
        ), created AS (
            INSERT INTO jobs (action, params, target, state, email, account_id, depends_on,
                run_at, max_attempts, source, rule, delivery_id, created_at, updated_at)
            SELECT i.action, i.params, i.target, i.state, i.email, i.account_id, i.depends_on,
                i.run_at, i.max_attempts, d_source[i.k], i.rule, d_delivery_id[i.k], now(), now()
            FROM input i ORDER BY i.action, i.email, i.target, i.k
            ON CONFLICT (action, email, target)
                WHERE state IN ('pending', 'awaiting_approval', 'running')
            DO NOTHING
            RETURNING jobs.id, jobs.state, jobs.source, jobs.delivery_id, jobs.action, jobs.email,
                jobs.target
        )
        INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail)
        SELECT DISTINCT ON (c.id) c.id, now(), NULL, c.state, d_actor[i.k], i.detail
        FROM created c
        JOIN input i ON i.action = c.action AND i.email = c.email AND i.target = c.target
            AND d_source[i.k] = c.source AND d_delivery_id[i.k] = c.delivery_id
        ORDER BY c.id;

        -- Each of these requests now has a live job: the one created above or the one that
        -- was there. One that finished in between is retried by the one-delivery path.
        SELECT array_agg(coalesce(v_job_of[i.n], live.id) ORDER BY i.n), count(live.id)
        INTO v_job_of, v_resolved
        FROM unnest(j_action, j_email, j_target) WITH ORDINALITY AS i (action, email, target, n)
        LEFT JOIN LATERAL (
            SELECT j.id FROM jobs j
            WHERE i.n = ANY (v_turn) AND j.action = i.action AND j.email = i.email
              AND j.target = i.target AND j.state = ANY (p_live)
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
        SELECT f.k, array_agg(f.id ORDER BY f.n) AS ids FROM found f GROUP BY f.k
    ), input AS (
        SELECT d.*, coalesce(p.ids, '{}') AS ids
        FROM unnest(d_source, d_delivery_id, d_received_at, d_body_sha256, d_key_body_sha256,
                d_approval_required)
            WITH ORDINALITY AS d (source, delivery_id, received_at, body_sha256,
                key_body_sha256, approval_required, k)
        LEFT JOIN per_delivery p ON p.k = d.k
        WHERE NOT d.k::integer = ANY (v_dups)
    ), recorded AS (
        INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256,
            status, job_ids, response, approval_required)
        SELECT i.source, i.delivery_id, i.received_at, i.body_sha256, i.key_body_sha256,
            'accepted', to_jsonb(i.ids::text[])::text, '', i.approval_required
        FROM input i ORDER BY i.source, i.delivery_id
        ON CONFLICT (source, delivery_id, key_body_sha256) DO NOTHING
        RETURNING deliveries.source, deliveries.delivery_id
    )
    SELECT i.k::integer, false, 'accepted'::text, NULL::text, i.ids
    FROM recorded r JOIN input i ON i.source = r.source AND i.delivery_id = r.delivery_id;
    GET DIAGNOSTICS v_recorded = ROW_COUNT;
    IF v_recorded <> v_expected THEN
        RAISE EXCEPTION 'a delivery of the batch was recorded concurrently' USING ERRCODE = 'OBDUP';
    END IF;
END;
$$;
