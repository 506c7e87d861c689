//! An in-process stand-in for Atlassian Cloud: the site and admin endpoints offboard calls,
//! served from one `127.0.0.1:0` listener (point `site_url` and `admin_url` at `url`).
//!
//! It keeps accounts in memory and changes them like the real API would, checks credentials,
//! records every request (faulted ones too) and can inject rate limits, errors, latency and
//! hanging requests.
//!
//! It must never be kinder than production. Each behaviour carries, in brackets, the key of
//! its source in the Atlassian API reference the README's "Atlassian API" section points to
//! (`[AX286]`, `[UM]`, …). Where no source pins a behaviour down (UNCONFIRMED there), the
//! fake takes the less convenient plausible answer, so that offboard copes with both.

// Each test binary uses a different part of the fake.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub const SITE_EMAIL: &str = "bot@example.com";
pub const SITE_TOKEN: &str = "site-token";
pub const ADMIN_KEY: &str = "admin-key";
pub const ORG_ID: &str = "org-1";
pub const DIRECTORY_ID: &str = "dir-1";

const DEFAULT_DIRECTORY_PAGE_SIZE: usize = 100;
const DEFAULT_SITE_MAX_RESULTS: usize = 50;
const MAX_BODY_BYTES: usize = 1 << 20;

/// Where an account stands, as the assertions of a test see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeStatus {
    Active,
    /// Directory suspend; restore brings it back to `Active`.
    Suspended,
    /// Lifecycle disable.
    Deactivated,
    /// Lifecycle delete, inside the grace period: a second delete answers 404.
    PendingDelete,
    /// Removed from the org directory (still a site user).
    Removed,
    /// Deleted by the site delete-user call: gone from every endpoint.
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeAccount {
    pub account_id: String,
    /// `atlassian`, `customer` or `app`.
    pub account_type: String,
    /// `None` models a user whose privacy settings hide the email: searches never show it.
    pub email: Option<String>,
    pub display_name: String,
    pub status: FakeStatus,
    /// Listed by the directory search and reachable by the directory endpoints.
    pub in_directory: bool,
    pub portal_access_revoked: bool,
    pub groups: BTreeSet<String>,
    pub service_desks: BTreeSet<String>,
    pub organizations: BTreeSet<String>,
}

impl FakeAccount {
    /// An active JSM portal-only customer.
    pub fn customer(account_id: &str, email: &str) -> FakeAccount {
        FakeAccount {
            account_id: account_id.to_owned(),
            account_type: "customer".to_owned(),
            email: Some(email.to_owned()),
            display_name: display_name_for(email),
            status: FakeStatus::Active,
            in_directory: false,
            portal_access_revoked: false,
            groups: BTreeSet::new(),
            service_desks: BTreeSet::new(),
            organizations: BTreeSet::new(),
        }
    }

    /// An active managed account in the org directory.
    pub fn managed(account_id: &str, email: &str) -> FakeAccount {
        FakeAccount {
            account_type: "atlassian".to_owned(),
            in_directory: true,
            ..FakeAccount::customer(account_id, email)
        }
    }

    fn is_gone(&self) -> bool {
        self.status == FakeStatus::Deleted
    }

    fn in_directory_now(&self) -> bool {
        self.in_directory && !self.is_gone()
    }
}

fn display_name_for(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_owned()
}

/// Which `Authorization` a request carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    /// HTTP Basic with the right token, for this user.
    Basic {
        user: String,
    },
    /// Bearer with the right admin key.
    Bearer,
    /// Present but wrong or malformed.
    Invalid,
}

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// As sent, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub auth: AuthKind,
    pub headers: HeaderMap,
    /// The body, if it parsed as JSON.
    pub body: Option<Value>,
    pub received_at: Instant,
}

impl RecordedRequest {
    /// Reads: every `GET` and the directory search (a `POST`); everything else mutates.
    pub fn is_lookup(&self) -> bool {
        self.method == "GET" || (self.method == "POST" && self.path.ends_with("/users/search"))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

#[derive(Clone, Debug)]
pub enum Matcher {
    Any,
    Mutating,
    Lookup,
    PathContains(String),
}

impl Matcher {
    fn matches(&self, request: &RecordedRequest) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Mutating => !request.is_lookup(),
            Matcher::Lookup => request.is_lookup(),
            Matcher::PathContains(part) => request.path.contains(part.as_str()),
        }
    }
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// `reset_after` sends `X-RateLimit-Reset` as now + n seconds at minute precision, the
    /// way Atlassian formats it (`2026-03-01T12:01Z`) [69262].
    Status429 {
        retry_after: Option<u64>,
        reset_after: Option<u64>,
    },
    /// A 429 whose `X-RateLimit-Reset` is RFC 3339 with seconds, now + n seconds.
    Status429ResetSeconds {
        reset_after: u64,
    },
    Status503 {
        retry_after: Option<u64>,
    },
    Status500,
    Status401,
    Status403 {
        body: String,
    },
    /// Delays the request, which then proceeds normally.
    Latency(Duration),
    /// Holds the request open until `release_held`, then lets it proceed normally.
    Hang,
    /// Carries the request out at once, but holds its answer until `release_held`: the
    /// change is made even if the caller dies waiting.
    HoldAnswer,
}

/// Applies `kind` to the next `times` requests that `matcher` accepts. Faults are tried in
/// the order they were injected; one request consumes at most one fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub matcher: Matcher,
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    pub fn once(matcher: Matcher, kind: FaultKind) -> Fault {
        Fault {
            matcher,
            times: 1,
            kind,
        }
    }
}

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
        let mut state = self.shared.lock();
        state
            .service_desks
            .extend(account.service_desks.iter().cloned());
        state
            .organizations
            .extend(account.organizations.iter().cloned());
        state.groups.extend(account.groups.iter().cloned());
        if let Some(old) = state.accounts.remove(&account.account_id) {
            state.unindex(&old);
        }
        state.index(&account);
        state.accounts.insert(account.account_id.clone(), account);
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

    /// Grants or withdraws the site user's "Browse users and groups" permission (granted by
    /// default).
    pub fn set_browse_users(&self, granted: bool) {
        self.shared.lock().browse_users = granted;
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

    /// A delay added to every request before it is handled.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }
}

struct Shared {
    state: Mutex<FakeState>,
    /// Bumped by `release_held`; held requests wait for a change.
    release: watch::Sender<u64>,
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
                browse_users: true,
                requests: Vec::new(),
                faults: Vec::new(),
                directory_page_size: DEFAULT_DIRECTORY_PAGE_SIZE,
                latency: Duration::ZERO,
            }),
            release: watch::Sender::new(0),
        }
    }
}

impl Shared {
    /// A test that panicked while holding the lock already failed; later readers may go on.
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

struct FakeState {
    accounts: BTreeMap<String, FakeAccount>,
    /// Lower-cased email, display name and each word of it → account ids: the site search
    /// matches prefixes of these, in O(log n) however many accounts a benchmark adds.
    by_prefix: BTreeMap<String, BTreeSet<String>>,
    /// Lower-cased email → account ids, for the directory's exact `emails` filter.
    by_email: BTreeMap<String, BTreeSet<String>>,
    service_desks: BTreeSet<String>,
    organizations: BTreeSet<String>,
    groups: BTreeSet<String>,
    /// The site user holds "Browse users and groups" (`USER_PICKER`).
    browse_users: bool,
    requests: Vec<RecordedRequest>,
    faults: Vec<Fault>,
    directory_page_size: usize,
    latency: Duration,
}

/// What the site search matches a prefix of.
fn search_keys(account: &FakeAccount) -> Vec<String> {
    let name = account.display_name.to_ascii_lowercase();
    let mut keys: Vec<String> = name.split_whitespace().map(str::to_owned).collect();
    keys.push(name);
    keys.extend(account.email.as_deref().map(str::to_ascii_lowercase));
    keys
}

impl FakeState {
    fn index(&mut self, account: &FakeAccount) {
        for key in search_keys(account) {
            let ids = self.by_prefix.entry(key).or_default();
            ids.insert(account.account_id.clone());
        }
        if let Some(email) = &account.email {
            let ids = self.by_email.entry(email.to_ascii_lowercase()).or_default();
            ids.insert(account.account_id.clone());
        }
    }

    fn unindex(&mut self, account: &FakeAccount) {
        fn remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
            if let Some(ids) = index.get_mut(key) {
                ids.remove(id);
                if ids.is_empty() {
                    index.remove(key);
                }
            }
        }
        for key in search_keys(account) {
            remove(&mut self.by_prefix, &key, &account.account_id);
        }
        if let Some(email) = &account.email {
            remove(
                &mut self.by_email,
                &email.to_ascii_lowercase(),
                &account.account_id,
            );
        }
    }

    /// Ids of the accounts with a search key that starts with `query` (case-insensitive).
    fn prefix_matches(&self, query: &str) -> BTreeSet<&String> {
        let query = query.to_ascii_lowercase();
        self.by_prefix
            .range(query.clone()..)
            .take_while(|(key, _)| key.starts_with(&query))
            .flat_map(|(_, ids)| ids)
            .collect()
    }

    fn take_fault(&mut self, request: &RecordedRequest) -> Option<FaultKind> {
        let index = self
            .faults
            .iter()
            .position(|fault| fault.times > 0 && fault.matcher.matches(request))?;
        let fault = &mut self.faults[index];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }

    /// Whether the site calls treat the account as active: a revoked portal customer is
    /// "(Deactivated)" [KB-rev]; suspended [AX286], deactivated and deleting accounts are
    /// not active either.
    fn site_active(account: &FakeAccount) -> bool {
        !account.portal_access_revoked
            && matches!(account.status, FakeStatus::Active | FakeStatus::Removed)
    }

    /// An account the site endpoints can see.
    fn live_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.accounts
            .get_mut(account_id)
            .filter(|account| !account.is_gone())
    }

    /// A managed account the lifecycle endpoints know.
    fn managed_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.live_account(account_id)
            .filter(|account| account.account_type == "atlassian")
    }

    fn directory_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.accounts
            .get_mut(account_id)
            .filter(|account| account.in_directory_now())
    }
}

type Fake = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let directory = "/admin/v2/orgs/{org}/directories/{dir}";
    Router::new()
        .route("/rest/api/3/user/search", get(site_search))
        .route("/rest/api/3/users/search", get(all_users))
        .route("/rest/api/3/user", get(site_user).delete(delete_user))
        .route("/rest/api/3/myself", get(myself))
        .route("/rest/api/3/mypermissions", get(my_permissions))
        .route("/rest/servicedeskapi/servicedesk/{desk}", get(service_desk))
        .route(
            "/rest/servicedeskapi/organization/{organization}",
            get(organization),
        )
        .route("/admin/v1/orgs/{org}", get(org))
        .route("/admin/v2/orgs/{org}/directories", get(directories))
        .route(
            "/rest/servicedeskapi/customer/user/{account_id}/revoke-portal-only-access",
            put(revoke_portal_access),
        )
        .route(
            "/rest/servicedeskapi/servicedesk/{desk}/customer",
            delete(remove_from_service_desk),
        )
        .route(
            "/rest/servicedeskapi/organization/{organization}/user",
            delete(remove_from_organization),
        )
        .route(
            "/users/{account_id}/manage/lifecycle/disable",
            post(lifecycle_disable),
        )
        .route(
            "/users/{account_id}/manage/lifecycle/delete",
            post(lifecycle_delete),
        )
        .route(&format!("{directory}/users/search"), post(directory_search))
        .route(
            &format!("{directory}/users/{{account_id}}/suspend"),
            post(suspend),
        )
        .route(
            &format!("{directory}/users/{{account_id}}/restore"),
            post(restore),
        )
        .route(
            &format!("{directory}/users/{{account_id}}"),
            get(directory_user).delete(remove_from_directory),
        )
        .route(&format!("{directory}/groups/{{group}}"), get(group))
        .route(
            &format!("{directory}/groups/{{group}}/memberships/{{account_id}}"),
            delete(remove_from_group),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(middleware::from_fn_with_state(shared.clone(), front_door))
        .with_state(shared)
}

/// Records the request, then applies latency, faults and authentication before routing.
async fn front_door(State(shared): Fake, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let recorded = record(&parts, &bytes);
    let (fault, latency) = {
        let mut state = shared.lock();
        state.requests.push(recorded.clone());
        (state.take_fault(&recorded), state.latency)
    };
    // A zero sleep still waits for the timer's next millisecond tick.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let hold_answer = matches!(fault, Some(FaultKind::HoldAnswer));
    if let Some(response) = apply_fault(&shared, fault).await {
        return response;
    }
    if !is_authorized(&recorded) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if hold_answer {
        wait_for_release(&shared).await;
    }
    response
}

async fn wait_for_release(shared: &Shared) {
    let mut released = shared.release.subscribe();
    released.borrow_and_update();
    // An error means the fake is shutting down: nothing will answer anyway.
    let _ = released.changed().await;
}

fn record(parts: &axum::http::request::Parts, body: &Bytes) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        auth: auth_kind(&parts.headers),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(body).ok(),
        received_at: Instant::now(),
    }
}

fn auth_kind(headers: &HeaderMap) -> AuthKind {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return AuthKind::None;
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = BASE64.decode(encoded.trim()).unwrap_or_default();
        let credentials = String::from_utf8(decoded).unwrap_or_default();
        if let Some((user, SITE_TOKEN)) = credentials.split_once(':') {
            return AuthKind::Basic {
                user: user.to_owned(),
            };
        }
    }
    if value.strip_prefix("Bearer ") == Some(ADMIN_KEY) {
        return AuthKind::Bearer;
    }
    AuthKind::Invalid
}

/// Site endpoints (`/rest/…`) take the site user's Basic auth, everything else the Bearer key.
fn is_authorized(request: &RecordedRequest) -> bool {
    if request.path.starts_with("/rest/") {
        request.auth
            == AuthKind::Basic {
                user: SITE_EMAIL.to_owned(),
            }
    } else {
        request.auth == AuthKind::Bearer
    }
}

/// The response a fault answers with, or `None` when the request should go on.
async fn apply_fault(shared: &Shared, fault: Option<FaultKind>) -> Option<Response> {
    match fault? {
        FaultKind::Status429 {
            retry_after,
            reset_after,
        } => Some(rate_limited(
            StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            reset_after.map(reset_at_minute),
        )),
        FaultKind::Status429ResetSeconds { reset_after } => {
            let reset = chrono::Utc::now() + chrono::Duration::seconds(reset_after as i64);
            let value = reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            Some(rate_limited(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(value),
            ))
        }
        FaultKind::Status503 { retry_after } => Some(rate_limited(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            None,
        )),
        FaultKind::Status500 => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
        )),
        FaultKind::Status401 => Some(error(StatusCode::UNAUTHORIZED, "Unauthorized")),
        FaultKind::Status403 { body } => Some(
            (
                StatusCode::FORBIDDEN,
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        ),
        FaultKind::Latency(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        FaultKind::Hang => {
            wait_for_release(shared).await;
            None
        }
        FaultKind::HoldAnswer => None,
    }
}

/// `yyyy-MM-ddTHH:mmZ`: request time + the wait, UTC, at minute precision [69262].
fn reset_at_minute(seconds: u64) -> String {
    let reset = chrono::Utc::now() + chrono::Duration::seconds(seconds as i64);
    reset.format("%Y-%m-%dT%H:%MZ").to_string()
}

fn rate_limited(status: StatusCode, retry_after: Option<u64>, reset: Option<String>) -> Response {
    let mut response = error(status, "Rate limit exceeded");
    let headers = response.headers_mut();
    if let Some(seconds) = retry_after {
        headers.insert(RETRY_AFTER, seconds.into());
    }
    if let Some(value) = reset {
        headers.insert(
            "x-ratelimit-reset",
            value.parse().expect("a timestamp is a valid header value"),
        );
    }
    response
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "errorMessages": [message] }))).into_response()
}

#[derive(Deserialize)]
struct SiteSearchParams {
    query: Option<String>,
    #[serde(rename = "accountId")]
    account_id: Option<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

/// Fuzzy like the real one: any account whose email, display name or a word of it starts
/// with the query ("query=john matches John Smith and johnson@example.com") [AE-search].
/// Active users only: suspended accounts [AX286] and revoked customers ("(Deactivated)")
/// [KB-rev] are absent. Without "Browse users and groups" the answer is `200 []`, not an
/// error [JS userSearch.ts, AE-search]. `query` with `accountId` is a 400 [AE-search].
async fn site_search(State(shared): Fake, Query(params): Query<SiteSearchParams>) -> Response {
    if params.query.is_some() && params.account_id.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "query and accountId cannot be combined",
        );
    }
    let Some(query) = params.query else {
        return error(StatusCode::BAD_REQUEST, "query is required");
    };
    let limit = params.max_results.unwrap_or(DEFAULT_SITE_MAX_RESULTS);
    let state = shared.lock();
    if !state.browse_users {
        return Json(json!([])).into_response();
    }
    let found: Vec<Value> = state
        .prefix_matches(&query)
        .into_iter()
        .filter_map(|id| state.accounts.get(id))
        .filter(|account| !account.is_gone() && FakeState::site_active(account))
        .take(limit)
        .map(site_user_json)
        .collect();
    Json(found).into_response()
}

/// `emailAddress` only where the user's privacy settings show it [AE-search].
fn site_user_json(account: &FakeAccount) -> Value {
    let mut user = json!({
        "accountId": account.account_id,
        "accountType": account.account_type,
        "displayName": account.display_name,
        "active": FakeState::site_active(account),
    });
    if let Some(email) = &account.email {
        user["emailAddress"] = json!(email);
    }
    user
}

#[derive(Deserialize)]
struct AccountIdParam {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
}

/// One user by id, active or not: 403 without "Browse users and groups", 404 not found
/// [AE-users]. A revoked customer reads `active: false` and a deleted one 404 (both
/// UNCONFIRMED; the references are kept [KB-rev]).
async fn site_user(State(shared): Fake, Query(params): Query<AccountIdParam>) -> Response {
    let Some(account_id) = params.account_id else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let state = shared.lock();
    if !state.browse_users {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have the permission to browse users.",
        );
    }
    match state.accounts.get(&account_id).filter(|a| !a.is_gone()) {
        Some(account) => Json(site_user_json(account)).into_response(),
        None => error(StatusCode::NOT_FOUND, "User not found"),
    }
}

#[derive(Deserialize)]
struct PageParams {
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

/// Get all users: active and inactive users "that have an Atlassian account", at most 1000
/// a page (default 50); 403 without the permission, unlike the search [JS users.ts,
/// AE-users]. Whether portal-only customers are listed is UNCONFIRMED: they are not here.
async fn all_users(State(shared): Fake, Query(params): Query<PageParams>) -> Response {
    let state = shared.lock();
    if !state.browse_users {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have the permission to browse users.",
        );
    }
    let limit = params.max_results.unwrap_or(50).min(1000);
    let users: Vec<Value> = state
        .accounts
        .values()
        .filter(|account| account.account_type != "customer" && !account.is_gone())
        .skip(params.start_at.unwrap_or(0))
        .take(limit)
        .map(site_user_json)
        .collect();
    Json(users).into_response()
}

/// The site user whose credentials these are; 401 is handled at the front door [AE-my].
async fn myself() -> Response {
    Json(json!({
        "accountId": "bot-account",
        "accountType": "atlassian",
        "active": true,
        "displayName": "offboard bot",
        "emailAddress": SITE_EMAIL,
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PermissionsParam {
    permissions: Option<String>,
}

/// `permissions` is required; an empty or unknown key is a 400; each key answers
/// `havePermission` [AE-perm, JS permissions.ts].
async fn my_permissions(State(shared): Fake, Query(params): Query<PermissionsParam>) -> Response {
    let keys = params.permissions.unwrap_or_default();
    if keys.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "The permissions parameter is required.",
        );
    }
    let state = shared.lock();
    let mut permissions = serde_json::Map::new();
    for key in keys.split(',') {
        let have = match key {
            "USER_PICKER" => state.browse_users,
            "ADMINISTER" => true,
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    &format!("Unrecognized permission: {key}"),
                );
            }
        };
        permissions.insert(
            key.to_owned(),
            json!({ "id": key, "key": key, "name": key, "type": "GLOBAL",
                    "description": "", "havePermission": have }),
        );
    }
    Json(json!({ "permissions": permissions })).into_response()
}

/// A service desk by id: 404 when missing [AE-sd].
async fn service_desk(State(shared): Fake, Path(desk): Path<String>) -> Response {
    if !shared.lock().service_desks.contains(&desk) {
        return error(StatusCode::NOT_FOUND, "The service desk does not exist.");
    }
    Json(
        json!({ "id": desk, "projectId": format!("1{desk}"), "projectName": format!("Desk {desk}"),
                 "projectKey": format!("SD{desk}"), "_links": {} }),
    )
    .into_response()
}

/// A customer organization by id: 404 when missing [AE-org].
async fn organization(State(shared): Fake, Path(organization): Path<String>) -> Response {
    if !shared.lock().organizations.contains(&organization) {
        return error(StatusCode::NOT_FOUND, "The organization does not exist.");
    }
    Json(
        json!({ "id": organization, "name": format!("Org {organization}"),
                 "scimManaged": false, "_links": {} }),
    )
    .into_response()
}

/// The org: 404 for another org id [ORG, JS-admin orgs.ts].
async fn org(Path(org): Path<String>) -> Response {
    if org != ORG_ID {
        return error(StatusCode::NOT_FOUND, "Organization not found");
    }
    Json(
        json!({ "data": { "id": ORG_ID, "type": "orgs", "attributes": { "name": "Example" },
                           "relationships": {}, "links": {} } }),
    )
    .into_response()
}

/// The org's directories, one page of one [JS-admin directory.ts]; errors are UNCONFIRMED,
/// another org id gets 404.
async fn directories(Path(org): Path<String>) -> Response {
    if org != ORG_ID {
        return error(StatusCode::NOT_FOUND, "Organization not found");
    }
    Json(
        json!({ "data": [{ "directoryId": DIRECTORY_ID, "name": "Example", "icon": null }],
                 "links": { "self": null, "prev": null, "next": null } }),
    )
    .into_response()
}

/// One directory user with its statuses; 404 when not in the directory [AEA].
async fn directory_user(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
) -> Response {
    if !is_our_directory(&org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    match state.directory_account(&account_id) {
        Some(account) => Json(json!({ "data": directory_user_json(account) })).into_response(),
        None => error(StatusCode::NOT_FOUND, "user not found"),
    }
}

/// A group: 404 when missing (errors UNCONFIRMED) [JS-admin groups.ts].
async fn group(
    State(shared): Fake,
    Path((org, dir, group)): Path<(String, String, String)>,
) -> Response {
    if !is_our_directory(&org, &dir) || !shared.lock().groups.contains(&group) {
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    Json(
        json!({ "data": { "id": group, "name": format!("group {group}"), "description": null,
                           "directoryId": DIRECTORY_ID, "externalSynced": false } }),
    )
    .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectorySearch {
    emails: Option<Vec<String>>,
    search_term: Option<String>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Exact (case-insensitive) email filter or fuzzy search term, paginated with an opaque
/// cursor in `links.next` that comes back in the body.
async fn directory_search(
    State(shared): Fake,
    Path((org, dir)): Path<(String, String)>,
    Json(search): Json<DirectorySearch>,
) -> Response {
    if !is_our_directory(&org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    if search.emails.is_some() && search.search_term.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "emails and searchTerm are mutually exclusive",
        );
    }
    let Some(offset) = parse_cursor(search.cursor.as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "invalid cursor");
    };
    let state = shared.lock();
    let page_size = search.limit.unwrap_or(state.directory_page_size);
    let candidates: Vec<&FakeAccount> = match &search.emails {
        Some(emails) => {
            let ids: BTreeSet<&String> = emails
                .iter()
                .filter_map(|email| state.by_email.get(&email.to_ascii_lowercase()))
                .flatten()
                .collect();
            ids.into_iter()
                .filter_map(|id| state.accounts.get(id))
                .collect()
        }
        None => state.accounts.values().collect(),
    };
    let matching: Vec<&FakeAccount> = candidates
        .into_iter()
        .filter(|account| account.in_directory_now())
        .filter(|account| directory_filter(account, &search))
        .collect();
    let data: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(page_size)
        .map(|account| directory_user_json(account))
        .collect();
    let next =
        (offset + page_size < matching.len()).then(|| format!("page:{}", offset + page_size));
    Json(json!({ "data": data, "links": { "next": next } })).into_response()
}

fn parse_cursor(cursor: Option<&str>) -> Option<usize> {
    match cursor {
        None => Some(0),
        Some(cursor) => cursor.strip_prefix("page:")?.parse().ok(),
    }
}

fn directory_filter(account: &FakeAccount, search: &DirectorySearch) -> bool {
    let email = account.email.as_deref().unwrap_or_default();
    if let Some(emails) = &search.emails {
        return emails
            .iter()
            .any(|wanted| wanted.eq_ignore_ascii_case(email));
    }
    search.search_term.as_ref().is_none_or(|term| {
        contains_ignoring_case(email, term) || contains_ignoring_case(&account.display_name, term)
    })
}

/// Case-insensitive (ASCII) substring test without allocating, for `searchTerm`, which scans
/// every account (offboard itself only searches by exact email).
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    let (haystack, needle) = (haystack.as_bytes(), needle.as_bytes());
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|window| window.eq_ignore_ascii_case(needle))
}

/// `accountStatus` is active|inactive|closed; the composite `status` carries suspended,
/// deactivated and for_deletion [JS-admin models].
fn directory_user_json(account: &FakeAccount) -> Value {
    let (status, account_status, membership_status) = match account.status {
        FakeStatus::Suspended => ("suspended", "active", "suspended"),
        FakeStatus::Deactivated => ("deactivated", "inactive", "active"),
        FakeStatus::PendingDelete => ("for_deletion", "inactive", "active"),
        _ => ("active", "active", "active"),
    };
    json!({
        "accountId": account.account_id,
        "accountType": account.account_type,
        "status": status,
        "accountStatus": account_status,
        "membershipStatus": membership_status,
        "claimStatus": "managed",
        "email": account.email,
        "name": account.display_name,
    })
}

fn is_our_directory(org: &str, dir: &str) -> bool {
    org == ORG_ID && dir == DIRECTORY_ID
}

/// Delete user: 204; 404 "user not found" [AE-users]. It deletes revoked customers too: it is
/// what Atlassian's KB bulk-deletes portal customers with [KB-del].
async fn delete_user(State(shared): Fake, Query(params): Query<AccountIdParam>) -> Response {
    let Some(account_id) = params.account_id else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let mut state = shared.lock();
    let Some(account) = state.live_account(&account_id) else {
        return error(StatusCode::NOT_FOUND, "user not found");
    };
    account.status = FakeStatus::Deleted;
    StatusCode::NO_CONTENT.into_response()
}

/// Revoke portal-only access: 204; 404 "The account ID is invalid" [AE-cust]. A repeat is
/// UNCONFIRMED: here the revoked account is no longer valid for it, 404.
async fn revoke_portal_access(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let mut state = shared.lock();
    let Some(account) = state
        .live_account(&account_id)
        .filter(|account| !account.portal_access_revoked)
    else {
        return error(StatusCode::NOT_FOUND, "The account ID is invalid.");
    };
    if account.account_type != "customer" {
        return error(StatusCode::BAD_REQUEST, "not a portal-only customer");
    }
    account.portal_access_revoked = true;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountIds {
    account_ids: Vec<String>,
}

/// The service desk customer endpoints are experimental and want `X-ExperimentalApi: opt-in`
/// [AE-sd, JS-v5]; what happens without it is UNCONFIRMED, so it is refused here.
fn experimental_refused(headers: &HeaderMap) -> Option<Response> {
    let opted_in = headers
        .get("x-experimentalapi")
        .is_some_and(|value| value.as_bytes().eq_ignore_ascii_case(b"opt-in"));
    (!opted_in).then(|| {
        error(
            StatusCode::BAD_REQUEST,
            "This is an experimental API: opt in",
        )
    })
}

/// 204 even for accounts that were not on the desk; 404 when the desk is missing [AE-sd].
async fn remove_from_service_desk(
    State(shared): Fake,
    Path(desk): Path<String>,
    headers: HeaderMap,
    Json(body): Json<AccountIds>,
) -> Response {
    if let Some(refused) = experimental_refused(&headers) {
        return refused;
    }
    let mut state = shared.lock();
    if !state.service_desks.contains(&desk) {
        return error(StatusCode::NOT_FOUND, "service desk not found");
    }
    for account_id in &body.account_ids {
        if let Some(account) = state.accounts.get_mut(account_id) {
            account.service_desks.remove(&desk);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// 204; 404 when the organization is missing [AE-org]. A non-member or deleted user: 204 or
/// 400 is UNCONFIRMED, so 400 "one or more user names are invalid" here.
async fn remove_from_organization(
    State(shared): Fake,
    Path(organization): Path<String>,
    Json(body): Json<AccountIds>,
) -> Response {
    let mut state = shared.lock();
    if !state.organizations.contains(&organization) {
        return error(StatusCode::NOT_FOUND, "organization not found");
    }
    let all_members = body.account_ids.iter().all(|id| {
        state
            .accounts
            .get(id)
            .is_some_and(|a| !a.is_gone() && a.organizations.contains(&organization))
    });
    if !all_members {
        return error(
            StatusCode::BAD_REQUEST,
            "One or more user names are invalid.",
        );
    }
    for account_id in &body.account_ids {
        if let Some(account) = state.accounts.get_mut(account_id) {
            account.organizations.remove(&organization);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// "The account isn't eligible for the requested action" [UM].
fn not_eligible() -> Response {
    error(
        StatusCode::CONFLICT,
        "The account isn't eligible for the requested action.",
    )
}

/// A POST that wants a JSON body: a bodyless one is refused with 415 (UNCONFIRMED: one
/// public script reports it for suspend [AEA]; the lifecycle message is optional [UM]).
fn bodyless_refused(headers: &HeaderMap, body: &Bytes) -> Option<Response> {
    let json = headers
        .get(CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"));
    let parses = serde_json::from_slice::<Value>(body).is_ok_and(|value| value.is_object());
    (!json || !parses).then(|| error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type"))
}

/// Lifecycle disable: 204; 404; 409 when not eligible, a repeat included [UM].
async fn lifecycle_disable(
    State(shared): Fake,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = bodyless_refused(&headers, &body) {
        return refused;
    }
    let mut state = shared.lock();
    let Some(account) = state.managed_account(&account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    if matches!(
        account.status,
        FakeStatus::Deactivated | FakeStatus::PendingDelete
    ) {
        return not_eligible();
    }
    account.status = FakeStatus::Deactivated;
    StatusCode::NO_CONTENT.into_response()
}

/// Lifecycle delete: **200** `{"message":"Success"}`; 404; 409 when not eligible, a repeat
/// inside the 14-day grace period included [UM, TUT].
async fn lifecycle_delete(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let mut state = shared.lock();
    let Some(account) = state.managed_account(&account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    if account.status == FakeStatus::PendingDelete {
        return not_eligible();
    }
    account.status = FakeStatus::PendingDelete;
    Json(json!({ "message": "Success" })).into_response()
}

/// Directory suspend: 204; 404 [AEA]. A repeat is UNCONFIRMED: 409 here.
async fn suspend(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = bodyless_refused(&headers, &body) {
        return refused;
    }
    change_directory_account(&shared, &org, &dir, &account_id, |account| {
        let eligible = account.status == FakeStatus::Active;
        if eligible {
            account.status = FakeStatus::Suspended;
        }
        eligible
    })
}

/// Directory restore: 204; 404 [AEA]. Restoring an account that is not suspended is
/// UNCONFIRMED: 409 here.
async fn restore(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = bodyless_refused(&headers, &body) {
        return refused;
    }
    change_directory_account(&shared, &org, &dir, &account_id, |account| {
        let eligible = account.status == FakeStatus::Suspended;
        if eligible {
            account.status = FakeStatus::Active;
        }
        eligible
    })
}

/// Directory remove: 204; 404 [AEA].
async fn remove_from_directory(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
) -> Response {
    change_directory_account(&shared, &org, &dir, &account_id, |account| {
        account.status = FakeStatus::Removed;
        account.in_directory = false;
        account.groups.clear();
        true
    })
}

/// Group membership removal: 2xx without a body, exact code UNCONFIRMED (200 here)
/// [JS-admin]. 404 for a missing group, and, UNCONFIRMED, also for an account that is not a
/// member, so that only a read of the group tells the two apart.
async fn remove_from_group(
    State(shared): Fake,
    Path((org, dir, group, account_id)): Path<(String, String, String, String)>,
) -> Response {
    if !is_our_directory(&org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    if !state.groups.contains(&group) {
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    let removed = state
        .directory_account(&account_id)
        .is_some_and(|account| account.groups.remove(&group));
    if removed {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "membership not found")
    }
}

fn change_directory_account(
    shared: &Shared,
    org: &str,
    dir: &str,
    account_id: &str,
    // `false`: the account is not eligible for the change (409).
    change: impl FnOnce(&mut FakeAccount) -> bool,
) -> Response {
    if !is_our_directory(org, dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    let Some(account) = state.directory_account(account_id) else {
        return error(StatusCode::NOT_FOUND, "user not found in directory");
    };
    if change(account) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_eligible()
    }
}
