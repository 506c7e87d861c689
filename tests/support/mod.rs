//! Shared test helpers: real stores, the real service on a real port, a fake Atlassian.

pub mod app;
pub mod db;
pub mod fake_atlassian;
pub mod pg_cluster;

/// Tests that measure latency take this alone, and so do the tests that load the machine
/// (several replicas, a worker process at full speed): `cargo test` runs every test of the
/// crate at once, on two cores, and a load test beside a latency test makes the latency
/// test measure the load.
pub static MACHINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
