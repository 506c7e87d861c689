-- Priority lanes (README, "Lanes"): every job's lane, decided in Rust when it is created;
-- jobs from before lanes are scheduled. The claim reads each lane's due jobs in run_at order
-- from the partial index, so it stays O(claimed) however many jobs wait in other lanes.
ALTER TABLE jobs ADD COLUMN lane TEXT NOT NULL DEFAULT 'scheduled'
  CHECK (lane IN ('urgent', 'scheduled', 'bulk'));
CREATE INDEX jobs_due_by_lane ON jobs (lane, run_at, id) WHERE state = 'pending';
