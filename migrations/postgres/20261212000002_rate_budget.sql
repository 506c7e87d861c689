-- The rate budget every replica on this store shares (README, "Running several replicas"):
-- one token bucket per API family, leased from in small grants. The arithmetic is the
-- service's (src/atlassian/pacing.rs); the row only keeps the state, under its lock.
CREATE TABLE rate_budget (
  family TEXT PRIMARY KEY,
  tokens DOUBLE PRECISION NOT NULL,
  refilled_at TIMESTAMPTZ NOT NULL,
  paused_until TIMESTAMPTZ
);
