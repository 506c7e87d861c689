//! offboard turns signed webhooks from HR systems and Jira into safe, durable, idempotent
//! offboarding actions against Atlassian Cloud.
//!
//! The modules follow the data flow: [`http`] receives a webhook, [`verify`] checks its
//! signature on the raw bytes, [`rules`] maps the payload to job requests, [`store`] commits
//! the delivery and its jobs in one transaction, and [`worker`] claims due jobs and runs them
//! through [`atlassian`]. [`config`] loads and validates everything at start; [`doctor`]
//! checks it against the live Atlassian APIs; [`cli`] is the command line over the same
//! pieces, printing through [`report`], whose CSV and table cells [`cell`] makes harmless.

pub mod atlassian;
pub mod batch;
pub mod cell;
pub mod cli;
pub mod config;
pub mod doctor;
pub mod domain;
pub mod evidence;
pub mod http;
pub mod ingest;
pub mod manual;
pub mod memory;
pub mod metrics;
pub mod report;
pub mod rules;
pub mod serve;
pub mod store;
pub mod telemetry;
pub mod verify;
pub mod worker;

/// Makes ring the process's TLS crypto provider. reqwest is built without one of its own (its
/// default, aws-lc, would be a second crypto library built from C); sqlx already brings ring.
/// Idempotent: installing fails only when a provider is already installed.
pub fn install_tls_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
