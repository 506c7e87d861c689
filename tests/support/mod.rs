//! Shared test helpers: real stores, the real service on a real port, a fake Atlassian.

// The examples include parts of the support code by path and use only some of it.
#![allow(dead_code)]

pub mod app;
pub mod db;
pub mod fake_atlassian;
pub mod pg_cluster;
