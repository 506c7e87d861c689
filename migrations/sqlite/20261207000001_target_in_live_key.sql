-- One live job per (action, email, target) (README, the section of that name). The key of
-- a live job was (action, email): removing a person from two groups kept one job, so the
-- second group was never removed, nor given back by an undo. For the actions that take a
-- `group_id`, `service_desk_id` or `organization_id`, that id is now part of the key, in a
-- column of its own, `target` (empty for every other action).
--
-- Rust decides a job's target (`Action::key_target`) and binds it. The one place SQL reads
-- the target out of `params` is the backfill below, of the rows written before: a string id
-- is its text, an integer id is written out (`->` keeps its digits, where `json_extract`
-- would turn one beyond 64 bits into a float), as `Action::param_text` reads them, and
-- anything else is no target.
ALTER TABLE jobs ADD COLUMN target TEXT NOT NULL DEFAULT '';

UPDATE jobs SET target = coalesce((
    SELECT CASE json_type(jobs.params, p.path)
        WHEN 'text' THEN json_extract(jobs.params, p.path)
        WHEN 'integer' THEN jobs.params -> p.path
    END
    FROM (SELECT CASE
        WHEN jobs.action IN ('remove_from_group', 'add_to_group') THEN '$.group_id'
        WHEN jobs.action IN ('remove_from_service_desk', 'add_to_service_desk')
            THEN '$.service_desk_id'
        ELSE '$.organization_id'
    END AS path) p
), '')
WHERE action IN ('remove_from_group', 'add_to_group', 'remove_from_service_desk',
    'add_to_service_desk', 'remove_from_customer_organization', 'add_to_customer_organization');

-- Live rows unique on (action, email) are unique on (action, email, target) too: the new
-- index builds over any rows there are.
CREATE UNIQUE INDEX jobs_one_live_per_action_email_target ON jobs (action, email, target)
    WHERE state IN ('pending', 'awaiting_approval', 'running');
DROP INDEX jobs_one_live_per_action_email;
