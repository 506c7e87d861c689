//! Shared test helpers: real stores, the real service on a real port, a fake Atlassian.

pub mod app;
pub mod db;
pub mod fake_atlassian;
pub mod pg_cluster;
