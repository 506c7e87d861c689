//! Jira dashboards: found by owner and status, handed over in bulk, read back one by one (the
//! "Hand-over before removal" section of the reference).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::accounts::FakeState;
use super::content::{FakeItem, SearchParams, owns_name, search};
use super::{Fake, FakeAtlassian, SITE_ACCOUNT_ID, Shared, error};

/// The most dashboards one bulk edit takes [SPEC].
const MAX_BULK_DASHBOARDS: usize = 100;

/// The `status` a dashboard search filters on [SPEC].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DashboardStatus {
    Active,
    Archived,
    /// In the trash.
    Deleted,
}

impl DashboardStatus {
    fn parse(status: Option<&str>) -> Option<DashboardStatus> {
        match status {
            None | Some("active") => Some(DashboardStatus::Active),
            Some("archived") => Some(DashboardStatus::Archived),
            Some("deleted") => Some(DashboardStatus::Deleted),
            Some(_) => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeDashboard {
    pub item: FakeItem,
    pub status: DashboardStatus,
}

impl FakeAtlassian {
    /// An active dashboard `id` owned by `owner`, `shared` with the site user or private,
    /// named `Dashboard {id}`.
    pub fn add_dashboard(&self, id: &str, owner: &str, shared: bool) {
        let dashboard = FakeDashboard {
            item: FakeItem::new(owner, shared, format!("Dashboard {id}")),
            status: DashboardStatus::Active,
        };
        self.shared
            .lock()
            .dashboards
            .insert(id.to_owned(), dashboard);
    }

    /// A shared dashboard whose owner the site user may not change: the bulk edit answers
    /// an entity error for it.
    pub fn add_dashboard_refusing(&self, id: &str, owner: &str) {
        self.add_dashboard(id, owner, true);
        self.edit_dashboard(id, |dashboard| dashboard.item.refuses_edit = true);
    }

    pub fn name_dashboard(&self, id: &str, name: &str) {
        self.edit_dashboard(id, |dashboard| dashboard.item.name = name.to_owned());
    }

    /// Archives or trashes (`Deleted`) dashboard `id`, or makes it active again.
    pub fn set_dashboard_status(&self, id: &str, status: DashboardStatus) {
        self.edit_dashboard(id, |dashboard| dashboard.status = status);
    }

    pub fn dashboard(&self, id: &str) -> Option<FakeDashboard> {
        self.shared.lock().dashboards.get(id).cloned()
    }

    fn edit_dashboard(&self, id: &str, edit: impl FnOnce(&mut FakeDashboard)) {
        if let Some(dashboard) = self.shared.lock().dashboards.get_mut(id) {
            edit(dashboard);
        }
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/dashboard/search", get(dashboard_search))
        .route("/rest/api/3/dashboard/bulk/edit", put(bulk_edit))
        .route("/rest/api/3/dashboard/{id}", get(dashboard))
}

/// `GET /rest/api/3/dashboard/search`: the filter search's page shape; only visible
/// dashboards, with no documented override; `status` = active (default), archived or deleted
/// (trashed) [SPEC].
async fn dashboard_search(State(shared): Fake, Query(params): Query<SearchParams>) -> Response {
    let Some(status) = DashboardStatus::parse(params.status.as_deref()) else {
        return error(StatusCode::BAD_REQUEST, "status is not valid");
    };
    let state = shared.lock();
    let items = state
        .dashboards
        .iter()
        .filter(|(_, dashboard)| dashboard.status == status && dashboard.item.visible())
        .map(|(id, dashboard)| (id, &dashboard.item));
    search(items, &params)
}

/// `GET /rest/api/3/dashboard/{id}`: the read-back of an owner change; 404 if the caller
/// cannot see it [SPEC]. Whether a trashed dashboard reads back is UNCONFIRMED: 404 here.
async fn dashboard(State(shared): Fake, Path(id): Path<String>) -> Response {
    let state = shared.lock();
    match state.dashboards.get(&id) {
        Some(dashboard)
            if dashboard.item.visible() && dashboard.status != DashboardStatus::Deleted =>
        {
            Json(dashboard.item.to_json(&id)).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "The dashboard was not found."),
    }
}

/// What a `changeOwner` bulk edit asks.
struct ChangeOwner {
    ids: Vec<String>,
    new_owner: String,
    autofix_name: bool,
    as_admin: bool,
}

/// `PUT /rest/api/3/dashboard/bulk/edit` with `changeOwner`: 200 `{action, entityErrors}`,
/// each dashboard that failed named inside the 200; at most 100 dashboards; the caller owns
/// them or acts as admin with `extendAdminPermissions`; `autofixName` renames a duplicate
/// [SPEC]. The other actions (permissions) are not offboard's and answer 400 here.
async fn bulk_edit(State(shared): Fake, body: String) -> Response {
    let request = match parse_change_owner(&body) {
        Ok(request) => request,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    let mut state = shared.lock();
    let mut entity_errors = Map::new();
    for id in &request.ids {
        if let Err(message) = change_owner(&mut state, id, &request) {
            let failure = json!({ "errorMessages": [message], "errors": {} });
            entity_errors.insert(id.clone(), failure);
        }
    }
    Json(json!({ "action": "changeOwner", "entityErrors": entity_errors })).into_response()
}

fn parse_change_owner(body: &str) -> Result<ChangeOwner, &'static str> {
    let body: Value = serde_json::from_str(body).map_err(|_| "The request body is not valid.")?;
    if body.get("action").and_then(Value::as_str) != Some("changeOwner") {
        return Err("Only the changeOwner action is supported.");
    }
    let ids: Option<Vec<String>> = body
        .get("entityIds")
        .and_then(Value::as_array)
        .ok_or("entityIds is required.")?
        .iter()
        .map(|id| match id {
            Value::Number(n) => Some(n.to_string()),
            Value::String(s) => Some(s.clone()),
            _ => None,
        })
        .collect();
    let ids = ids.ok_or("entityIds must be dashboard ids.")?;
    if ids.is_empty() || ids.len() > MAX_BULK_DASHBOARDS {
        return Err("entityIds must name between 1 and 100 dashboards.");
    }
    let details = body
        .get("changeOwnerDetails")
        .ok_or("changeOwnerDetails is required.")?;
    let new_owner = details.get("newOwner").and_then(Value::as_str);
    // Both fields are required by the spec [SPEC].
    let autofix_name = details.get("autofixName").and_then(Value::as_bool);
    let (Some(new_owner), Some(autofix_name)) = (new_owner, autofix_name) else {
        return Err("changeOwnerDetails needs newOwner and autofixName.");
    };
    let as_admin = body.get("extendAdminPermissions").and_then(Value::as_bool) == Some(true);
    Ok(ChangeOwner {
        ids,
        new_owner: new_owner.to_owned(),
        autofix_name,
        as_admin,
    })
}

/// One dashboard of a bulk change. An unknown new owner fails every dashboard inside the 200
/// rather than the whole request: how the real one answers is UNCONFIRMED, and a failure a
/// client must look for inside a 200 is the less convenient. A trashed dashboard cannot be
/// handed over (UNCONFIRMED, the less convenient).
fn change_owner(state: &mut FakeState, id: &str, request: &ChangeOwner) -> Result<(), String> {
    if !state.known_user(&request.new_owner) {
        return Err(format!("The user {} does not exist.", request.new_owner));
    }
    let name = {
        let Some(dashboard) = state
            .dashboards
            .get(id)
            .filter(|dashboard| dashboard.status != DashboardStatus::Deleted)
        else {
            return Err(format!("The dashboard with id {id} does not exist."));
        };
        let item = &dashboard.item;
        if item.refuses_edit || (!request.as_admin && item.owner != SITE_ACCOUNT_ID) {
            return Err(format!(
                "You do not have permission to change the owner of dashboard {id}."
            ));
        }
        item.name.clone()
    };
    let taken = |candidate: &str| {
        let items = state.dashboards.iter().map(|(id, d)| (id, &d.item));
        owns_name(items, &request.new_owner, candidate, id)
    };
    let mut new_name = name.clone();
    if taken(&name) {
        if !request.autofix_name {
            return Err(format!(
                "The new owner already owns a dashboard named {name}."
            ));
        }
        new_name = (1..)
            .map(|n| format!("{name} ({n})"))
            .find(|candidate| !taken(candidate))
            .unwrap_or(name);
    }
    if let Some(dashboard) = state.dashboards.get_mut(id) {
        dashboard.item.owner = request.new_owner.clone();
        dashboard.item.name = new_name;
        dashboard.item.owner_changes += 1;
    }
    Ok(())
}
