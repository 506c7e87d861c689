//! What accounts own in Jira, filters and dashboards: the item both are, the offset page both
//! searches answer, and what deleting a managed account does to them (the "Hand-over before
//! removal" section of the reference; source keys in `tests/support/SOURCES.md`). `filters`
//! and `dashboards` serve their endpoints.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::FakeState;
use super::{SITE_ACCOUNT_ID, error};

/// `maxResults` of both searches when none is given [SPEC].
const DEFAULT_MAX_RESULTS: usize = 50;
/// The largest page of both searches. The spec names none; 100, the cap of Jira's other offset
/// listings, is the less convenient plausible one (UNCONFIRMED).
const MAX_RESULTS_CAP: usize = 100;

/// A filter or a dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeItem {
    pub owner: String,
    /// Shared with the site user (a group or project of theirs, or public). A private item
    /// of someone else is invisible to the searches, except filters with
    /// `overrideSharePermissions=true` [SPEC].
    pub shared: bool,
    /// An owner cannot own two filters of one name [SPEC].
    pub name: String,
    /// The site user may not change this item's owner: a per-item permission refusal.
    pub refuses_edit: bool,
    /// How many owner changes succeeded.
    pub owner_changes: usize,
}

impl FakeItem {
    pub(super) fn new(owner: &str, shared: bool, name: String) -> FakeItem {
        FakeItem {
            owner: owner.to_owned(),
            shared,
            name,
            refuses_edit: false,
            owner_changes: 0,
        }
    }

    /// What the site user sees: "only visible" items, those shared with them or their own
    /// [SPEC].
    pub(super) fn visible(&self) -> bool {
        self.shared || self.owner == SITE_ACCOUNT_ID
    }

    pub(super) fn to_json(&self, id: &str) -> Value {
        json!({ "id": id, "name": self.name, "owner": { "accountId": self.owner } })
    }
}

#[derive(Deserialize)]
pub(super) struct SearchParams {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
    owner: Option<String>,
    #[serde(rename = "overrideSharePermissions")]
    pub(super) override_share_permissions: Option<bool>,
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    /// Dashboards only: `active` (the default), `archived` or `deleted` (trashed) [SPEC].
    pub(super) status: Option<String>,
}

/// An offset page `{startAt, maxResults, total, isLast, values}` of the items owned by
/// `accountId` among `items`; `owner` with `accountId` is a 400 [SPEC, GOJ].
pub(super) fn search<'a>(
    items: impl Iterator<Item = (&'a String, &'a FakeItem)>,
    params: &SearchParams,
) -> Response {
    if params.account_id.is_some() && params.owner.is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            "owner and accountId cannot be combined",
        );
    }
    let found: Vec<(&String, &FakeItem)> = items
        .filter(|(_, item)| {
            params
                .account_id
                .as_ref()
                .is_none_or(|id| &item.owner == id)
        })
        .collect();
    let start = params.start_at.unwrap_or(0);
    let max = params
        .max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, MAX_RESULTS_CAP);
    let values: Vec<Value> = found
        .iter()
        .skip(start)
        .take(max)
        .map(|(id, item)| item.to_json(id))
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

/// Whether `account_id` already owns an item called `name`, other than `except`.
pub(super) fn owns_name<'a>(
    mut items: impl Iterator<Item = (&'a String, &'a FakeItem)>,
    account_id: &str,
    name: &str,
    except: &str,
) -> bool {
    items.any(|(id, item)| id != except && item.owner == account_id && item.name == name)
}

/// Deleting a managed account deletes the filters it owns, even shared ones; its dashboards
/// are trashed [DEL-M] or deleted [DEL]: the less convenient, deleted (a 2025 answer saying
/// both remain [COMM] is the weakest source).
pub(super) fn delete_owned(state: &mut FakeState, account_id: &str) {
    state.filters.retain(|_, item| item.owner != account_id);
    state
        .dashboards
        .retain(|_, dashboard| dashboard.item.owner != account_id);
}
