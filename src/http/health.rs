//! Liveness and readiness.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::error::{ApiError, ErrorBody};
use crate::metrics::Format;
use crate::store::StoreError;

/// How long the store may take to answer a readiness probe: a store that cannot be reached
/// is reported within 0.5 s (README, HTTP API: "Fast refusals"), and one this slow is not ready for webhooks.
const READY_TIMEOUT: Duration = Duration::from_millis(400);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// The process is up and serving HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Up")))]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

/// The store answers: webhooks can be accepted.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "The store would take a delivery within 0.4 s (on SQLite: its write lock)"),
    (status = 503, description = "The store is unavailable", body = ErrorBody),
))]
async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    match state.store.ready(READY_TIMEOUT).await {
        Ok(()) => (StatusCode::OK, Json(json!({ "status": "ready" }))),
        Err(StoreError::Overdue { .. }) => {
            tracing::warn!("readiness check: the store did not take a write in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(
                    json!({ "error": "unavailable", "message": "the store did not take a write in time" }),
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "readiness check: store unavailable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "error": "unavailable", "message": "the store does not answer" })),
            )
        }
    }
}

/// Reads what the metrics show of the store, then renders every metric.
async fn scrape(state: &AppState, format: Format) -> anyhow::Result<String> {
    let counts = state.store.count_by_state().await?;
    let worker = state.store.worker_state().await?;
    crate::metrics::render(&counts, &worker, format)
}

/// Prometheus metrics, all named `offboard_*`: OpenMetrics when `Accept` asks for
/// `application/openmetrics-text`, else the classic text format (version 0.0.4).
#[utoipa::path(get, path = "/metrics", tag = "health", responses(
    (status = 200, description = "Metrics", content(
        (String = "application/openmetrics-text"),
        (String = "text/plain"),
    )),
    (status = 503, description = "The store is unavailable", body = ErrorBody),
))]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok());
    let format = Format::from_accept(accept);
    match scrape(&state, format).await {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "metrics: store unavailable");
            ApiError::Unavailable.into_response()
        }
    }
}
