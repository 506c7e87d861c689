-- A person's case (README, "Proof for auditors", "A person's case"): one row per person that
-- a delivery or manual request planned jobs for, written where those jobs are recorded
-- (src/store/accept.rs). Everything else of a case is read from the person's jobs, events,
-- deliveries and verifications; this row exists so that the People list and the report page
-- through cases by first_seen over an index, instead of grouping every job by email.
--   first_seen    the received_at of the first delivery or manual request that named them
--   effective_at  the earliest run_at planned for them
CREATE TABLE people (
    email        TEXT        PRIMARY KEY CHECK (email = lower(email) AND email <> ''),
    first_seen   TIMESTAMPTZ NOT NULL,
    effective_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX people_first_seen_idx ON people (first_seen, email);

-- The people of the jobs already recorded, the same way acceptance records them.
INSERT INTO people (email, first_seen, effective_at)
SELECT j.email, min(coalesce(d.received_at, j.created_at)), min(j.run_at)
FROM jobs j
LEFT JOIN deliveries d ON d.source = j.source AND d.delivery_id = j.delivery_id
GROUP BY j.email;
