//! The one error type at the HTTP boundary: a stable code, a status and a message that never
//! carries a secret. Internal causes are logged, not returned.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;
use crate::verify::VerifyError;

/// The body of every error answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code, e.g. `invalid_signature`, `not_found`, `invalid_transition`.
    pub error: String,
    /// What happened, for a person. Never contains a secret.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no source named `{0}` is configured")]
    UnknownSource(String),
    #[error("the signature or token is missing or invalid")]
    InvalidSignature,
    #[error("the signed timestamp is outside the accepted tolerance")]
    StaleTimestamp,
    /// The source's `timestamp_pointer` finds no time in the verified body.
    #[error(
        "the signed body has no timestamp at {0} (epoch seconds, epoch milliseconds or RFC 3339)"
    )]
    MissingTimestamp(String),
    #[error("the body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("the body could not be read: {0}")]
    BodyRead(String),
    #[error("the body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("missing or invalid admin token")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    InvalidTransition(String),
    #[error("{0}")]
    BadRequest(String),
    /// A manual request with an invalid entry, or too many: nothing was enqueued.
    #[error("{0}")]
    InvalidRequest(String),
    /// The same `Idempotency-Key` as an earlier request, with another body: nothing was
    /// enqueued (IETF draft "The Idempotency-Key HTTP Header Field", as Stripe does).
    #[error(
        "this Idempotency-Key was used for a request with another body; nothing was enqueued: use a new key for a new request"
    )]
    IdempotencyKeyReused,
    #[error("the store is unavailable; nothing was accepted, try again later")]
    Unavailable,
    #[error("too many wrong admin tokens from this address; wait a minute, then try again")]
    TooManyAttempts,
    /// What the request needs is not in the configuration (the customer inventory without
    /// the site credentials).
    #[error("{0}")]
    NotConfigured(String),
    /// Atlassian failed a read the request depends on. The message is the client's
    /// classification (`CallError`), which never holds a credential.
    #[error("Atlassian failed: {0}")]
    Upstream(String),
    /// A request refused before any handler ran: a malformed path or query, a content type
    /// or method the route does not take. The message is axum's own explanation.
    #[error("{message}")]
    Rejected { status: StatusCode, message: String },
    /// The store did not confirm a delivery within its deadline, though it may yet commit:
    /// the same 503, since the sender's retry is safe either way (a recorded delivery
    /// replays its first answer).
    #[error(
        "the store did not confirm the delivery in time; send it again: if it was recorded, the first answer is replayed"
    )]
    Unconfirmed,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::UnknownSource(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::InvalidSignature
            | ApiError::StaleTimestamp
            | ApiError::MissingTimestamp(_)
            | ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyRead(_)
            | ApiError::InvalidJson(_)
            | ApiError::BadRequest(_)
            | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::InvalidTransition(_) | ApiError::NotConfigured(_) => StatusCode::CONFLICT,
            ApiError::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ApiError::Unavailable | ApiError::Unconfirmed => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::TooManyAttempts => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Rejected { status, .. } => *status,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::UnknownSource(_) => "unknown_source",
            ApiError::InvalidSignature => "invalid_signature",
            ApiError::StaleTimestamp | ApiError::MissingTimestamp(_) => "stale_timestamp",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::BodyRead(_) => "bad_request",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::InvalidTransition(_) => "invalid_transition",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::IdempotencyKeyReused => "idempotency_key_reused",
            ApiError::Unavailable | ApiError::Unconfirmed => "unavailable",
            ApiError::TooManyAttempts => "too_many_attempts",
            ApiError::NotConfigured(_) => "not_configured",
            ApiError::Upstream(_) => "upstream_error",
            ApiError::Rejected { status, .. } => rejection_code(*status),
        }
    }
}

/// The code of a refusal that did not come from a handler, by its status.
fn rejection_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        status if status.is_server_error() => "internal_error",
        _ => "bad_request",
    }
}

impl From<crate::ingest::Refused> for ApiError {
    fn from(refused: crate::ingest::Refused) -> Self {
        match refused {
            crate::ingest::Refused::Verify(e) => e.into(),
            crate::ingest::Refused::InvalidJson(message) => ApiError::InvalidJson(message),
            crate::ingest::Refused::MissingTimestamp(pointer) => {
                ApiError::MissingTimestamp(pointer)
            }
        }
    }
}

impl From<VerifyError> for ApiError {
    fn from(err: VerifyError) -> Self {
        match err {
            VerifyError::InvalidSignature => ApiError::InvalidSignature,
            VerifyError::StaleTimestamp => ApiError::StaleTimestamp,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => ApiError::NotFound(format!("job {id} not found")),
            StoreError::InvalidTransition { .. } | StoreError::LiveJobExists { .. } => {
                ApiError::InvalidTransition(err.to_string())
            }
            StoreError::Overdue { in_doubt: true } => {
                tracing::error!(error = %err, "store error");
                ApiError::Unconfirmed
            }
            other => {
                tracing::error!(error = %other, "store error");
                ApiError::Unavailable
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().to_owned(),
            message: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}
