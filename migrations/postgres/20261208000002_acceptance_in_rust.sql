-- Acceptance is one algorithm in Rust for both stores (src/store/accept.rs), issuing
-- set-based statements; the database keeps no acceptance logic of its own. What stays is
-- offboard_body_lock, the advisory lock key of an unsigned body, which every replica must
-- compute alike.
DROP FUNCTION offboard_accept_delivery;
DROP FUNCTION offboard_accept_batch;
DROP FUNCTION offboard_cancel_dependents;
