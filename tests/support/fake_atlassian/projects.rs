//! Jira projects and their components: found with their leads, and their leads replaced (the
//! "Hand-over before removal" section of the reference).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::FakeState;
use super::{Fake, FakeAtlassian, Shared, error};

/// `maxResults` of the project search when none is given, and its cap [SPEC].
const DEFAULT_MAX_RESULTS: usize = 50;
const MAX_RESULTS_CAP: usize = 100;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeProject {
    pub key: String,
    pub id: String,
    pub name: String,
    pub lead: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeComponent {
    pub id: String,
    pub name: String,
    /// The project's key.
    pub project: String,
    pub lead: Option<String>,
}

#[derive(Default)]
pub(super) struct Projects {
    by_key: BTreeMap<String, FakeProject>,
    components: BTreeMap<String, FakeComponent>,
    /// Keys of the projects the site user may not administer.
    refused: BTreeSet<String>,
}

impl Projects {
    pub(super) fn lead(&self, key: &str) -> Option<String> {
        self.by_key.get(key).map(|project| project.lead.clone())
    }

    /// The project with this id or key.
    fn find(&self, id_or_key: &str) -> Option<&FakeProject> {
        self.by_key
            .get(id_or_key)
            .or_else(|| self.by_key.values().find(|project| project.id == id_or_key))
    }
}

impl FakeAtlassian {
    /// A project `key` with numeric `id`, named `Project {key}`, led by `lead`.
    pub fn add_project(&self, key: &str, id: &str, lead: &str) {
        let project = FakeProject {
            key: key.to_owned(),
            id: id.to_owned(),
            name: format!("Project {key}"),
            lead: lead.to_owned(),
        };
        self.shared
            .lock()
            .projects
            .by_key
            .insert(key.to_owned(), project);
    }

    /// A component `id` of project `project_key`, named `Component {id}`.
    pub fn add_component(&self, id: &str, project_key: &str, lead: Option<&str>) {
        let component = FakeComponent {
            id: id.to_owned(),
            name: format!("Component {id}"),
            project: project_key.to_owned(),
            lead: lead.map(str::to_owned),
        };
        let mut state = self.shared.lock();
        state.projects.components.insert(id.to_owned(), component);
    }

    pub fn project_lead(&self, key: &str) -> Option<String> {
        self.shared.lock().projects.lead(key)
    }

    /// `None` for an unknown component or one without a lead.
    pub fn component_lead(&self, id: &str) -> Option<String> {
        let state = self.shared.lock();
        state.projects.components.get(id)?.lead.clone()
    }

    /// The site user may not administer project `key`: the search with `action=edit` leaves
    /// it out, and changing its lead or its components' answers 403.
    pub fn refuse_project_edit(&self, key: &str) {
        self.shared.lock().projects.refused.insert(key.to_owned());
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/project/search", get(project_search))
        .route("/rest/api/3/project/{project}", put(change_project_lead))
        .route("/rest/api/3/project/{project}/components", get(components))
        .route("/rest/api/3/component/{id}", put(change_component_lead))
}

#[derive(Deserialize)]
struct SearchParams {
    expand: Option<String>,
    action: Option<String>,
    #[serde(rename = "startAt")]
    start_at: Option<usize>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
}

/// `GET /rest/api/3/project/search`: offset pages of at most 100; `action=edit` keeps the
/// projects the caller can administer; `lead` only with `expand=lead`; no filter by lead; 404
/// when nothing matches [SPEC].
async fn project_search(State(shared): Fake, Query(params): Query<SearchParams>) -> Response {
    let state = shared.lock();
    let edit_only = params.action.as_deref() == Some("edit");
    let found: Vec<&FakeProject> = state
        .projects
        .by_key
        .values()
        .filter(|project| !(edit_only && state.projects.refused.contains(&project.key)))
        .collect();
    if found.is_empty() {
        return error(StatusCode::NOT_FOUND, "No projects were found.");
    }
    let with_lead = params
        .expand
        .as_deref()
        .is_some_and(|expand| expand.split(',').any(|e| e.trim() == "lead"));
    let start = params.start_at.unwrap_or(0);
    let max = params
        .max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, MAX_RESULTS_CAP);
    let values: Vec<Value> = found
        .iter()
        .skip(start)
        .take(max)
        .map(|project| project_json(project, with_lead))
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

fn project_json(project: &FakeProject, with_lead: bool) -> Value {
    let mut json = json!({ "id": project.id, "key": project.key, "name": project.name });
    if with_lead {
        json["lead"] = json!({ "accountId": project.lead });
    }
    json
}

/// The `leadAccountId` of a body: `Err` for a malformed body, `Ok(None)` when absent.
fn lead_in(body: &str) -> Result<Option<String>, ()> {
    let body: Value = serde_json::from_str(body).map_err(|_| ())?;
    match body.as_object().ok_or(())?.get("leadAccountId") {
        None => Ok(None),
        Some(Value::String(lead)) => Ok(Some(lead.clone())),
        Some(_) => Err(()),
    }
}

fn bad_body() -> Response {
    error(StatusCode::BAD_REQUEST, "The request body is not valid.")
}

/// `PUT /rest/api/3/project/{projectIdOrKey}` `{"leadAccountId"}`: 200 the project; 400 user
/// not found; 403 without *Administer projects*; 404 [SPEC].
async fn change_project_lead(
    State(shared): Fake,
    Path(project): Path<String>,
    body: String,
) -> Response {
    let mut state = shared.lock();
    let Some(key) = state.projects.find(&project).map(|p| p.key.clone()) else {
        return error(StatusCode::NOT_FOUND, "No project could be found.");
    };
    if state.projects.refused.contains(&key) {
        return forbidden();
    }
    let lead = match lead_in(&body) {
        Ok(lead) => lead,
        Err(()) => return bad_body(),
    };
    if let Some(lead) = lead {
        if !state.known_user(&lead) {
            return error(StatusCode::BAD_REQUEST, "The user does not exist.");
        }
        if let Some(project) = state.projects.by_key.get_mut(&key) {
            project.lead = lead;
        }
    }
    match state.projects.by_key.get(&key) {
        Some(project) => Json(project_json(project, true)).into_response(),
        None => error(StatusCode::NOT_FOUND, "No project could be found."),
    }
}

fn forbidden() -> Response {
    error(
        StatusCode::FORBIDDEN,
        "You do not have permission to administer this project.",
    )
}

/// `GET /rest/api/3/project/{projectIdOrKey}/components`: every component with its lead;
/// 404 unknown project [SPEC].
async fn components(State(shared): Fake, Path(project): Path<String>) -> Response {
    let state = shared.lock();
    let Some(project) = state.projects.find(&project) else {
        return error(StatusCode::NOT_FOUND, "No project could be found.");
    };
    let components: Vec<Value> = state
        .projects
        .components
        .values()
        .filter(|component| component.project == project.key)
        .map(|component| component_json(&state, component))
        .collect();
    Json(components).into_response()
}

fn component_json(state: &FakeState, component: &FakeComponent) -> Value {
    let project_id = state
        .projects
        .by_key
        .get(&component.project)
        .map(|project| project.id.clone());
    let mut json = json!({
        "id": component.id,
        "name": component.name,
        "project": component.project,
        "projectId": project_id,
        "assigneeType": "PROJECT_DEFAULT",
    });
    if let Some(lead) = &component.lead {
        json["lead"] = json!({ "accountId": lead });
        json["leadAccountId"] = json!(lead);
    }
    json
}

/// `PUT /rest/api/3/component/{id}` `{"leadAccountId"}` (`""` removes the lead): 200 the
/// component; 400 user not found; 403 without *Administer projects*; 404 [SPEC].
async fn change_component_lead(
    State(shared): Fake,
    Path(id): Path<String>,
    body: String,
) -> Response {
    let mut state = shared.lock();
    let Some(project) = state
        .projects
        .components
        .get(&id)
        .map(|c| c.project.clone())
    else {
        return error(StatusCode::NOT_FOUND, "The component was not found.");
    };
    if state.projects.refused.contains(&project) {
        return forbidden();
    }
    let lead = match lead_in(&body) {
        Ok(lead) => lead,
        Err(()) => return bad_body(),
    };
    if let Some(lead) = lead {
        if !lead.is_empty() && !state.known_user(&lead) {
            return error(StatusCode::BAD_REQUEST, "The user does not exist.");
        }
        if let Some(component) = state.projects.components.get_mut(&id) {
            component.lead = (!lead.is_empty()).then_some(lead);
        }
    }
    match state.projects.components.get(&id) {
        Some(component) => Json(component_json(&state, component)).into_response(),
        None => error(StatusCode::NOT_FOUND, "The component was not found."),
    }
}
