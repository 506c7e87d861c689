//! The integration tests, one crate: each test binary links the whole of offboard again, so
//! one binary instead of one per file saves most of the link time. Each former
//! `tests/<name>.rs` is the module `<name>` here; a new test file belongs here as a module too
//! (a new `tests/<name>.rs` would be a binary of its own again).

#[path = "../support/mod.rs"]
mod support;

mod admin;
mod atlassian_client;
mod benches;
mod bulk_and_webhooks;
mod cli;
mod console;
mod console_browser;
mod crash;
mod customers;
mod customers_api;
mod customers_cli;
mod doctor;
mod every_action;
mod evidence_chain;
mod examples;
mod fake_handover;
mod fake_limit;
mod fleet;
mod fuzz_inputs;
mod handover;
mod hooks;
mod manual;
mod migrations;
mod openapi;
mod outcomes;
mod people;
mod slow_clients;
mod smoke;
mod sources;
mod store_contract;
mod store_outage;
mod worker;
