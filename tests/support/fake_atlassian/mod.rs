//! An in-process stand-in for Atlassian Cloud: the site and admin endpoints offboard calls,
//! served from one `127.0.0.1:0` listener (point `site_url` and `admin_url` at `url`).
//!
//! It keeps accounts in memory and changes them like the real API would, checks credentials,
//! records every request (faulted ones too) and can inject rate limits, errors, latency and
//! hanging requests, or hold the whole tenant to a rate limit (`tenant_limit`).
//!
//! It must never be kinder than production. Each behaviour carries, in brackets, the key of
//! its source (`[AX286]`, `[UM]`, …); `tests/support/SOURCES.md` lists every key with its URL
//! or repository path. Where no source pins a behaviour down (UNCONFIRMED), the fake takes
//! the less convenient plausible answer, so that offboard copes with both.
//!
//! Here: the handle a test holds and the state behind it. `front_door` records every
//! request and applies latency, `faults` and credentials before any route sees it; `site`
//! serves the `/rest/…` user and service desk endpoints, `admin` the org, its directory and
//! the user lifecycle; `accounts` is what they read and change. What a leaver hands over
//! before removal has a module each: `filters`, `dashboards` (both `content`), `issues`
//! (searched with `jql`, reassigned in `bulk`), `projects` with their components, and
//! `automation` rules.

// The benchmarks in examples/ include the fake by path and use only part of it; some
// controls (`request_count`) serve only the benchmarks, a few no caller yet.
#![allow(dead_code)]

mod accounts;
mod admin;
mod automation;
mod bulk;
mod content;
mod dashboards;
mod faults;
mod filters;
mod front_door;
mod issues;
mod jql;
mod projects;
mod site;
mod tenant_limit;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use accounts::FakeState;
// The benchmark in examples/ names only some of these.
#[allow(unused_imports)]
pub use accounts::{AccountStatus, FakeAccount, FakeStatus, Membership};
#[allow(unused_imports)]
pub use automation::{CLOUD_ID, FakeRule};
#[allow(unused_imports)]
pub use content::FakeItem;
#[allow(unused_imports)]
pub use dashboards::{DashboardStatus, FakeDashboard};
#[allow(unused_imports)]
pub use faults::{Fault, FaultKind, Matcher};
#[allow(unused_imports)]
pub use front_door::{AuthKind, RecordedRequest};
#[allow(unused_imports)]
pub use issues::FakeIssue;
#[allow(unused_imports)]
pub use projects::{FakeComponent, FakeProject};

pub const SITE_EMAIL: &str = "bot@example.com";
pub const SITE_TOKEN: &str = "site-token";
/// The site user's account id (`/rest/api/3/myself`): what it owns, it sees.
pub const SITE_ACCOUNT_ID: &str = "bot-account";
pub const ADMIN_KEY: &str = "admin-key";
pub const ORG_ID: &str = "org-1";
pub const DIRECTORY_ID: &str = "dir-1";

const DEFAULT_DIRECTORY_PAGE_SIZE: usize = 100;
/// The largest `limit` of the service desk API listings is UNCONFIRMED; the documented
/// default (50) is the less convenient plausible cap [AE-sd].
const DEFAULT_LISTING_PAGE_CAP: usize = 50;
/// The largest page of the bulk user read is UNCONFIRMED; its documented default `maxResults`
/// (10) is the less convenient plausible cap [SPEC].
const DEFAULT_BULK_PAGE_CAP: usize = 10;

pub struct FakeAtlassian {
    pub url: String,
    shared: Arc<Shared>,
    server: JoinHandle<()>,
}

impl Drop for FakeAtlassian {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeAtlassian {
    /// The `[atlassian]` section of a config that points at this fake, with its credentials.
    pub fn atlassian_toml(&self) -> String {
        format!(
            r#"
[atlassian]
site_url = "{url}"
site_email = "{SITE_EMAIL}"
site_api_token = "{SITE_TOKEN}"
admin_url = "{url}"
admin_api_key = "{ADMIN_KEY}"
org_id = "{ORG_ID}"
directory_id = "{DIRECTORY_ID}"
"#,
            url = self.url,
        )
    }

    /// Serves on `127.0.0.1:0` in the current tokio runtime until dropped.
    pub async fn start() -> FakeAtlassian {
        let shared = Arc::new(Shared::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("failed to bind the fake Atlassian");
        let address = listener
            .local_addr()
            .expect("bound listener has an address");
        let app = router(shared.clone());
        // Like a real server: small responses go out at once instead of waiting for the
        // client's delayed ACK (Nagle), which would add milliseconds to every call.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake Atlassian stopped serving");
        });
        FakeAtlassian {
            url: format!("http://{address}"),
            shared,
            server,
        }
    }

    pub fn add_customer(&self, account_id: &str, email: &str) {
        self.add_account(FakeAccount::customer(account_id, email));
    }

    pub fn add_managed(&self, account_id: &str, email: &str) {
        self.add_account(FakeAccount::managed(account_id, email));
    }

    /// Adds or replaces an account; its groups, service desks and organizations become known.
    pub fn add_account(&self, account: FakeAccount) {
        put_account(&mut self.shared.lock(), account);
    }

    /// The filters and dashboards that still exist, by id.
    pub fn content(&self) -> (Vec<String>, Vec<String>) {
        let state = self.shared.lock();
        (
            state.filters.keys().cloned().collect(),
            state.dashboards.keys().cloned().collect(),
        )
    }

    /// Makes a service desk exist without any customer on it.
    pub fn add_service_desk(&self, service_desk_id: &str) {
        self.shared
            .lock()
            .service_desks
            .insert(service_desk_id.to_owned());
    }

    /// Makes a customer organization exist without any member.
    pub fn add_organization(&self, organization_id: &str) {
        self.shared
            .lock()
            .organizations
            .insert(organization_id.to_owned());
    }

    /// Makes a directory group exist without any member.
    pub fn add_group(&self, group_id: &str) {
        self.shared.lock().groups.insert(group_id.to_owned());
    }

    /// Makes another directory of the org exist (the configured one, `DIRECTORY_ID`, always
    /// does); accounts join it through `FakeAccount::directories`.
    pub fn add_directory(&self, directory_id: &str) {
        self.shared
            .lock()
            .directories
            .insert(directory_id.to_owned());
    }

    /// Grants or withdraws the site user's "Browse users and groups" permission (granted by
    /// default).
    pub fn set_browse_users(&self, granted: bool) {
        self.shared.lock().browse_users = granted;
    }

    /// Gives or takes away the site user's Jira Service Management agent licence (held by
    /// default). Without it every service desk API endpoint (`/rest/servicedeskapi/…`)
    /// answers 403 with an empty body [JS-live].
    pub fn set_jsm_agent_licence(&self, held: bool) {
        self.shared.lock().jsm_agent_licence = held;
    }

    pub fn account(&self, account_id: &str) -> Option<FakeAccount> {
        self.shared.lock().accounts.get(account_id).cloned()
    }

    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Forgets the requests received so far (e.g. the service's checks at start).
    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// Requests that read (every `GET`, and the directory search).
    pub fn read_requests(&self) -> Vec<RecordedRequest> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|request| request.is_lookup())
            .cloned()
            .collect()
    }

    pub fn mutating_requests(&self) -> Vec<RecordedRequest> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|request| !request.is_lookup())
            .cloned()
            .collect()
    }

    /// How many requests arrived so far, without copying the log (for polling loops).
    pub fn request_count(&self) -> usize {
        self.shared.lock().requests.len()
    }

    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    /// Lets every request currently held by `FaultKind::Hang` proceed.
    pub fn release_held(&self) {
        self.shared
            .release
            .send_modify(|generation| *generation += 1);
    }

    /// Page size of the directory search (default 100).
    pub fn set_directory_page_size(&self, size: usize) {
        self.shared.lock().directory_page_size = size.max(1);
    }

    /// The largest page the service desk and desk customer listings answer (default 50),
    /// whatever `limit` asked for.
    pub fn set_listing_page_cap(&self, cap: usize) {
        self.shared.lock().listing_page_cap = cap.max(1);
    }

    /// The largest page the bulk user read answers (default 10), whatever `maxResults` asked
    /// for.
    pub fn set_bulk_page_cap(&self, cap: usize) {
        self.shared
            .bulk_page_cap
            .store(cap.max(1), Ordering::Relaxed);
    }

    /// Makes the bulk user read leave out portal-only customers: whether it returns them is
    /// UNCONFIRMED, and this is the other plausible answer (by default it returns them).
    pub fn set_bulk_omits_customers(&self, omits: bool) {
        self.shared
            .bulk_omits_customers
            .store(omits, Ordering::Relaxed);
    }

    /// Makes `change` right after the next page of `desk`'s customer list is served: the list
    /// changes while a client pages through it.
    pub fn after_next_desk_page(&self, desk: &str, change: DeskChange) {
        let mut changes = self
            .shared
            .desk_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        changes.push((desk.to_owned(), change));
    }

    /// Makes the service desk API listings answer empty pages that are never the last, as a
    /// broken server might.
    pub fn set_empty_listing_pages(&self, empty: bool) {
        self.shared.lock().empty_listing_pages = empty;
    }

    /// A delay added to every request before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// From now on, counts every request (site and admin alike: one tenant, whichever replica
    /// sends it) in a token bucket of `requests_per_second`, holding at most `burst` (at
    /// least 1), refilled continuously and starting full. A request that finds it empty is
    /// answered `429` with `Retry-After: 1` and is not served; it is still recorded, with
    /// `RecordedRequest::rate_limited`. Replaces any earlier limit with a full bucket.
    pub fn set_tenant_limit(&self, requests_per_second: f64, burst: f64) {
        let limit = tenant_limit::TenantLimit::new(requests_per_second, burst, Instant::now());
        self.shared.lock().tenant_limit = Some(limit);
    }

    /// Lifts the tenant limit: every request is served again.
    pub fn clear_tenant_limit(&self) {
        self.shared.lock().tenant_limit = None;
    }

    /// How many requests the tenant limit answered with a `429`, among those recorded (since
    /// the last `clear_requests`).
    pub fn rate_limited_count(&self) -> usize {
        let state = self.shared.lock();
        state.requests.iter().filter(|r| r.rate_limited).count()
    }

    /// When each request the tenant limit let through arrived, in order (every request when
    /// no limit is set; faulted ones too: they were counted in the budget).
    pub fn served_times(&self) -> Vec<Instant> {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|r| !r.rate_limited)
            .map(|r| r.received_at.into_std())
            .collect()
    }

    /// The most requests served within any `window` (both ends included): under a limit of
    /// rate r and burst b, at most `r * window + b`.
    pub fn max_in_window(&self, window: Duration) -> usize {
        let times = self.served_times();
        let mut start = 0;
        let mut most = 0;
        for (end, &at) in times.iter().enumerate() {
            while at.duration_since(times[start]) > window {
                start += 1;
            }
            most = most.max(end - start + 1);
        }
        most
    }
}

/// A change to a service desk's customers, made between two pages of its customer list.
#[derive(Clone, Debug)]
pub enum DeskChange {
    /// Takes the account off the desk (as removing a customer from it does).
    Remove(String),
    /// Adds or replaces the account, as `add_account` does: a customer who joins the desk, or
    /// one whose access is revoked meanwhile.
    Put(FakeAccount),
}

struct Shared {
    state: Mutex<FakeState>,
    /// Bumped by `release_held`; held requests wait for a change.
    release: watch::Sender<u64>,
    /// The largest page `GET /rest/api/3/user/bulk` answers.
    bulk_page_cap: AtomicUsize,
    /// `GET /rest/api/3/user/bulk` leaves out `customer` accounts.
    bulk_omits_customers: AtomicBool,
    /// Changes waiting for the next page of a desk's customer list: (desk, change).
    desk_changes: Mutex<Vec<(String, DeskChange)>>,
}

impl Default for Shared {
    fn default() -> Shared {
        Shared {
            state: Mutex::new(FakeState {
                accounts: BTreeMap::new(),
                by_prefix: BTreeMap::new(),
                by_email: BTreeMap::new(),
                service_desks: BTreeSet::new(),
                organizations: BTreeSet::new(),
                groups: BTreeSet::new(),
                directories: [DIRECTORY_ID.to_owned()].into(),
                browse_users: true,
                jsm_agent_licence: true,
                requests: Vec::new(),
                faults: Vec::new(),
                directory_page_size: DEFAULT_DIRECTORY_PAGE_SIZE,
                listing_page_cap: DEFAULT_LISTING_PAGE_CAP,
                empty_listing_pages: false,
                latency: Duration::ZERO,
                tenant_limit: None,
                filters: BTreeMap::new(),
                dashboards: BTreeMap::new(),
                issues: Default::default(),
                bulk: Default::default(),
                projects: Default::default(),
                automation: Default::default(),
            }),
            release: watch::Sender::new(0),
            bulk_page_cap: AtomicUsize::new(DEFAULT_BULK_PAGE_CAP),
            bulk_omits_customers: AtomicBool::new(false),
            desk_changes: Mutex::new(Vec::new()),
        }
    }
}

impl Shared {
    /// A test that panicked while holding the lock already failed; later readers may go on.
    /// Bulk tasks move on by the time passed before anyone reads the state.
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        bulk::advance(&mut state);
        state
    }

    /// Takes the changes waiting for the next page of `desk`'s customer list.
    fn take_desk_changes(&self, desk: &str) -> Vec<DeskChange> {
        let mut waiting = self
            .desk_changes
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (now, later) = waiting.drain(..).partition(|(d, _)| d == desk);
        *waiting = later;
        now.into_iter().map(|(_, change)| change).collect()
    }
}

/// Adds or replaces an account; its groups, service desks and organizations become known.
fn put_account(state: &mut FakeState, account: FakeAccount) {
    state
        .service_desks
        .extend(account.service_desks.iter().cloned());
    state
        .organizations
        .extend(account.organizations.iter().cloned());
    state.groups.extend(account.groups.iter().cloned());
    state
        .directories
        .extend(account.directories.keys().cloned());
    if let Some(old) = state.accounts.remove(&account.account_id) {
        state.unindex(&old);
    }
    state.index(&account);
    state.accounts.insert(account.account_id.clone(), account);
}

type Fake = State<Arc<Shared>>;

/// The site routes (`/rest/…`) and the admin routes, behind the front door.
fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .merge(site::routes())
        .merge(filters::routes())
        .merge(dashboards::routes())
        .merge(issues::routes())
        .merge(bulk::routes())
        .merge(projects::routes())
        .merge(automation::routes())
        .merge(admin::routes())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            front_door::front_door,
        ))
        .with_state(shared)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "errorMessages": [message] }))).into_response()
}
