//! Shared test helpers: real stores, the real service on a real port, a fake Atlassian.

// Each test binary uses a different part of the support code.
#![allow(dead_code)]

pub mod app;
pub mod db;
pub mod fake_atlassian;
pub mod pg_cluster;
