//! `POST /hooks/{source}`: read the body once under a cap, verify it on the raw bytes, parse,
//! map with the source's rules, and answer 2xx only after the delivery and its jobs are
//! committed (README, HTTP API).

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use http_body_util::BodyExt as _;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use super::json_body;
use crate::config::Source;
use crate::domain::undo::{Irreversible, Undo, UndoAsked};
use crate::domain::{NewCancel, Plan};
use crate::rules;
use crate::store::{Dedupe, DeliveryContent, DeliveryStatus, NewDelivery, Refusal};
use crate::verify::{BodyTimestampError, Scheme, Verified, check_body_timestamp, is_hibob_ping};

/// Delivery ids longer than this are replaced by their hash: they are keys, not payloads.
const MAX_DELIVERY_ID_LEN: usize = 200;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(receive))
}

/// The answer to an accepted (202) or repeated (200) delivery, as stored with it.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)] // Describes the stored JSON for the OpenAPI document.
pub(super) struct DeliveryAnswer {
    delivery_id: String,
    duplicate: bool,
    jobs: Vec<crate::domain::Job>,
    /// Ids of jobs a cancel rule cancelled.
    cancelled: Vec<String>,
    refused: Vec<Refusal>,
    /// Present when the delivery would create more than `[safety] approval_above` jobs: why
    /// every one of them waits in `awaiting_approval`.
    approval_required: Option<String>,
    /// Present when a cancel rule with `undo = true` matched: the jobs that give back what
    /// the person's succeeded steps took.
    undo: Option<Vec<crate::domain::Job>>,
    /// Present with `undo`: the succeeded steps that cannot be given back, and why.
    irreversible: Option<Vec<Irreversible>>,
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
        Answer::Recorded { status, body } => (status, Json(body)).into_response(),
    })
}

/// How a delivery was answered.
enum Answer {
    /// HiBob's setup call: nothing verified, nothing recorded.
    Ping,
    /// Recorded (or replayed): the status and the stored body.
    Recorded { status: StatusCode, body: Value },
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

    // HiBob's setup call must get a fast 2xx before any verification or JSON handling.
    if source.verifier.scheme == Scheme::HiBob && is_hibob_ping(&body) {
        return Ok(Answer::Ping);
    }

    let verified = source
        .verifier
        .verify(headers, &body, Utc::now())
        .inspect_err(|e| tracing::warn!(reason = e.code(), "rejected webhook"))?;
    // Parsed only after verification, which ran on the bytes as received (any BOM included).
    let payload = json_body::parse(&body).map_err(|e| {
        tracing::warn!("verified webhook is not JSON");
        ApiError::InvalidJson(e.to_string())
    })?;
    let received_at = Utc::now();
    check_body_time(source, &payload, received_at)?;
    let body_sha256 = hex::encode(Sha256::digest(&body));
    let (delivery_id, id_signed) = delivery_id(source, &verified, headers, &payload, &body_sha256);
    tracing::Span::current().record("delivery_id", delivery_id.as_str());
    let dedupe = if id_signed {
        Dedupe::SignedId
    } else {
        Dedupe::UnsignedId {
            replay_since: received_at - source.replay_window.to_chrono(),
        }
    };

    let content = map_payload(state, source, &payload);
    let delivery = NewDelivery {
        source: source.name.clone(),
        delivery_id,
        body_sha256,
        dedupe,
        received_at,
        max_attempts: config.worker.max_attempts,
        content,
    };
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
        body: receipt.body,
    })
}

/// The source's `timestamp_pointer`, if any, held to its tolerance. A body without a
/// readable time there is refused like a stale one, naming the pointer.
fn check_body_time(source: &Source, payload: &Value, now: DateTime<Utc>) -> Result<(), ApiError> {
    let Some(pointer) = &source.timestamp_pointer else {
        return Ok(());
    };
    check_body_timestamp(payload, pointer, source.verifier.tolerance, now).map_err(|e| {
        tracing::warn!(reason = %e, "rejected webhook");
        match e {
            BodyTimestampError::Stale => ApiError::StaleTimestamp,
            BodyTimestampError::Unreadable => ApiError::MissingTimestamp(pointer.clone()),
        }
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

/// The delivery id: the source's `id_header` or `id_pointer`, else the scheme's own id, else
/// the SHA-256 of the raw body; and whether the id is signed, so that it alone names the
/// delivery (README, "Repeated deliveries"). An empty or blank id is no id.
///
/// An id is signed only where nobody but the sender could have named the same body otherwise:
/// a pointer into a body the scheme signs, or the scheme's own signed id, and then only on a
/// source without `id_header`, whose header anybody may drop, blank or set to take the first
/// copy's place. The body's hash, used where there is no id, is never a signed id. Either
/// way a replay that changes only how it is named is held to the replay window.
fn delivery_id(
    source: &Source,
    verified: &Verified,
    headers: &HeaderMap,
    payload: &Value,
    body_sha256: &str,
) -> (String, bool) {
    let scheme = &source.verifier.scheme;
    let present = |id: &String| !id.trim().is_empty();
    let from_header = source
        .id_header
        .as_ref()
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(present)
        .map(|id| (id, false));
    let from_pointer = || {
        source
            .id_pointer
            .as_deref()
            .and_then(|p| payload.pointer(p))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                _ => None,
            })
            .filter(present)
            .map(|id| (id, scheme.signs_body()))
    };
    let from_scheme = || {
        verified
            .delivery_id
            .clone()
            .filter(present)
            .map(|id| (id, scheme.signs_delivery_id()))
    };
    let Some((id, signed_where_found)) = from_header.or_else(from_pointer).or_else(from_scheme)
    else {
        return (format!("sha256:{body_sha256}"), false);
    };
    let signed = signed_where_found && source.id_header.is_none();
    if id.len() <= MAX_DELIVERY_ID_LEN {
        (id, signed)
    } else {
        (
            format!("sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))),
            signed,
        )
    }
}

/// Applies the source's rules; protected people are refused here, before any job exists. A
/// cancel rule with `undo` asks the store to work out what to give back.
fn map_payload(state: &AppState, source: &Source, payload: &Value) -> DeliveryContent {
    let now = Utc::now();
    let plans = match rules::map_delivery(&source.rules, payload, now) {
        Ok(plans) => plans,
        Err(unmappable) => {
            tracing::warn!(error = %unmappable, "webhook unmappable");
            return DeliveryContent::Unmappable {
                error: unmappable.to_string(),
            };
        }
    };
    let mut cancels = Vec::new();
    let mut chains = Vec::new();
    let mut undo: Option<Undo> = None;
    for plan in plans {
        match plan {
            Plan::Cancel {
                rule,
                email,
                undo: wanted,
                approval,
                undo_sources,
            } => {
                if wanted {
                    // Planned by the store, inside the transaction that records the
                    // delivery, from the jobs it sees there.
                    let sources = std::iter::once(source.name.clone())
                        .chain(undo_sources)
                        .collect();
                    undo.get_or_insert_with(Undo::default)
                        .asked
                        .push(UndoAsked {
                            email: email.clone(),
                            rule: rule.clone(),
                            approval,
                            sources,
                            approval_above: state.config.safety.approval_above,
                        });
                }
                cancels.push(NewCancel { email, rule });
            }
            Plan::Chain(chain) => chains.push(chain),
        }
    }
    DeliveryContent::guarded(cancels, chains, undo, &state.config.safety)
}

fn truncate(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}
