-- The verifier looks for chains that ended live since its last pass (README, "Proof for
-- auditors"): succeeded jobs by completion time, whatever their outcome (the index on
-- finalized_at of the first migration holds `done` only).
CREATE INDEX jobs_succeeded_idx ON jobs (finalized_at) WHERE state = 'succeeded';
