-- The People list's filters on verification (README, "A person's case"): the people whose
-- verification failed, or whom a recheck found active again, are read from these indexes
-- instead of from a walk over every person.
CREATE INDEX verifications_state_idx ON verifications (state, email);
CREATE INDEX verifications_reactivated_idx ON verifications (reactivated_at, email);
