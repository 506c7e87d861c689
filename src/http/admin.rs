//! The admin API (`/api/v1/...`, INTERFACE §4): jobs, deliveries and the worker's pause flag,
//! behind a bearer token compared in constant time.

use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

use super::AppState;
use super::error::ApiError;
use crate::jobs::{Action, JobState};
use crate::store::{JobFilter, JobId, JobWithEvents, PauseReason, WorkerState, parse_job_id};

/// Who the audit trail names for changes made through this API.
const API_ACTOR: &str = "api";
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/api/v1/jobs", get(list_jobs))
        .route("/api/v1/jobs/{id}", get(get_job))
        .route("/api/v1/jobs/{id}/cancel", post(cancel_job))
        .route("/api/v1/jobs/{id}/retry", post(retry_job))
        .route("/api/v1/jobs/{id}/approve", post(approve_job))
        .route("/api/v1/deliveries", get(list_deliveries))
        .route("/api/v1/worker", get(worker_state))
        .route("/api/v1/worker/pause", post(pause_worker))
        .route("/api/v1/worker/resume", post(resume_worker))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Checks `Authorization: Bearer <admin_token>`. Without a configured token every admin
/// route answers 401: there is no open admin API.
async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match (&state.config.admin_token, presented) {
        (Some(expected), Some(presented)) if token_matches(expected.expose_secret(), presented) => {
            Ok(next.run(request).await)
        }
        _ => Err(ApiError::Unauthorized),
    }
}

/// Compares digests so neither the content nor the length of the token leaks through timing.
pub(crate) fn token_matches(expected: &str, presented: &str) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let presented = Sha256::digest(presented.as_bytes());
    bool::from(expected.ct_eq(&presented))
}

#[derive(Deserialize)]
struct JobsQuery {
    state: Option<String>,
    email: Option<String>,
    action: Option<String>,
    limit: Option<String>,
    before: Option<String>,
}

/// `limit` as given, clamped to 1..=500; anything but a number is a 400, not a silent default.
fn parse_limit(limit: Option<String>) -> Result<u32, ApiError> {
    match non_empty(limit) {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<u32>()
            .map(|n| n.clamp(1, MAX_LIMIT))
            .map_err(|_| {
                ApiError::BadRequest(format!("limit must be a number from 1 to {MAX_LIMIT}"))
            }),
    }
}

async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(query.limit)?;
    let filter = JobFilter {
        state: non_empty(query.state)
            .map(|s| s.parse::<JobState>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        email: non_empty(query.email),
        action: non_empty(query.action)
            .map(|a| a.parse::<Action>())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        before: non_empty(query.before)
            .map(|b| parse_job_id(&b))
            .transpose()
            .map_err(ApiError::BadRequest)?,
        limit,
    };
    let jobs = state.store.list_jobs(&filter).await?;
    let next_before = (jobs.len() == limit as usize)
        .then(|| jobs.last().map(|j| j.id.to_string()))
        .flatten();
    Ok(Json(json!({ "jobs": jobs, "next_before": next_before })))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    parse_job_id(text).map_err(|_| ApiError::NotFound(format!("job {text} not found")))
}

async fn get_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<JobWithEvents>, ApiError> {
    let id = job_id(&id)?;
    state
        .store
        .get_job(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("job {id} not found")))
}

async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state
        .store
        .cancel(job_id(&id)?, API_ACTOR, "cancelled by operator")
        .await?;
    Ok(Json(json!(job)))
}

async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state.store.retry(job_id(&id)?, API_ACTOR).await?;
    Ok(Json(json!(job)))
}

async fn approve_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let job = state.store.approve(job_id(&id)?, API_ACTOR).await?;
    Ok(Json(json!(job)))
}

#[derive(Deserialize)]
struct DeliveriesQuery {
    source: Option<String>,
    limit: Option<String>,
}

async fn list_deliveries(
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<Value>, ApiError> {
    let limit = parse_limit(query.limit)?;
    let source = non_empty(query.source);
    let deliveries = state
        .store
        .list_deliveries(source.as_deref(), limit)
        .await?;
    Ok(Json(json!({ "deliveries": deliveries })))
}

async fn worker_state(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    Ok(Json(state.store.worker_state().await?))
}

async fn pause_worker(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    tracing::warn!("worker paused by an operator");
    Ok(Json(state.store.pause(PauseReason::Manual).await?))
}

async fn resume_worker(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    tracing::info!("worker resumed by an operator");
    Ok(Json(state.store.resume().await?))
}
