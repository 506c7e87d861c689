//! The Atlassian Cloud client: two lookups and the ten offboarding mutations.
//!
//! Site calls (`site_url`, HTTP Basic) and admin calls (`admin_url`, Bearer org API key) share
//! one [`Client`]. Every request first takes a token from its family's bucket (`pacing`), so
//! all clones of a client together stay under `requests_per_second`. Responses are classified
//! into [`ApiError`] by the shared rules of `shared/reference/atlassian-api.md`, except that
//! each mutation decides for itself what success and 404 mean (`mutation`).

mod client;
mod error;
mod lookup;
mod mutation;
mod pacing;

pub use client::{AtlassianSettings, Client};
pub use error::ApiError;
pub use lookup::Account;
pub use mutation::{Applied, Mutation, PlannedRequest};
