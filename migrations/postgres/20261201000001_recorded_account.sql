-- The account a job acts on is recorded before its first mutating call, and later steps of a
-- chain act on it without searching by email again (a revoked customer or a suspended
-- account is no longer found by the search). `account_type` is set exactly when the account
-- was resolved from Atlassian's own record; an `account_id` without it is a payload's claim,
-- still to be checked against the lookup.
ALTER TABLE jobs ADD COLUMN account_type TEXT;
ALTER TABLE jobs ADD CONSTRAINT jobs_account_type_needs_account
    CHECK (account_type IS NULL OR account_id IS NOT NULL);

-- A site token that lost "Browse users and groups" pauses the worker instead of turning
-- every customer job into `not_found`.
ALTER TABLE worker_state DROP CONSTRAINT worker_state_reason_check;
ALTER TABLE worker_state ADD CONSTRAINT worker_state_reason_check
    CHECK (reason IN ('manual', 'auth', 'permission', 'blast_radius'));
