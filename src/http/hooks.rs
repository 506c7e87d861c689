//! `POST /hooks/{source}`: read the body once under a cap, verify it on the raw bytes, parse,
//! map with the source's rules, and answer 2xx only after the delivery and its jobs are
//! committed (README, HTTP API).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use http_body_util::BodyExt as _;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::domain::DeliveryAnswer;
use crate::ingest;
use crate::store::DeliveryStatus;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// Receives one delivery from a configured source. The body is verified on its raw bytes
/// with the source's scheme; a 2xx is sent only after the delivery and its jobs are committed.
#[utoipa::path(
    post,
    path = "/hooks/{source}",
    tag = "webhooks",
    params(("source" = String, Path, description = "The source's `name` in the config")),
    request_body(content = String, description = "The sender's body, signed", content_type = "application/json"),
    responses(
        (status = 202, description = "Verified, recorded, jobs committed (possibly none)", body = DeliveryAnswer),
        (status = 200, description = "The same delivery again (`duplicate: true`), or HiBob's ping", body = DeliveryAnswer),
        (status = 400, description = "`invalid_json`: verified but not JSON, or a key repeated in an object", body = ErrorBody),
        (status = 401, description = "`invalid_signature` or `stale_timestamp`", body = ErrorBody),
        (status = 404, description = "`unknown_source`", body = ErrorBody),
        (status = 408, description = "`request_timeout`: the headers took over 10 s or the body over 30 s; the connection is closed", body = ErrorBody),
        (status = 413, description = "`payload_too_large`", body = ErrorBody),
        (status = 422, description = "`unmappable`: recorded; the same delivery again gets the same answer", body = ErrorBody),
        (status = 503, description = "`unavailable`: nothing was accepted (or, if the message says so, the store did not confirm it in time); retry", body = ErrorBody),
    )
)]
async fn receive(
    State(state): State<AppState>,
    Path(source_name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let result = handle(&state, &source_name, &headers, body).await;
    // The source label is bounded: unknown names from the URL are folded into one value.
    let label = if state.config.source(&source_name).is_some() {
        source_name.as_str()
    } else {
        "_unknown"
    };
    let outcome = match &result {
        Ok(Answer::Ping) => "ping",
        Ok(Answer::Recorded { status, .. }) => match *status {
            StatusCode::ACCEPTED => "accepted",
            StatusCode::UNPROCESSABLE_ENTITY => "unmappable",
            _ => "duplicate",
        },
        Err(e) => e.code(),
    };
    crate::metrics::delivery(label, outcome);
    Ok(match result? {
        Answer::Ping => (StatusCode::OK, Json(json!({ "ping": true }))).into_response(),
        Answer::Recorded { status, answer } => (status, Json(answer)).into_response(),
    })
}

/// How a delivery was answered.
enum Answer {
    /// HiBob's setup call: nothing verified, nothing recorded.
    Ping,
    /// Recorded (or replayed): the status and the stored body.
    Recorded {
        status: StatusCode,
        answer: crate::domain::Answer,
    },
}

#[tracing::instrument(name = "webhook", skip_all, fields(source = %source_name, delivery_id))]
async fn handle(
    state: &AppState,
    source_name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Answer, ApiError> {
    let config = &state.config;
    let source = config
        .source(source_name)
        .ok_or_else(|| ApiError::UnknownSource(truncate(source_name, 64)))?;
    let body = read_capped(headers, body, config.max_body_bytes).await?;
    let verified = match ingest::verify(source, headers, &body, Utc::now())? {
        ingest::Verified::Ping => return Ok(Answer::Ping),
        ingest::Verified::Delivery(verified) => verified,
    };
    tracing::Span::current().record("delivery_id", verified.delivery_id.as_str());
    let delivery = ingest::plan(config, source, verified);
    let receipt = state.store.accept_delivery(delivery).await?;
    let status = match (receipt.status, receipt.duplicate) {
        (DeliveryStatus::Unmappable, _) => StatusCode::UNPROCESSABLE_ENTITY,
        (DeliveryStatus::Accepted, true) => StatusCode::OK,
        (DeliveryStatus::Accepted, false) => StatusCode::ACCEPTED,
    };
    tracing::info!(
        status = status.as_u16(),
        duplicate = receipt.duplicate,
        jobs = receipt.job_ids().len(),
        "webhook recorded"
    );
    Ok(Answer::Recorded {
        status,
        answer: receipt.answer,
    })
}

/// Reads the whole body, refusing before reading further once it exceeds `limit`.
///
/// Each chunk is copied into one buffer sized by `Content-Length` and dropped at once, so
/// what a connection holds while a body arrives is that buffer alone. (Collecting the chunks
/// instead keeps every read buffer they were cut from alive until the body ends; with slow
/// senders that is many small allocations that the allocator does not give back after they
/// go.) The buffer is large enough to be mapped on its own and returned when freed, and its
/// pages count only once written.
pub(super) async fn read_capped(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let expected = declared.and_then(|len| usize::try_from(len).ok());
    let mut buffer = Vec::with_capacity(expected.unwrap_or(0));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| ApiError::BodyRead(e.to_string()))?;
        if let Ok(data) = frame.into_data() {
            if buffer.len() + data.len() > limit {
                return Err(ApiError::PayloadTooLarge(limit));
            }
            buffer.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buffer))
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
