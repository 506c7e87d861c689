//! The admin endpoints (the organization, its directory and groups, and the user lifecycle),
//! with the admin API key.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{DIRECTORY_ID, Fake, FakeAccount, FakeStatus, ORG_ID, Shared, error};

pub(super) fn routes() -> Router<Arc<Shared>> {
    let directory = "/admin/v2/orgs/{org}/directories/{dir}";
    Router::new()
        .route("/admin/v1/orgs/{org}", get(org))
        .route("/admin/v2/orgs/{org}/directories", get(directories))
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

/// Lifecycle enable: 204, no body needed; 404; 409 "not eligible", a deleted account
/// included (it needs cancel-delete first) [UM]. Enabling an active account is UNCONFIRMED:
/// 409 here, as for the other lifecycle repeats.
async fn lifecycle_enable(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    back_to_active(&shared, &account_id, FakeStatus::Deactivated, || {
        StatusCode::NO_CONTENT.into_response()
    })
}

/// Lifecycle cancel-delete: 200 with a result message, only inside the 14 days of grace
/// (restores and activates the account); 404 [UM]. Outside the grace period the account is
/// gone (404 here); an account not scheduled for deletion is UNCONFIRMED: 409 here.
async fn lifecycle_cancel_delete(State(shared): Fake, Path(account_id): Path<String>) -> Response {
    back_to_active(&shared, &account_id, FakeStatus::PendingDelete, || {
        Json(json!({ "message": "Success" })).into_response()
    })
}

/// A lifecycle call that makes an account in `from` active again: 404 for no such managed
/// account, 409 "not eligible" in any other state.
fn back_to_active(
    shared: &Shared,
    account_id: &str,
    from: FakeStatus,
    done: impl FnOnce() -> Response,
) -> Response {
    let mut state = shared.lock();
    let Some(account) = state.managed_account(account_id) else {
        return error(StatusCode::NOT_FOUND, "account not found");
    };
    if account.status != from {
        return not_eligible();
    }
    account.status = FakeStatus::Active;
    done()
}

/// Group membership add: 2xx without a body [JS-admin groups.ts], 204 here; 404 for a
/// missing group and (UNCONFIRMED) for an account not in the group's directory. A repeat
/// for a member is UNCONFIRMED: 409 here, the less convenient answer.
async fn add_to_group(
    State(shared): Fake,
    Path((org, dir, group)): Path<(String, String, String)>,
    Json(body): Json<Value>,
) -> Response {
    if !is_our_directory(&org, &dir) {
        return error(StatusCode::NOT_FOUND, "directory not found");
    }
    let mut state = shared.lock();
    if !state.groups.contains(&group) {
        return error(StatusCode::NOT_FOUND, "group not found");
    }
    let Some(account_id) = body["accountId"].as_str() else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let Some(account) = state.directory_account(account_id) else {
        return error(StatusCode::NOT_FOUND, "user not found in directory");
    };
    if account.groups.insert(group) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        error(
            StatusCode::CONFLICT,
            "user is already a member of the group",
        )
    }
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
