//! What accounts own in Jira: filters and dashboards, found by owner, and what deleting a
//! managed account does to them (the "Hand-over before removal" section of the reference;
//! source keys in `tests/support/SOURCES.md`).

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use super::accounts::FakeState;
use super::{Fake, Shared, error};

/// `maxResults` of both searches when none is given [SPEC].
const DEFAULT_MAX_RESULTS: usize = 50;

/// A filter or a dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeItem {
    pub owner: String,
    /// Shared with the site user (a group or project of theirs, or public). A private item
    /// of someone else is invisible to the searches, except filters with
    /// `overrideSharePermissions=true` [SPEC].
    pub shared: bool,
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/filter/search", get(filter_search))
        .route("/rest/api/3/dashboard/search", get(dashboard_search))
}

#[derive(Deserialize)]
struct SearchParams {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
    owner: Option<String>,
    #[serde(rename = "overrideSharePermissions")]
    override_share_permissions: Option<bool>,
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

/// `GET /rest/api/3/filter/search`: offset pages `{startAt, maxResults, total, isLast,
/// values}`; only the filters the caller can see unless `overrideSharePermissions=true`, which
/// the site user (an admin here) may use; `owner` with `accountId` is a 400 [SPEC, GOJ].
async fn filter_search(State(shared): Fake, Query(params): Query<SearchParams>) -> Response {
    let everything = params.override_share_permissions == Some(true);
    let state = shared.lock();
    search(&state.filters, &params, everything)
}

/// `GET /rest/api/3/dashboard/search`: the same page shape; only visible dashboards, with no
/// documented override [SPEC].
async fn dashboard_search(State(shared): Fake, Query(params): Query<SearchParams>) -> Response {
    let state = shared.lock();
    search(&state.dashboards, &params, false)
}

fn search(
    items: &std::collections::BTreeMap<String, FakeItem>,
    params: &SearchParams,
    everything: bool,
) -> Response {
    if params.account_id.is_some() && params.owner.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "owner and accountId cannot be combined",
        );
    }
    let found: Vec<(&String, &FakeItem)> = items
        .iter()
        .filter(|(_, item)| {
            params
                .account_id
                .as_ref()
                .is_none_or(|id| &item.owner == id)
        })
        .filter(|(_, item)| everything || item.shared)
        .collect();
    let start = params.start_at.unwrap_or(0);
    let max = params
        .max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, 100);
    let values: Vec<_> = found
        .iter()
        .skip(start)
        .take(max)
        .map(|(id, item)| json!({ "id": id, "owner": { "accountId": item.owner } }))
        .collect();
    Json(json!({
        "startAt": start,
        "maxResults": max,
        "total": found.len(),
        "isLast": start + values.len() >= found.len(),
        "values": values,
    }))
    .into_response()
}

/// Deleting a managed account deletes the filters it owns, even shared ones; its dashboards
/// are trashed [DEL-M] or deleted [DEL]: the less convenient, deleted.
pub(super) fn delete_owned(state: &mut FakeState, account_id: &str) {
    state.filters.retain(|_, item| item.owner != account_id);
    state.dashboards.retain(|_, item| item.owner != account_id);
}
