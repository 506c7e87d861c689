//! The site endpoints (`/rest/…`, the Jira and service desk REST APIs), with the site
//! user's Basic auth.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::FakeState;
use super::{
    DeskChange, Fake, FakeAccount, SITE_ACCOUNT_ID, SITE_EMAIL, Shared, error, put_account,
};

const DEFAULT_SITE_MAX_RESULTS: usize = 50;
/// `limit` of the service desk API listings when none is given [AE-sd].
const DEFAULT_LISTING_LIMIT: usize = 50;
/// `maxResults` of the bulk user read when none is given [SPEC].
const DEFAULT_BULK_MAX_RESULTS: usize = 10;

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/user/search", get(site_search))
        .route("/rest/api/3/users/search", get(all_users))
        .route("/rest/api/3/user", get(site_user).delete(delete_user))
        .route("/rest/api/3/user/bulk", get(users_bulk))
        .route("/rest/api/3/myself", get(myself))
        .route("/rest/api/3/mypermissions", get(my_permissions))
        .route("/rest/servicedeskapi/servicedesk", get(service_desks))
        .route("/rest/servicedeskapi/servicedesk/{desk}", get(service_desk))
        .route(
            "/rest/servicedeskapi/organization/{organization}",
            get(organization),
        )
        .route(
            "/rest/servicedeskapi/customer/user/{account_id}/revoke-portal-only-access",
            put(revoke_portal_access),
        )
        .route(
            "/rest/servicedeskapi/servicedesk/{desk}/customer",
            get(desk_customers)
                .delete(remove_from_service_desk)
                .post(add_to_service_desk),
        )
        .route(
            "/rest/servicedeskapi/organization/{organization}/user",
            get(organization_users)
                .delete(remove_from_organization)
                .post(add_to_organization),
        )
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

/// Bulk get users, `x-experimental`: a page `{self, nextPage, maxResults, startAt, total,
/// isLast, values}` of the users named by repeated `accountId` parameters; `maxResults`
/// defaults to 10; 400 without `accountId`; needs only "Permission to access Jira", so no
/// 403 for a site user without "Browse users and groups" [SPEC, GOJ]. UNCONFIRMED, and the
/// less convenient answer here: pages stop at `bulk_page_cap` (default 10) whatever
/// `maxResults` asks, and an id nobody has (or a deleted account) is silently left out. Also
/// UNCONFIRMED: portal-only customers are returned (else nothing could tell them from
/// licensed accounts), with `accountType: customer` [SPEC User.accountType];
/// `set_bulk_omits_customers` gives the other answer.
async fn users_bulk(State(shared): Fake, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let mut ids: Vec<String> = Vec::new();
    let (mut start_at, mut max_results) = (0, DEFAULT_BULK_MAX_RESULTS);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        let number = || value.parse::<usize>();
        match name.as_ref() {
            "accountId" if !ids.contains(&value.to_string()) => ids.push(value.into_owned()),
            "startAt" => match number() {
                Ok(n) => start_at = n,
                Err(_) => return error(StatusCode::BAD_REQUEST, "startAt must be a number"),
            },
            "maxResults" => match number() {
                Ok(n) => max_results = n,
                Err(_) => return error(StatusCode::BAD_REQUEST, "maxResults must be a number"),
            },
            _ => {}
        }
    }
    if ids.is_empty() {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    }
    let page_size = max_results.clamp(1, shared.bulk_page_cap.load(Ordering::Relaxed));
    let omits_customers = shared.bulk_omits_customers.load(Ordering::Relaxed);
    let state = shared.lock();
    let found: Vec<&FakeAccount> = ids
        .iter()
        .filter_map(|id| state.accounts.get(id))
        .filter(|account| !account.is_gone())
        .filter(|account| !(omits_customers && account.account_type == "customer"))
        .collect();
    let total = found.len();
    let values: Vec<Value> = found
        .into_iter()
        .skip(start_at)
        .take(page_size)
        .map(site_user_json)
        .collect();
    let is_last = start_at + values.len() >= total;
    let page_url = |start: usize| {
        let mut url = form_urlencoded::Serializer::new(String::new());
        for id in &ids {
            url.append_pair("accountId", id);
        }
        url.append_pair("startAt", &start.to_string());
        url.append_pair("maxResults", &page_size.to_string());
        format!("/rest/api/3/user/bulk?{}", url.finish())
    };
    let mut page = json!({
        "self": page_url(start_at),
        "maxResults": page_size,
        "startAt": start_at,
        "total": total,
        "isLast": is_last,
        "values": values,
    });
    if !is_last {
        page["nextPage"] = json!(page_url(start_at + page_size));
    }
    Json(page).into_response()
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
        "accountId": SITE_ACCOUNT_ID,
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
    Json(service_desk_json(&desk)).into_response()
}

fn service_desk_json(desk: &str) -> Value {
    json!({ "id": desk, "projectId": format!("1{desk}"), "projectName": format!("Desk {desk}"),
            "projectKey": format!("SD{desk}"), "_links": {} })
}

#[derive(Deserialize)]
struct StartLimit {
    start: Option<usize>,
    limit: Option<usize>,
}

/// Every service desk, paged by `start` and `limit` (default 50); permission "Any", so no
/// 403; not experimental [AE-sd servicedesk getServiceDesks, JS servicedesk.ts]. The largest
/// `limit` served is UNCONFIRMED: pages stop at `listing_page_cap` (default 50).
async fn service_desks(State(shared): Fake, Query(page): Query<StartLimit>) -> Response {
    let state = shared.lock();
    let desks: Vec<&String> = state.service_desks.iter().collect();
    Json(state.listing_page(desks, &page, |desk| service_desk_json(desk))).into_response()
}

#[derive(Deserialize)]
struct DeskCustomerParams {
    query: Option<String>,
    start: Option<usize>,
    limit: Option<usize>,
}

/// A desk's customers, paged like the desk list; experimental; 404 when the desk is missing
/// [AE-sd getCustomers, JS-v5]. Everyone on the desk is listed, managed accounts too (which
/// kinds of account the real list holds is UNCONFIRMED). A revoked customer is listed with
/// `active: false` and a deleted one not at all (both UNCONFIRMED; a revoke keeps the
/// references [KB-rev]). `emailAddress` only where privacy settings show it. Offset paging
/// over a list in account id order (the order is UNCONFIRMED [AE-sd]; members of an
/// organization are "ordered by accountId" [JSM-SDK OrganizationApi.md]), so a change before
/// the offset between two pages shifts what the next page holds; `after_next_desk_page`
/// makes such a change right after a page.
///
/// `query` "is matched against customers' `displayName`, `name`, or `email`", "Jo" and "Smi"
/// both matching "John Smith" [AE-sd getCustomers]: whether that is a prefix of a word or any
/// substring is not said, so it is the wider of the two here, case-insensitive substring,
/// which hands a caller looking for one exact email the most near misses to drop.
async fn desk_customers(
    State(shared): Fake,
    Path(desk): Path<String>,
    Query(params): Query<DeskCustomerParams>,
    headers: HeaderMap,
) -> Response {
    if let Some(refused) = experimental_refused(&headers) {
        return refused;
    }
    let mut state = shared.lock();
    if !state.service_desks.contains(&desk) {
        return error(StatusCode::NOT_FOUND, "The service desk does not exist.");
    }
    let query = params.query.unwrap_or_default().to_lowercase();
    let customers: Vec<&FakeAccount> = state
        .accounts
        .values()
        .filter(|account| !account.is_gone() && account.service_desks.contains(&desk))
        .filter(|account| query.is_empty() || desk_query_matches(account, &query))
        .collect();
    let page = StartLimit {
        start: params.start,
        limit: params.limit,
    };
    let served = state.listing_page(customers, &page, desk_customer_json);
    for change in shared.take_desk_changes(&desk) {
        match change {
            DeskChange::Remove(account_id) => {
                if let Some(account) = state.accounts.get_mut(&account_id) {
                    account.service_desks.remove(&desk);
                }
            }
            DeskChange::Put(account) => put_account(&mut state, account),
        }
    }
    Json(served).into_response()
}

/// `query` (lower-cased) within the display name, the name (the account id, for a
/// portal-only customer [AE-sd]) or the email, whatever the case.
fn desk_query_matches(account: &FakeAccount, query: &str) -> bool {
    let within = |text: &str| text.to_lowercase().contains(query);
    within(&account.display_name)
        || within(&account.account_id)
        || account.email.as_deref().is_some_and(within)
}

/// A desk customer list entry has no `accountType` [AE-sd getCustomers]: which kind of
/// account it is cannot be read from the list.
fn desk_customer_json(account: &FakeAccount) -> Value {
    let mut user = site_user_json(account);
    if let Some(fields) = user.as_object_mut() {
        fields.remove("accountType");
    }
    user
}

impl FakeState {
    /// One page of a service desk API listing: `{size, start, limit, isLastPage, values}`
    /// [AE-sd]. `limit` defaults to 50 and is cut to `listing_page_cap`. With
    /// `empty_listing_pages` it is a broken server: no values, and never the last page.
    fn listing_page<T>(&self, all: Vec<T>, page: &StartLimit, json: impl Fn(T) -> Value) -> Value {
        let start = page.start.unwrap_or(0);
        let limit = page
            .limit
            .unwrap_or(DEFAULT_LISTING_LIMIT)
            .clamp(1, self.listing_page_cap);
        if self.empty_listing_pages {
            return json!({ "size": 0, "start": start, "limit": limit, "isLastPage": false,
                           "values": [], "_links": {} });
        }
        let total = all.len();
        let values: Vec<Value> = all.into_iter().skip(start).take(limit).map(json).collect();
        json!({
            "size": values.len(),
            "start": start,
            "limit": limit,
            "isLastPage": start + values.len() >= total,
            "values": values,
            "_links": {},
        })
    }
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

/// An organization's members, ordered by accountId and paged like the other listings: the
/// documented way "to determine if a user is associated with an organization"
/// [JSM-SDK OrganizationApi.md]; 404 when the organization is missing [AE-org].
async fn organization_users(
    State(shared): Fake,
    Path(organization): Path<String>,
    Query(page): Query<StartLimit>,
) -> Response {
    let state = shared.lock();
    if !state.organizations.contains(&organization) {
        return error(StatusCode::NOT_FOUND, "The organization does not exist.");
    }
    // `accounts` is a BTreeMap by id: the members come out in accountId order.
    let members: Vec<&FakeAccount> = state
        .accounts
        .values()
        .filter(|account| !account.is_gone() && account.organizations.contains(&organization))
        .collect();
    Json(state.listing_page(members, &page, desk_customer_json)).into_response()
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
    account.deleted = true;
    StatusCode::NO_CONTENT.into_response()
}

/// Revoke portal-only access: 204. An invalid account id answers 400 in the current spec
/// [JSM-SDK CustomerApi.md] (404 in an older slice [AE-cust]); a repeat is UNCONFIRMED: here
/// a revoked account is no longer valid for it, 400 like an unknown id, so that only a read
/// of the user tells a repeat from a mistake.
async fn revoke_portal_access(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let mut state = shared.lock();
    let Some(account) = state
        .live_account(&account_id)
        .filter(|account| !account.portal_access_revoked)
    else {
        return error(StatusCode::BAD_REQUEST, "The account ID is invalid.");
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

/// Add customers to a service desk: 204, also when already on it; 404 when the desk is
/// missing; the experimental header as for removal [JS servicedesk.ts, AE-sd]. An account
/// that does not exist is UNCONFIRMED: 400 here.
async fn add_to_service_desk(
    State(shared): Fake,
    Path(desk): Path<String>,
    headers: HeaderMap,
    Json(body): Json<AccountIds>,
) -> Response {
    if let Some(refused) = experimental_refused(&headers) {
        return refused;
    }
    add_members(
        &shared,
        &body,
        |state| state.service_desks.contains(&desk),
        |a| {
            a.service_desks.insert(desk.clone());
        },
    )
}

/// Add users to an organization: 204; 404 when the organization is missing [JS
/// organization.ts, AE-org]. An account that does not exist is UNCONFIRMED: 400 here.
async fn add_to_organization(
    State(shared): Fake,
    Path(organization): Path<String>,
    Json(body): Json<AccountIds>,
) -> Response {
    let exists = |state: &FakeState| state.organizations.contains(&organization);
    add_members(&shared, &body, exists, |a| {
        a.organizations.insert(organization.clone());
    })
}

/// Adds every account of `body` with `add`: 404 when the desk or organization does not
/// `exist`, 400 when one of the accounts does not, and nothing is added then.
fn add_members(
    shared: &Shared,
    body: &AccountIds,
    exists: impl FnOnce(&FakeState) -> bool,
    mut add: impl FnMut(&mut FakeAccount),
) -> Response {
    let mut state = shared.lock();
    if !exists(&state) {
        return error(StatusCode::NOT_FOUND, "not found");
    }
    let all_exist = body
        .account_ids
        .iter()
        .all(|id| state.accounts.get(id).is_some_and(|a| !a.is_gone()));
    if !all_exist {
        return error(
            StatusCode::BAD_REQUEST,
            "one or more user names are invalid",
        );
    }
    for account_id in &body.account_ids {
        if let Some(account) = state.accounts.get_mut(account_id) {
            add(account);
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

/// 204; 404 when the organization is missing; 400 "one or more user names are invalid" for
/// an account that does not exist [AE-org]. A non-member is UNCONFIRMED (204 or 400): 204
/// here, the answer that reads like a removal.
async fn remove_from_organization(
    State(shared): Fake,
    Path(organization): Path<String>,
    Json(body): Json<AccountIds>,
) -> Response {
    let mut state = shared.lock();
    if !state.organizations.contains(&organization) {
        return error(StatusCode::NOT_FOUND, "organization not found");
    }
    let all_exist = body
        .account_ids
        .iter()
        .all(|id| state.accounts.get(id).is_some_and(|a| !a.is_gone()));
    if !all_exist {
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
