//! The Atlassian Cloud client: the lookups (by email, by id, and by ids in bulk), the mutations
//! (one per action), the read-only checks of `offboard doctor` (`targets`), and the portal-only
//! customer inventory (`inventory`).
//!
//! Site calls (`site_url`, HTTP Basic) and admin calls (`admin_url`, Bearer org API key) share
//! one [`Client`]. Every request first takes a token from its family's bucket (`pacing`), so
//! all clones of a client together stay under `requests_per_second`. Responses are classified
//! into [`CallError`] by the shared rules of Atlassian's API (README, "Which account a job acts on"), except that
//! each mutation decides for itself what success and 404 mean (`mutation`).

mod client;
mod content;
mod error;
pub mod handover;
mod inventory;
mod lookup;
mod mutation;
mod pacing;
mod readback;
mod targets;

pub use client::{AdminSettings, AtlassianSettings, Client, SiteSettings};
pub use content::OwnedContent;
pub use error::{CallError, NO_JSM_AGENT_LICENCE};
pub use inventory::{CustomerFilter, CustomerKey, Inventory, InventoryProgress, PortalCustomer};
pub use lookup::{Account, BULK_READ_IDS};
pub use mutation::{Applied, Mutation, PlannedRequest, Settled};
pub use pacing::{
    FamilyUse, FleetBudget, LEASE_SECONDS, Lease, burst_of, current_lane, grant, in_lane, refill,
};
pub use readback::Verdict;
pub use targets::{ALL_DIRECTORIES, Directory};
