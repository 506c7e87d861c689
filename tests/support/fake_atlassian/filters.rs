//! Jira filters: found by owner, and handed over to a new owner (the "Hand-over before
//! removal" section of the reference).

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde_json::Value;

use super::content::{FakeItem, SearchParams, owns_name, search};
use super::{Fake, FakeAtlassian, Shared, error};

impl FakeAtlassian {
    /// A filter `id` owned by `owner`, `shared` with the site user or private, named
    /// `Filter {id}`.
    pub fn add_filter(&self, id: &str, owner: &str, shared: bool) {
        let item = FakeItem::new(owner, shared, format!("Filter {id}"));
        self.shared.lock().filters.insert(id.to_owned(), item);
    }

    /// A shared filter whose owner the site user may not change: its owner change answers
    /// 403 [SPEC].
    pub fn add_filter_refusing(&self, id: &str, owner: &str) {
        self.add_filter(id, owner, true);
        if let Some(item) = self.shared.lock().filters.get_mut(id) {
            item.refuses_edit = true;
        }
    }

    /// Renames filter `id` (its owner cannot own two filters of one name).
    pub fn name_filter(&self, id: &str, name: &str) {
        if let Some(item) = self.shared.lock().filters.get_mut(id) {
            item.name = name.to_owned();
        }
    }

    pub fn filter(&self, id: &str) -> Option<FakeItem> {
        self.shared.lock().filters.get(id).cloned()
    }

    /// How many times filter `id`'s owner was changed (0 for an unknown filter).
    pub fn filter_owner_changes(&self, id: &str) -> usize {
        self.filter(id).map_or(0, |item| item.owner_changes)
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/filter/search", get(filter_search))
        .route("/rest/api/3/filter/{id}/owner", put(change_owner))
}

/// `GET /rest/api/3/filter/search`: only the filters the caller can see unless
/// `overrideSharePermissions=true`, which the site user (an admin here) may use; `expand`
/// is accepted and changes nothing here [SPEC, GOJ].
async fn filter_search(State(shared): Fake, Query(params): Query<SearchParams>) -> Response {
    let everything = params.override_share_permissions == Some(true);
    let state = shared.lock();
    let items = state
        .filters
        .iter()
        .filter(|(_, item)| everything || item.visible());
    search(items, &params)
}

/// `PUT /rest/api/3/filter/{id}/owner` `{"accountId"}`: 204; 404 for a filter the caller
/// cannot see or an unknown new owner; 403 without permission on the filter; 400 when the
/// new owner already owns a filter of that name [SPEC]. A malformed body is a 400 as
/// everywhere in the spec. `overrideSharePermissions` has no counterpart here, so a private
/// filter of someone else stays a 404, as admins long found [60899].
async fn change_owner(State(shared): Fake, Path(id): Path<String>, body: String) -> Response {
    let new_owner = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|body| body.get("accountId")?.as_str().map(str::to_owned));
    let Some(new_owner) = new_owner else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let mut state = shared.lock();
    let Some(item) = state.filters.get(&id).filter(|item| item.visible()) else {
        return error(StatusCode::NOT_FOUND, "The filter was not found.");
    };
    if !state.known_user(&new_owner) {
        return error(StatusCode::NOT_FOUND, "The new owner was not found.");
    }
    if item.refuses_edit {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have permission to change the owner of this filter.",
        );
    }
    if owns_name(state.filters.iter(), &new_owner, &item.name, &id) {
        return error(
            StatusCode::BAD_REQUEST,
            "The new owner already owns a filter with this name.",
        );
    }
    if let Some(item) = state.filters.get_mut(&id) {
        item.owner = new_owner;
        item.owner_changes += 1;
    }
    StatusCode::NO_CONTENT.into_response()
}
