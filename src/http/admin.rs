//! The admin API (`/api/v1/...`, README, HTTP API): jobs, deliveries and the worker's pause flag,
//! behind a bearer token compared in constant time, and guessed at most ten times a minute per
//! client (`super::throttle`).

use std::time::Instant;

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse as _, Response};
use secrecy::ExposeSecret as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::manual_jobs::{__path_enqueue_jobs, enqueue_jobs};
use super::throttle::{self, Client};
use crate::domain::{
    Action, Job, JobId, JobState, JobWithEvents, PauseReason, WorkerState, parse_job_id,
};
use crate::store::{Delivery, JobFilter};

/// Who the audit trail names for changes made through this API.
const API_ACTOR: &str = "api";
const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_jobs, enqueue_jobs))
        .routes(routes!(get_job))
        .routes(routes!(cancel_job))
        .routes(routes!(retry_job))
        .routes(routes!(approve_job))
        .routes(routes!(list_deliveries))
        .routes(routes!(worker_state))
        .routes(routes!(pause_worker))
        .routes(routes!(resume_worker))
        .routes(routes!(doctor))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// Checks `Authorization: Bearer <admin_token>`. Without a configured token every admin
/// route answers 401: there is no open admin API. A client that sent ten wrong bearer tokens
/// within a minute (or wrong tokens to the console's login form) gets 429 for every admin
/// request until that minute has passed, before its token is looked at. Only a bearer token
/// counts as a guess: any other `Authorization` can never succeed, so its 401 teaches nothing.
pub(super) async fn require_admin(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Result<Response, Response> {
    let Some(expected) = &state.config.admin_token else {
        return Err(ApiError::Unauthorized.into_response());
    };
    let client = Client::of_request(request.extensions());
    if let Err(wait) = state.token_guesses.check(client, Instant::now()) {
        tracing::warn!("admin API request refused: too many wrong tokens from this client");
        return Err((throttle::retry_after(wait), ApiError::TooManyAttempts).into_response());
    }
    let presented = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(presented) if token_matches(expected.expose_secret(), presented) => {
            Ok(next.run(request).await)
        }
        Some(_) => {
            state.token_guesses.record_failure(client, Instant::now());
            tracing::warn!("admin API request with a wrong bearer token");
            Err(ApiError::Unauthorized.into_response())
        }
        None => Err(ApiError::Unauthorized.into_response()),
    }
}

/// Compares digests so neither the content nor the length of the token leaks through timing.
pub(crate) fn token_matches(expected: &str, presented: &str) -> bool {
    let expected = Sha256::digest(expected.as_bytes());
    let presented = Sha256::digest(presented.as_bytes());
    bool::from(expected.ct_eq(&presented))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct JobsQuery {
    /// Only jobs in this state.
    state: Option<String>,
    /// Only jobs for this person (case-insensitive).
    email: Option<String>,
    /// Only jobs of this action.
    action: Option<String>,
    /// At most this many jobs (default 50, at most 500).
    limit: Option<String>,
    /// Only jobs older than this job id: the `next_before` of the previous page.
    before: Option<String>,
}

/// A page of jobs, newest first.
#[derive(Serialize, ToSchema)]
struct JobPage {
    jobs: Vec<Job>,
    /// Pass as `before` for the next page; null on the last page.
    next_before: Option<String>,
}

/// `limit` as given, clamped to 1..=500; anything but a number is a 400, not a silent default.
fn parse_limit(limit: Option<String>) -> Result<u32, ApiError> {
    limit_within(limit, DEFAULT_LIMIT, MAX_LIMIT)
}

/// A `limit` parameter clamped to 1..=`max`, `default` when absent or empty; anything but a
/// number is a 400.
pub(super) fn limit_within(limit: Option<String>, default: u32, max: u32) -> Result<u32, ApiError> {
    match non_empty(limit) {
        None => Ok(default),
        Some(text) => text
            .parse::<u32>()
            .map(|n| n.clamp(1, max))
            .map_err(|_| ApiError::BadRequest(format!("limit must be a number from 1 to {max}"))),
    }
}

/// Lists jobs, newest first.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "admin", params(JobsQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of jobs, newest first", body = JobPage),
        (status = 400, description = "`bad_request`: an unknown state or action, a bad limit", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn list_jobs(
    State(state): State<AppState>,
    Query(query): Query<JobsQuery>,
) -> Result<Json<JobPage>, ApiError> {
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
    Ok(Json(JobPage { jobs, next_before }))
}

pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.is_empty())
}

fn job_id(text: &str) -> Result<JobId, ApiError> {
    parse_job_id(text).map_err(|_| ApiError::NotFound(format!("job {text} not found")))
}

/// One job with its audit trail.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "admin",
    params(("id" = String, Path, description = "Job id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job and its audit events, oldest first", body = JobWithEvents),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
    ))]
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

/// Cancels a pending or awaiting_approval job and the later steps of its chain.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/cancel", tag = "admin",
    params(("id" = String, Path, description = "Job id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job after the transition", body = Job),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_transition`", body = ErrorBody),
    ))]
async fn cancel_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state
        .store
        .cancel(job_id(&id)?, API_ACTOR, "cancelled by operator")
        .await?;
    Ok(Json(job))
}

/// Puts a failed job back to pending with its attempts reset.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/retry", tag = "admin",
    params(("id" = String, Path, description = "Job id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job after the transition", body = Job),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_transition`", body = ErrorBody),
    ))]
async fn retry_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.store.retry(job_id(&id)?, API_ACTOR).await?;
    Ok(Json(job))
}

/// Lets a job awaiting approval run.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/approve", tag = "admin",
    params(("id" = String, Path, description = "Job id")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The job after the transition", body = Job),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`", body = ErrorBody),
        (status = 409, description = "`invalid_transition`", body = ErrorBody),
    ))]
async fn approve_job(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Job>, ApiError> {
    let job = state.store.approve(job_id(&id)?, API_ACTOR).await?;
    Ok(Json(job))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeliveriesQuery {
    /// Only deliveries of this source.
    source: Option<String>,
    /// At most this many (default 50, at most 500).
    limit: Option<String>,
}

/// Recorded deliveries, newest first. Raw bodies are never stored, only their SHA-256.
#[derive(Serialize, ToSchema)]
struct DeliveryList {
    deliveries: Vec<Delivery>,
}

/// Lists recorded deliveries, newest first.
#[utoipa::path(get, path = "/api/v1/deliveries", tag = "admin", params(DeliveriesQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The recorded deliveries, newest first", body = DeliveryList),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn list_deliveries(
    State(state): State<AppState>,
    Query(query): Query<DeliveriesQuery>,
) -> Result<Json<DeliveryList>, ApiError> {
    let limit = parse_limit(query.limit)?;
    let source = non_empty(query.source);
    let deliveries = state
        .store
        .list_deliveries(source.as_deref(), limit)
        .await?;
    Ok(Json(DeliveryList { deliveries }))
}

/// Whether the worker is paused, and why.
#[utoipa::path(get, path = "/api/v1/worker", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Whether the worker is paused, and why", body = WorkerState),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn worker_state(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    Ok(Json(state.store.worker_state().await?))
}

/// Pauses the worker on every replica (reason `manual`); an existing pause keeps its reason.
#[utoipa::path(post, path = "/api/v1/worker/pause", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The worker's state after the pause", body = WorkerState),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn pause_worker(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    tracing::warn!("worker paused by an operator");
    Ok(Json(state.store.pause(PauseReason::Manual).await?))
}

/// Resumes the worker; the blast-radius window restarts now.
#[utoipa::path(post, path = "/api/v1/worker/resume", tag = "admin",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The worker's state after the resume", body = WorkerState),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn resume_worker(State(state): State<AppState>) -> Result<Json<WorkerState>, ApiError> {
    tracing::info!("worker resumed by an operator");
    Ok(Json(state.store.resume().await?))
}

/// Runs the read-only checks of `offboard doctor` against the live Atlassian APIs. Answers
/// 200 whether or not they pass; `ok` says.
#[utoipa::path(get, path = "/api/v1/doctor", tag = "admin",
    responses(
        (status = 200, description = "The checks and their results", body = crate::doctor::Report),
        (status = 401, description = "Missing or wrong admin token", body = ErrorBody)
    ),
    security(("admin_token" = [])))]
async fn doctor(State(state): State<AppState>) -> Json<crate::doctor::Report> {
    let report = crate::doctor::run(&state.config).await;
    state.doctor.set(report.clone());
    Json(report)
}
