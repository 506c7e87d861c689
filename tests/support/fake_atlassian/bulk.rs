//! Bulk reassignment of issues: a task created at once, worked through later at its own pace
//! whether or not anyone polls, and polled for progress (the "Hand-over before removal"
//! section of the reference).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::accounts::FakeState;
use super::{Fake, FakeAtlassian, Shared, error};

/// The most issues one bulk edit takes [SPEC].
const MAX_BULK_ISSUES: usize = 1000;
/// How fast a task works through its issues unless a test says otherwise.
const DEFAULT_ISSUES_PER_SECOND: f64 = 2000.0;
const REFUSED_REASON: &str = "You do not have permission to edit this issue.";

pub(super) struct Bulk {
    tasks: BTreeMap<String, BulkTask>,
    issues_per_second: f64,
    created: usize,
    notifications_requested: usize,
}

impl Default for Bulk {
    fn default() -> Bulk {
        Bulk {
            tasks: BTreeMap::new(),
            issues_per_second: DEFAULT_ISSUES_PER_SECOND,
            created: 0,
            notifications_requested: 0,
        }
    }
}

/// One bulk reassignment, worked through in the order its issues were named.
struct BulkTask {
    selected: Vec<String>,
    assignee: String,
    /// How many of `selected` were worked through.
    done: usize,
    /// Issues earned since `last_advanced` but not yet worked through (a fraction of one).
    credit: f64,
    last_advanced: Instant,
    processed: Vec<String>,
    failed: BTreeMap<String, Vec<String>>,
    invalid: usize,
}

impl FakeAtlassian {
    /// How many issues a bulk task works through per second (default 2000).
    pub fn set_bulk_issues_per_second(&self, rate: f64) {
        self.shared.lock().bulk.issues_per_second = rate.max(0.0);
    }

    pub fn bulk_tasks_created(&self) -> usize {
        self.shared.lock().bulk.created
    }

    /// Bulk tasks created without `"sendBulkNotification": false`: the default sends
    /// notifications [SPEC].
    pub fn bulk_notifications_requested(&self) -> usize {
        self.shared.lock().bulk.notifications_requested
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/rest/api/3/bulk/issues/fields", post(create_task))
        .route("/rest/api/3/bulk/queue/{task}", get(poll_task))
}

/// Works every unfinished task forward by the time since it was last advanced. Called on
/// every read of the fake's state (`Shared::lock`), so a task finishes on its own, not
/// because someone polls it.
pub(super) fn advance(state: &mut FakeState) {
    let now = Instant::now();
    let rate = state.bulk.issues_per_second;
    for task in state.bulk.tasks.values_mut() {
        if task.done == task.selected.len() {
            continue;
        }
        task.credit += now.duration_since(task.last_advanced).as_secs_f64() * rate;
        task.last_advanced = now;
        let due = (task.credit.floor() as usize).min(task.selected.len() - task.done);
        task.credit -= due as f64;
        for _ in 0..due {
            let id_or_key = task.selected[task.done].clone();
            task.done += 1;
            let Some(key) = state.issues.key_of(&id_or_key).map(str::to_owned) else {
                task.invalid += 1;
                continue;
            };
            let id = state.issues.get(&key).map_or(key.clone(), |i| i.id.clone());
            if state.issues.refuses_edit(&key) {
                task.failed.insert(id, vec![REFUSED_REASON.to_owned()]);
                continue;
            }
            state.issues.set_assignee(&key, Some(task.assignee.clone()));
            task.processed.push(id);
        }
    }
}

/// `POST /rest/api/3/bulk/issues/fields`: 201 `{taskId}`; 400 `{errors}`; at most 1000
/// issues; `sendBulkNotification` defaults to true [SPEC]. That the assignee's field id is
/// `assignee` is UNCONFIRMED; the fake takes only that. Not modelled: the limit of 5
/// concurrent bulk requests site-wide [SPEC], since how a sixth is answered is UNCONFIRMED.
async fn create_task(State(shared): Fake, body: String) -> Response {
    let (selected, assignee, notify) = match parse_request(&body) {
        Ok(request) => request,
        Err(message) => return bulk_error(message),
    };
    let mut state = shared.lock();
    if !state.known_user(&assignee) {
        return bulk_error("The user does not exist.");
    }
    let bulk = &mut state.bulk;
    bulk.created += 1;
    if notify {
        bulk.notifications_requested += 1;
    }
    let task_id = (20000 + bulk.created).to_string();
    let task = BulkTask {
        selected,
        assignee,
        done: 0,
        credit: 0.0,
        last_advanced: Instant::now(),
        processed: Vec::new(),
        failed: BTreeMap::new(),
        invalid: 0,
    };
    bulk.tasks.insert(task_id.clone(), task);
    (StatusCode::CREATED, Json(json!({ "taskId": task_id }))).into_response()
}

/// The issues, the new assignee and whether to notify.
fn parse_request(body: &str) -> Result<(Vec<String>, String, bool), &'static str> {
    let body: Value = serde_json::from_str(body).map_err(|_| "The request body is not valid.")?;
    let selected: Option<Vec<String>> = body
        .get("selectedIssueIdsOrKeys")
        .and_then(Value::as_array)
        .ok_or("selectedIssueIdsOrKeys is required.")?
        .iter()
        .map(|issue| issue.as_str().map(str::to_owned))
        .collect();
    let selected = selected.ok_or("selectedIssueIdsOrKeys must be strings.")?;
    if selected.is_empty() || selected.len() > MAX_BULK_ISSUES {
        return Err("Select between 1 and 1000 issues.");
    }
    let actions = body.get("selectedActions").and_then(Value::as_array);
    if actions.is_none_or(|actions| actions != &[json!("assignee")]) {
        return Err("selectedActions must be [\"assignee\"] here.");
    }
    let assignee = body
        .pointer("/editedFieldsInput/singleSelectClearableUserPickerFields")
        .and_then(Value::as_array)
        .and_then(|fields| {
            fields
                .iter()
                .find(|field| field.get("fieldId").and_then(Value::as_str) == Some("assignee"))
        })
        .and_then(|field| field.pointer("/user/accountId")?.as_str())
        .ok_or("The assignee field needs user.accountId.")?;
    let notify = match body.get("sendBulkNotification") {
        None => true,
        Some(notify) => notify
            .as_bool()
            .ok_or("sendBulkNotification is a boolean.")?,
    };
    Ok((selected, assignee.to_owned(), notify))
}

fn bulk_error(message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message }] });
    (StatusCode::BAD_REQUEST, Json(body)).into_response()
}

/// `GET /rest/api/3/bulk/queue/{taskId}`: the task's progress; processed issues by their
/// numeric id, failed ones with their reasons, unknown ones only counted [SPEC].
async fn poll_task(State(shared): Fake, Path(task_id): Path<String>) -> Response {
    let state = shared.lock();
    let Some(task) = state.bulk.tasks.get(&task_id) else {
        return error(StatusCode::NOT_FOUND, "The task was not found.");
    };
    let total = task.selected.len();
    let status = match task.done {
        0 => "ENQUEUED",
        done if done < total => "RUNNING",
        _ => "COMPLETE",
    };
    let processed: Vec<Value> = task.processed.iter().map(|id| numeric(id)).collect();
    Json(json!({
        "taskId": task_id,
        "status": status,
        "progressPercent": task.done * 100 / total,
        "processedAccessibleIssues": processed,
        "failedAccessibleIssues": task.failed,
        "invalidOrInaccessibleIssueCount": task.invalid,
        "totalIssueCount": total,
    }))
    .into_response()
}

/// Issue ids are int64 in the spec [SPEC].
fn numeric(id: &str) -> Value {
    id.parse::<u64>().map_or_else(|_| json!(id), |n| json!(n))
}
