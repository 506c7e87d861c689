//! `POST /api/v1/jobs` (README, "Manual and bulk jobs"): jobs enqueued by hand, answered like
//! a webhook delivery, through the same guards, with source `api`.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::hooks::read_capped;
use crate::domain::DeliveryAnswer;
use crate::ingest::json_body;
use crate::manual::{self, Entry, MAX_ENTRIES, ManualSource};

/// The largest request body: 10,000 entries with room for their parameters.
const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// How many invalid entries an error names before it counts the rest.
const NAMED_INVALID: usize = 20;

/// The body of `POST /api/v1/jobs`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)] // Describes the body for the OpenAPI document; it is read entry by entry.
pub(super) struct EnqueueRequest {
    /// At most 10,000 entries.
    jobs: Vec<Entry>,
    /// Create every job awaiting approval.
    #[serde(default)]
    approval: bool,
    /// Act on an entry's `account_id` even where the account's record hides its email, so
    /// that nothing shows it belongs to the entry's email. Without it such a job fails
    /// `account_unverifiable`.
    #[serde(default)]
    trust_account_id: bool,
}

/// Enqueues jobs by hand, through every guard a webhook goes through: protected people are
/// refused, one live job per (action, email, target), approval and `approval_above`; dry run
/// and the blast radius apply in the worker. The same `Idempotency-Key` with the same body
/// replays the first answer, with another body is refused (422); without one every request
/// is new.
#[utoipa::path(
    post,
    path = "/api/v1/jobs",
    tag = "admin",
    security(("admin_token" = [])),
    params(("Idempotency-Key" = Option<String>, Header, description = "Names the request: the same key with the same body again is answered 200 with the first answer and creates nothing; with another body, 422")),
    request_body(content = EnqueueRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Recorded, jobs committed (some people may be refused)", body = DeliveryAnswer),
        (status = 200, description = "The same Idempotency-Key again (`duplicate: true`)", body = DeliveryAnswer),
        (status = 400, description = "`invalid_request`, naming each invalid entry by its index; or `invalid_json`. Nothing was enqueued", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused`: the Idempotency-Key named a request with another body. Nothing was enqueued", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 503, description = "`unavailable`: nothing was accepted; retry with the same key", body = ErrorBody),
    )
)]
pub(super) async fn enqueue_jobs(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_capped(&headers, body, MAX_BODY_BYTES).await?;
    // Thousands of entries take a while to parse and check: off the threads that answer
    // webhooks meanwhile (README, "Bulk requests and webhooks").
    let (body, config) = (std::sync::Arc::new(body), state.config.clone());
    let parsed = {
        let body = body.clone();
        tokio::task::spawn_blocking(move || -> Result<_, ApiError> {
            let payload =
                json_body::parse(&body).map_err(|e| ApiError::InvalidJson(e.to_string()))?;
            let Request {
                entries,
                approval,
                trust_account_id,
            } = request(payload)?;
            let mut chains = manual::chains(&config, &entries, approval, chrono::Utc::now())
                .map_err(|invalid| ApiError::InvalidRequest(describe(&invalid)))?;
            if trust_account_id {
                manual::trust_account_ids(&mut chains);
            }
            Ok((entries.len(), chains))
        })
        .await
        .map_err(|e| ApiError::InvalidRequest(format!("the request could not be checked: {e}")))?
    };
    let (entries, chains) = parsed?;
    let given_key = headers.get("idempotency-key").is_some();
    let key = match headers.get("idempotency-key") {
        None => manual::fresh_key(ManualSource::Api),
        Some(value) => value
            .to_str()
            .map_err(|_| "Idempotency-Key must be printable ASCII".to_owned())
            .and_then(manual::checked_key)
            .map_err(ApiError::InvalidRequest)?,
    };
    let receipt = manual::enqueue(
        state.store.as_ref(),
        &state.config,
        ManualSource::Api,
        &key,
        &body,
        chains,
    )
    .await?;
    if receipt.duplicate
        && given_key
        && manual::key_reused(state.store.as_ref(), ManualSource::Api, &key, &body).await?
    {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = if receipt.duplicate {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    tracing::info!(
        status = status.as_u16(),
        jobs = entries,
        "manual jobs recorded"
    );
    Ok((status, Json(receipt.answer)).into_response())
}

/// A request as read: its entries and its options.
struct Request {
    entries: Vec<Entry>,
    approval: bool,
    trust_account_id: bool,
}

/// The entries of a request, each read on its own so that an error names its index.
fn request(payload: Value) -> Result<Request, ApiError> {
    let invalid = |message: String| ApiError::InvalidRequest(message);
    let Value::Object(mut fields) = payload else {
        return Err(invalid(
            "expected an object: {\"jobs\": [...], \"approval\": bool, \"trust_account_id\": bool}"
                .into(),
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !matches!(k.as_str(), "jobs" | "approval" | "trust_account_id"))
    {
        return Err(invalid(format!(
            "unknown field `{}`: expected `jobs`, `approval` and `trust_account_id`",
            unknown.chars().take(40).collect::<String>()
        )));
    }
    let mut flag = |name: &str| match fields.remove(name) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(set)) => Ok(set),
        Some(_) => Err(invalid(format!("`{name}` must be true or false"))),
    };
    let approval = flag("approval")?;
    let trust_account_id = flag("trust_account_id")?;
    let Some(Value::Array(jobs)) = fields.remove("jobs") else {
        return Err(invalid("`jobs` must be an array of entries".into()));
    };
    if jobs.is_empty() {
        return Err(invalid("`jobs` is empty".into()));
    }
    if jobs.len() > MAX_ENTRIES {
        return Err(invalid(format!(
            "{} entries; at most {MAX_ENTRIES} a request",
            jobs.len()
        )));
    }
    let mut entries = Vec::with_capacity(jobs.len());
    let mut problems = Vec::new();
    for (index, job) in jobs.into_iter().enumerate() {
        match serde_json::from_value::<Entry>(job) {
            Ok(entry) => entries.push(entry),
            Err(e) => problems.push((index, e.to_string())),
        }
    }
    if problems.is_empty() {
        Ok(Request {
            entries,
            approval,
            trust_account_id,
        })
    } else {
        Err(invalid(describe(&problems)))
    }
}

/// `jobs[3]: …; jobs[7]: …`, the first few, and how many more.
fn describe(invalid: &[(usize, String)]) -> String {
    let mut named: Vec<String> = invalid
        .iter()
        .take(NAMED_INVALID)
        .map(|(index, why)| format!("jobs[{index}]: {why}"))
        .collect();
    if invalid.len() > NAMED_INVALID {
        named.push(format!("and {} more", invalid.len() - NAMED_INVALID));
    }
    format!("nothing was enqueued; {}", named.join("; "))
}
