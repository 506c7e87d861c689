//! The admin endpoints (the organization, its directory and groups, and the user lifecycle),
//! with the admin API key.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AccountStatus, DIRECTORY_ID, Fake, FakeAccount, Membership, ORG_ID, Shared, error};

pub(super) fn routes() -> Router<Arc<Shared>> {
    let directory = "/admin/v2/orgs/{org}/directories/{dir}";
    Router::new()
        .route("/admin/v1/orgs/{org}", get(org))
        .route("/admin/v2/orgs/{org}/directories", get(directories))
        .route("/users/{account_id}/manage/profile", get(profile))
        .route(
            "/users/{account_id}/manage/lifecycle/disable",
            post(lifecycle_disable),
        )
        .route(
            "/users/{account_id}/manage/lifecycle/delete",
            post(lifecycle_delete),
        )
        .route(
            "/users/{account_id}/manage/lifecycle/enable",
            post(lifecycle_enable),
        )
        .route(
            "/users/{account_id}/manage/lifecycle/cancel-delete",
            post(lifecycle_cancel_delete),
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
        .route(
            &format!("{directory}/groups/{{group}}/memberships"),
            post(add_to_group),
        )
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

#[derive(Deserialize)]
struct DirectoriesParams {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
}

/// The org's directories, one page [JS-admin directory.ts]; with `accountId`, only those the
/// account is a member of (the parameter is documented, its exact meaning UNCONFIRMED).
/// Errors are UNCONFIRMED; another org id gets 404.
async fn directories(
    State(shared): Fake,
    Path(org): Path<String>,
    Query(params): Query<DirectoriesParams>,
) -> Response {
    if org != ORG_ID {
        return error(StatusCode::NOT_FOUND, "Organization not found");
    }
    let state = shared.lock();
    let member_of = params
        .account_id
        .as_ref()
        .map(|id| state.accounts.get(id).filter(|a| !a.is_gone()));
    let data: Vec<Value> = state
        .directories
        .iter()
        .filter(|dir| match &member_of {
            None => true,
            Some(account) => account.is_some_and(|a| a.directories.contains_key(*dir)),
        })
        .map(|dir| json!({ "directoryId": dir, "name": format!("Directory {dir}"), "icon": null }))
        .collect();
    Json(json!({ "data": data, "links": { "self": null, "prev": null, "next": null } }))
        .into_response()
}

/// One directory user with its statuses; 404 when not in the directory [AEA]. `-` reads
/// across every directory [JS-admin parameters].
async fn directory_user(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
) -> Response {
    if !is_readable_directory(&shared, &org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    match state.directory_account(&dir, &account_id) {
        Some(account) => Json(json!({ "data": directory_user_json(account) })).into_response(),
        None => error(StatusCode::NOT_FOUND, "user not found"),
    }
}

/// The account-level profile: `account.account_status` active|inactive|closed, whatever the
/// directories [JS-um user.ts, accountStatus.ts]; 404 for no such managed account [UM]. An
/// account scheduled for deletion is "shown as temporarily deactivated" [UM, TUT]: it reads
/// `inactive`, so the profile alone cannot tell it from a deactivated one.
async fn profile(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let mut state = shared.lock();
    let Some(account) = state.managed_account(&account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    Json(json!({ "account": {
        "account_id": account.account_id,
        "account_type": account.account_type,
        "account_status": account.account_status_name(),
        "email": account.email,
        "name": account.display_name,
    } }))
    .into_response()
}

/// A group: 404 when missing (errors UNCONFIRMED) [JS-admin groups.ts].
async fn group(
    State(shared): Fake,
    Path((org, dir, group)): Path<(String, String, String)>,
) -> Response {
    if !is_readable_directory(&shared, &org, &dir) || !shared.lock().groups.contains(&group) {
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
    account_ids: Option<Vec<String>>,
    group_ids: Option<Vec<String>>,
    cursor: Option<String>,
    limit: Option<usize>,
}

/// Exact (case-insensitive) email filter or fuzzy search term, narrowed by `accountIds` and
/// `groupIds`, paginated with an opaque cursor in `links.next` that comes back in the body
/// [JS-admin users.ts].
async fn directory_search(
    State(shared): Fake,
    Path((org, dir)): Path<(String, String)>,
    Json(search): Json<DirectorySearch>,
) -> Response {
    if !is_readable_directory(&shared, &org, &dir) {
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
    let candidates: Vec<&FakeAccount> = match (&search.emails, &search.account_ids) {
        (Some(emails), _) => {
            let ids: BTreeSet<&String> = emails
                .iter()
                .filter_map(|email| state.by_email.get(&email.to_ascii_lowercase()))
                .flatten()
                .collect();
            ids.into_iter()
                .filter_map(|id| state.accounts.get(id))
                .collect()
        }
        (None, Some(ids)) => ids.iter().filter_map(|id| state.accounts.get(id)).collect(),
        (None, None) => state.accounts.values().collect(),
    };
    let matching: Vec<&FakeAccount> = candidates
        .into_iter()
        .filter(|account| account.readable_in(&dir))
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
    if let Some(ids) = &search.account_ids
        && !ids.contains(&account.account_id)
    {
        return false;
    }
    if let Some(groups) = &search.group_ids
        && !groups.iter().any(|group| account.groups.contains(group))
    {
        return false;
    }
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

/// `accountStatus` is the account's own; `membershipStatus` is org-wide; the composite
/// `status` is derived from both [JS-admin getDirectoryUserDetails, status.ts,
/// membershipStatus.ts, accountStatus.ts].
fn directory_user_json(account: &FakeAccount) -> Value {
    json!({
        "accountId": account.account_id,
        "accountType": account.account_type,
        "status": account.composite_status(),
        "accountStatus": account.account_status_name(),
        "membershipStatus": account.membership_status(),
        "claimStatus": "managed",
        "email": account.email,
        "name": account.display_name,
    })
}

/// Reads take a directory of the org, or `-` for all of them [JS-admin parameters].
fn is_readable_directory(shared: &Shared, org: &str, dir: &str) -> bool {
    org == ORG_ID && (dir == "-" || shared.lock().directories.contains(dir))
}

/// Writes take a real directory id; `-` is documented for reads only, and what a write with
/// it answers is UNCONFIRMED: 404 here, the answer a careless reading takes for "done".
fn is_writable_directory(shared: &Shared, org: &str, dir: &str) -> bool {
    org == ORG_ID && dir != "-" && shared.lock().directories.contains(dir)
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

/// A lifecycle call on the account itself, whatever its directories [UM]: 404 for no such
/// managed account; `change` answers `false` for "not eligible" (409).
fn lifecycle(
    shared: &Shared,
    account_id: &str,
    change: impl FnOnce(&mut FakeAccount) -> bool,
    done: impl FnOnce() -> Response,
) -> Response {
    let mut state = shared.lock();
    let Some(account) = state.managed_account(account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    if change(account) {
        done()
    } else {
        not_eligible()
    }
}

/// Lifecycle disable: 204; 404; 409 when not eligible, a repeat included [UM]. Membership
/// is left as it was: a suspended account that is deactivated reads `deactivated`
/// [JS-admin status.ts].
async fn lifecycle_disable(
    State(shared): Fake,
    Path(account_id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = bodyless_refused(&headers, &body) {
        return refused;
    }
    let eligible = |account: &mut FakeAccount| {
        let eligible = account.account_status == AccountStatus::Active && !account.for_deletion;
        if eligible {
            account.account_status = AccountStatus::Inactive;
        }
        eligible
    };
    lifecycle(&shared, &account_id, eligible, || {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Lifecycle delete: **200** `{"message":"Success"}`; 404; 409 when not eligible, a repeat
/// inside the 14-day grace period included [UM, TUT]. The account is "shown as temporarily
/// deactivated" meanwhile [UM]: inactive, scheduled for deletion.
///
/// The filters and dashboards the account owns go at once (`content::delete_owned`): the
/// sources do not say they wait for the grace period, and at once is the less convenient.
async fn lifecycle_delete(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let mut state = shared.lock();
    let Some(account) = state.managed_account(&account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    if account.for_deletion {
        return not_eligible();
    }
    account.for_deletion = true;
    account.account_status = AccountStatus::Inactive;
    super::content::delete_owned(&mut state, &account_id);
    Json(json!({ "message": "Success" })).into_response()
}

/// Lifecycle enable: 204, no body needed; 404; 409 "not eligible", a deleted account
/// included (it needs cancel-delete first) [UM]. Enabling an active account is UNCONFIRMED:
/// 409 here, as for the other lifecycle repeats. Directory membership is not touched: an
/// account enabled while suspended reads `suspended` [JS-admin status.ts].
async fn lifecycle_enable(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let eligible = |account: &mut FakeAccount| {
        let eligible = account.account_status == AccountStatus::Inactive && !account.for_deletion;
        if eligible {
            account.account_status = AccountStatus::Active;
        }
        eligible
    };
    lifecycle(&shared, &account_id, eligible, || {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Lifecycle cancel-delete: 200 with a result message, only inside the 14 days of grace; it
/// "restore[s] and activate[s]" the account [UM]. An account not scheduled for deletion is
/// UNCONFIRMED (no 409 documented): 409 here. Whether directory membership comes back is
/// UNCONFIRMED; the fake never took it away.
async fn lifecycle_cancel_delete(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    let eligible = |account: &mut FakeAccount| {
        let eligible = account.for_deletion;
        if eligible {
            account.for_deletion = false;
            account.account_status = AccountStatus::Active;
        }
        eligible
    };
    lifecycle(&shared, &account_id, eligible, || {
        Json(json!({ "message": "Success" })).into_response()
    })
}

/// The 409 of a group membership add for someone already in the group, measured live
/// [BATON helper.go, spec]; another code is a user or licence limit.
pub const ALREADY_A_MEMBER: &str = "ADMIN-UAM-409-2";

/// Group membership add: 2xx without a body [JS-admin groups.ts], 204 here; 404 four-way
/// (org, directory, group or user not found) [BATON spec]; 409 `ADMIN-UAM-409-2` for a
/// member already [BATON helper.go].
async fn add_to_group(
    State(shared): Fake,
    Path((org, dir, group)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if !is_writable_directory(&shared, &org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    if !state.groups.contains(&group) {
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    let Some(account_id) = body["accountId"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let Some(account) = state.directory_account(&dir, account_id) else {
        return error(StatusCode::NOT_FOUND, "user not found in directory");
    };
    if account.groups.insert(group) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        let body = json!({ "errors": [{ "code": ALREADY_A_MEMBER, "status": "409",
                                        "title": "User is already a member of the group" }] });
        (StatusCode::CONFLICT, Json(body)).into_response()
    }
}

/// Directory suspend: 204; 404 [AEA]; only this directory's membership changes
/// [JS-admin]. A repeat is UNCONFIRMED: 409 here.
async fn suspend(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(refused) = bodyless_refused(&headers, &body) {
        return refused;
    }
    let target = dir.clone();
    change_directory_account(&shared, &org, &dir, &account_id, move |account| {
        let membership = account.directories.get_mut(&target);
        let eligible = membership.as_deref() == Some(&Membership::Active);
        if let Some(membership) = membership.filter(|_| eligible) {
            *membership = Membership::Suspended;
        }
        eligible
    })
}

/// Directory restore: 204; 404 [AEA]. Restoring a membership that is not suspended is
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
    let target = dir.clone();
    change_directory_account(&shared, &org, &dir, &account_id, move |account| {
        let membership = account.directories.get_mut(&target);
        let eligible = membership.as_deref() == Some(&Membership::Suspended);
        if let Some(membership) = membership.filter(|_| eligible) {
            *membership = Membership::Active;
        }
        eligible
    })
}

/// Directory remove: 204; 404 [AEA]. The account lives on outside the directory [GOA] and
/// loses the directory's groups [JS-admin].
async fn remove_from_directory(
    State(shared): Fake,
    Path((org, dir, account_id)): Path<(String, String, String)>,
) -> Response {
    let target = dir.clone();
    change_directory_account(&shared, &org, &dir, &account_id, move |account| {
        account.directories.remove(&target);
        account.groups.clear();
        true
    })
}

/// Group membership removal: 2xx without a body, exact code UNCONFIRMED (200 here)
/// [JS-admin]. 404 = "Organization, directory, group, or user not found" [BATON spec]: a
/// missing group and an account that is not a member answer alike, so that only a read of
/// the group's membership tells the two apart.
async fn remove_from_group(
    State(shared): Fake,
    Path((org, dir, group, account_id)): Path<(String, String, String, String)>,
) -> Response {
    if !is_writable_directory(&shared, &org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    if !state.groups.contains(&group) {
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    let removed = state
        .directory_account(&dir, &account_id)
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
    if !is_writable_directory(shared, org, dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    let Some(account) = state.directory_account(dir, account_id) else {
        return error(StatusCode::NOT_FOUND, "user not found in directory");
    };
    if change(account) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_eligible()
    }
}
