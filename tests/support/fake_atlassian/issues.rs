//! Jira issues: the open issues of an account found with the JQL search, and reassigned one by
//! one (`bulk` reassigns many). The "Hand-over before removal" section of the reference.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::accounts::FakeState;
use super::jql::{self, Jql};
use super::{Fake, FakeAtlassian, Shared, error};

/// `maxResults` of the search when none is given [SPEC].
const DEFAULT_MAX_RESULTS: usize = 50;
/// The largest page when only `id`/`key` are asked for [SPEC].
const MAX_RESULTS_IDS_ONLY: usize = 5000;
/// The largest page otherwise: the spec gives none; 100 is the less convenient plausible
/// one (UNCONFIRMED).
const MAX_RESULTS_WITH_FIELDS: usize = 100;
/// Issue ids count up from here, numeric like Jira's.
const FIRST_ISSUE_ID: u64 = 10000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeIssue {
    pub key: String,
    /// Numeric, as Jira's; the bulk task reports issues by it [SPEC].
    pub id: String,
    pub project: String,
    pub assignee: Option<String>,
    /// In the status category Done (resolved).
    pub done: bool,
}

#[derive(Default)]
pub(super) struct Issues {
    by_key: BTreeMap<String, FakeIssue>,
    key_by_id: BTreeMap<String, String>,
    /// Keys of the issues the site user may not edit.
    refused: BTreeSet<String>,
    /// Every write of an assignee, by key, the same value included.
    assignee_changes: BTreeMap<String, usize>,
}

impl Issues {
    /// The key of the issue with this id or key.
    pub(super) fn key_of(&self, id_or_key: &str) -> Option<&str> {
        if let Some((key, _)) = self.by_key.get_key_value(id_or_key) {
            return Some(key);
        }
        self.key_by_id.get(id_or_key).map(String::as_str)
    }

    pub(super) fn get(&self, key: &str) -> Option<&FakeIssue> {
        self.by_key.get(key)
    }

    pub(super) fn refuses_edit(&self, key: &str) -> bool {
        self.refused.contains(key)
    }

    pub(super) fn set_assignee(&mut self, key: &str, assignee: Option<String>) {
        if let Some(issue) = self.by_key.get_mut(key) {
            issue.assignee = assignee;
            *self.assignee_changes.entry(key.to_owned()).or_default() += 1;
        }
    }
}

impl FakeAtlassian {
    /// An issue `key` (`PROJ-12`) in `project`, with the next numeric id.
    pub fn add_issue(&self, key: &str, project: &str, assignee: Option<&str>, done: bool) {
        let mut state = self.shared.lock();
        let issues = &mut state.issues;
        let id = (FIRST_ISSUE_ID + issues.by_key.len() as u64).to_string();
        let issue = FakeIssue {
            key: key.to_owned(),
            id: id.clone(),
            project: project.to_owned(),
            assignee: assignee.map(str::to_owned),
            done,
        };
        issues.key_by_id.insert(id, key.to_owned());
        issues.by_key.insert(key.to_owned(), issue);
    }

    pub fn issue(&self, key: &str) -> Option<FakeIssue> {
        self.shared.lock().issues.by_key.get(key).cloned()
    }

    /// The site user may not edit issue `key`: a bulk task fails it, a single reassign
    /// answers 403.
    pub fn refuse_issue_edit(&self, key: &str) {
        self.shared.lock().issues.refused.insert(key.to_owned());
    }

    /// How many times issue `key`'s assignee was written, by any call.
    pub fn issue_assignee_changes(&self, key: &str) -> usize {
        let state = self.shared.lock();
        state.issues.assignee_changes.get(key).copied().unwrap_or(0)
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/search/jql", get(search_get).post(search_post))
        .route("/rest/api/3/search", any(removed_search))
        .route("/rest/api/3/issue/{key}/assignee", put(assign))
}

/// The old search was deprecated (CHANGE-2046) [SPEC] and now answers 410 [MCP70].
async fn removed_search() -> Response {
    error(StatusCode::GONE, "The requested API has been removed")
}

/// A search request, from the query (`GET`) or the JSON body (`POST`).
#[derive(Deserialize, Default)]
struct SearchRequest {
    jql: Option<String>,
    #[serde(default)]
    fields: Vec<String>,
    #[serde(rename = "maxResults")]
    max_results: Option<usize>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
}

/// `fields` may come comma-separated or repeated in the query.
async fn search_get(State(shared): Fake, Query(pairs): Query<Vec<(String, String)>>) -> Response {
    let mut request = SearchRequest::default();
    for (name, value) in pairs {
        match name.as_str() {
            "jql" => request.jql = Some(value),
            "fields" => request
                .fields
                .extend(value.split(',').map(|f| f.trim().to_owned())),
            "maxResults" => match value.parse() {
                Ok(max) => request.max_results = Some(max),
                Err(_) => return error(StatusCode::BAD_REQUEST, "maxResults is not a number"),
            },
            "nextPageToken" => request.next_page_token = Some(value),
            _ => {}
        }
    }
    search(&shared.lock(), &request)
}

async fn search_post(State(shared): Fake, body: String) -> Response {
    match serde_json::from_str::<SearchRequest>(&body) {
        Ok(request) => search(&shared.lock(), &request),
        Err(_) => error(StatusCode::BAD_REQUEST, "The request body is not valid."),
    }
}

/// `/rest/api/3/search/jql`: 200 `{issues, nextPageToken, isLast}`, no `nextPageToken` on
/// the last page and no `total`; `maxResults` 50 by default, up to 5000 when only `id`/`key`
/// are asked for [SPEC]. Issues in key order.
///
/// The token here is an offset into the current answer, so an issue that leaves the answer
/// between two pages (reassigned meanwhile) shifts the later ones back and one of them is
/// skipped. What the real token holds is UNCONFIRMED; this is the less convenient reading:
/// a client that reassigns while it pages must search again from the start. The real search
/// is also eventually consistent [SPEC]; the fake answers from the current state.
fn search(state: &FakeState, request: &SearchRequest) -> Response {
    let Some(query) = request.jql.as_deref().and_then(jql::parse) else {
        return error(
            StatusCode::BAD_REQUEST,
            "The JQL query is not supported or not bounded.",
        );
    };
    let start = match request.next_page_token.as_deref().map(parse_token) {
        None => 0,
        Some(Some(start)) => start,
        Some(None) => return error(StatusCode::BAD_REQUEST, "The nextPageToken is not valid."),
    };
    let ids_only = !request.fields.is_empty()
        && request
            .fields
            .iter()
            .all(|field| field == "id" || field == "key");
    let cap = if ids_only {
        MAX_RESULTS_IDS_ONLY
    } else {
        MAX_RESULTS_WITH_FIELDS
    };
    let max = request
        .max_results
        .unwrap_or(DEFAULT_MAX_RESULTS)
        .clamp(1, cap);
    let mut found: Vec<&FakeIssue> = state
        .issues
        .by_key
        .values()
        .filter(|issue| matches(&query, issue))
        .collect();
    found.sort_by_key(|issue| key_order(&issue.key));
    let page: Vec<Value> = found
        .iter()
        .skip(start)
        .take(max)
        .map(|issue| issue_json(issue, &request.fields))
        .collect();
    let is_last = start + page.len() >= found.len();
    let mut answer = json!({ "issues": page, "isLast": is_last });
    if !is_last {
        answer["nextPageToken"] = json!(format!("page-{:x}", start + max));
    }
    Json(answer).into_response()
}

fn parse_token(token: &str) -> Option<usize> {
    usize::from_str_radix(token.strip_prefix("page-")?, 16).ok()
}

fn matches(query: &Jql, issue: &FakeIssue) -> bool {
    match query {
        Jql::OpenAssignedTo(account_id) => {
            !issue.done && issue.assignee.as_ref() == Some(account_id)
        }
        Jql::Keys(keys) => keys.contains(&issue.key),
    }
}

/// `PROJ-9` before `PROJ-10`, as Jira orders keys.
fn key_order(key: &str) -> (&str, u64) {
    match key.rsplit_once('-') {
        Some((project, number)) => (project, number.parse().unwrap_or(u64::MAX)),
        None => (key, 0),
    }
}

/// `id` and `key` always; of the fields, those asked for (`*all`/`*navigable`: both).
fn issue_json(issue: &FakeIssue, fields: &[String]) -> Value {
    let asked = |field: &str| {
        fields
            .iter()
            .any(|f| f == field || f == "*all" || f == "*navigable")
    };
    let mut shown = serde_json::Map::new();
    if asked("assignee") {
        let assignee = issue.assignee.as_ref().map(|id| json!({ "accountId": id }));
        shown.insert("assignee".to_owned(), assignee.unwrap_or(Value::Null));
    }
    if asked("status") {
        let (name, category) = if issue.done {
            ("Done", "done")
        } else {
            ("To Do", "new")
        };
        let status = json!({ "name": name, "statusCategory": { "key": category } });
        shown.insert("status".to_owned(), status);
    }
    json!({ "id": issue.id, "key": issue.key, "fields": shown })
}

/// `PUT /rest/api/3/issue/{key}/assignee` `{"accountId"}`: 204; `null` unassigns, `"-1"`
/// gives the project's default (its lead here); 400 user not found or no `accountId`; 403
/// without *Assign issues*; 404 issue [SPEC].
async fn assign(State(shared): Fake, Path(key): Path<String>, body: String) -> Response {
    let body: Option<Value> = serde_json::from_str(&body).ok();
    let Some(account_id) = body.as_ref().and_then(|body| body.get("accountId")) else {
        return error(StatusCode::BAD_REQUEST, "accountId is required");
    };
    let mut state = shared.lock();
    let Some(key) = state.issues.key_of(&key).map(str::to_owned) else {
        return error(StatusCode::NOT_FOUND, "Issue does not exist");
    };
    if state.issues.refuses_edit(&key) {
        return error(
            StatusCode::FORBIDDEN,
            "You do not have permission to assign issues.",
        );
    }
    let assignee = match account_id {
        Value::Null => None,
        Value::String(id) if id == "-1" => {
            let project = state.issues.get(&key).map(|issue| issue.project.as_str());
            project.and_then(|project| state.projects.lead(project))
        }
        Value::String(id) if state.known_user(id) => Some(id.clone()),
        _ => return error(StatusCode::BAD_REQUEST, "The user does not exist."),
    };
    state.issues.set_assignee(&key, assignee);
    StatusCode::NO_CONTENT.into_response()
}
