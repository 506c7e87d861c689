//! Jira automation rules through the Rule Management API [AUTO, AUTO-GA]: listed with their
//! owner (author) and actor, read and updated one by one. Served on the admin host in
//! production (`api.atlassian.com`), with the site user's API token; the cloud id comes from
//! the site's `/_edge/tenant_info` [AUTO].

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Fake, FakeAtlassian, Shared, error};

pub const CLOUD_ID: &str = "cloud-1";
/// `limit` of the rule summary when none is given, and its cap. The documentation read gives
/// neither; 50 and 100 are the less convenient plausible ones (UNCONFIRMED).
const DEFAULT_LIMIT: usize = 50;
const LIMIT_CAP: usize = 100;
const RULES: &str = "/automation/public/jira/{cloud_id}/rest/v1/rule";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeRule {
    pub uuid: String,
    pub name: String,
    /// `ENABLED` or `DISABLED`.
    pub state: String,
    /// The rule's owner.
    pub author: String,
    /// Whom the rule acts as.
    pub actor: String,
}

#[derive(Default)]
pub(super) struct Automation {
    rules: BTreeMap<String, FakeRule>,
    /// `PUT …/rule/{uuid}` changes the owner and actor it is sent.
    owner_change_applies: bool,
}

impl FakeAtlassian {
    /// An enabled rule owned by `author`, acting as `actor`.
    pub fn add_rule(&self, uuid: &str, name: &str, author: &str, actor: &str) {
        let rule = FakeRule {
            uuid: uuid.to_owned(),
            name: name.to_owned(),
            state: "ENABLED".to_owned(),
            author: author.to_owned(),
            actor: actor.to_owned(),
        };
        let mut state = self.shared.lock();
        state.automation.rules.insert(uuid.to_owned(), rule);
    }

    pub fn rule(&self, uuid: &str) -> Option<FakeRule> {
        self.shared.lock().automation.rules.get(uuid).cloned()
    }

    /// Makes a rule update apply the `authorAccountId` and `actorAccountId` it is sent.
    /// Whether the real one does is UNCONFIRMED [AUTO, 3P-auto]; by default it ignores them.
    pub fn set_automation_owner_change(&self, applies: bool) {
        self.shared.lock().automation.owner_change_applies = applies;
    }
}

pub(super) fn routes() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_edge/tenant_info", get(tenant_info))
        .route(&format!("{RULES}/summary"), get(summary))
        .route(&format!("{RULES}/{{uuid}}"), get(rule).put(update_rule))
}

/// The site's cloud id, asked for without credentials [AUTO].
async fn tenant_info() -> Response {
    Json(json!({ "cloudId": CLOUD_ID })).into_response()
}

#[derive(Deserialize)]
struct SummaryParams {
    cursor: Option<String>,
    limit: Option<usize>,
}

/// `GET …/rule/summary`: cursor pages `{links: {next}, data}`, no `next` on the last page.
/// No filter by account: the documented one's field is unnamed (UNCONFIRMED), so a client
/// matches `authorAccountId`/`actorAccountId` itself [AUTO].
async fn summary(
    State(shared): Fake,
    Path(cloud_id): Path<String>,
    Query(params): Query<SummaryParams>,
) -> Response {
    if cloud_id != CLOUD_ID {
        return error(StatusCode::NOT_FOUND, "Unknown cloud id.");
    }
    let start = match params.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => 0,
        Some(cursor) => match parse_cursor(cursor) {
            Some(start) => start,
            None => return error(StatusCode::BAD_REQUEST, "The cursor is not valid."),
        },
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, LIMIT_CAP);
    let state = shared.lock();
    let rules = &state.automation.rules;
    let data: Vec<Value> = rules
        .values()
        .skip(start)
        .take(limit)
        .map(rule_json)
        .collect();
    let mut links = json!({});
    if start + data.len() < rules.len() {
        links["next"] = json!(format!("cursor-{:x}", start + limit));
    }
    Json(json!({ "links": links, "data": data })).into_response()
}

fn parse_cursor(cursor: &str) -> Option<usize> {
    usize::from_str_radix(cursor.strip_prefix("cursor-")?, 16).ok()
}

fn rule_json(rule: &FakeRule) -> Value {
    json!({
        "uuid": rule.uuid,
        "name": rule.name,
        "state": rule.state,
        "authorAccountId": rule.author,
        "actorAccountId": rule.actor,
        "ruleScopeARIs": [],
        "labels": [],
    })
}

/// `GET …/rule/{uuid}`: `{"rule": {…}}`; 404 unknown [AUTO].
async fn rule(State(shared): Fake, Path((cloud_id, uuid)): Path<(String, String)>) -> Response {
    let state = shared.lock();
    match state.automation.rules.get(&uuid) {
        Some(rule) if cloud_id == CLOUD_ID => {
            Json(json!({ "rule": rule_json(rule) })).into_response()
        }
        _ => error(StatusCode::NOT_FOUND, "The rule was not found."),
    }
}

/// `PUT …/rule/{uuid}` with the body wrapped in `{"rule": {…}}` [AUTO, 3P-auto]: 200. It
/// applies `name` and `state`; whether it changes the owner or actor is UNCONFIRMED, so by
/// default it answers 200 and leaves them as they were (`set_automation_owner_change`).
async fn update_rule(
    State(shared): Fake,
    Path((cloud_id, uuid)): Path<(String, String)>,
    body: String,
) -> Response {
    let sent = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|body| body.get("rule").filter(|rule| rule.is_object()).cloned());
    let Some(sent) = sent else {
        return error(StatusCode::BAD_REQUEST, "The body must be {\"rule\": {…}}.");
    };
    let mut state = shared.lock();
    if cloud_id != CLOUD_ID || !state.automation.rules.contains_key(&uuid) {
        return error(StatusCode::NOT_FOUND, "The rule was not found.");
    }
    let text = |field: &str| sent.get(field).and_then(Value::as_str).map(str::to_owned);
    let (author, actor) = (text("authorAccountId"), text("actorAccountId"));
    let applies = state.automation.owner_change_applies;
    if applies
        && [&author, &actor]
            .into_iter()
            .flatten()
            .any(|id| !state.known_user(id))
    {
        return error(StatusCode::BAD_REQUEST, "The user does not exist.");
    }
    let Some(rule) = state.automation.rules.get_mut(&uuid) else {
        return error(StatusCode::NOT_FOUND, "The rule was not found.");
    };
    rule.name = text("name").unwrap_or(rule.name.clone());
    rule.state = text("state").unwrap_or(rule.state.clone());
    if applies {
        rule.author = author.unwrap_or(rule.author.clone());
        rule.actor = actor.unwrap_or(rule.actor.clone());
    }
    Json(json!({ "rule": rule_json(rule) })).into_response()
}
