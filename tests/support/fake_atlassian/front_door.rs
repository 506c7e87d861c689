//! The front door every request passes: it is recorded and counted against the tenant's rate
//! limit, then delayed or faulted, then its credentials are checked, before any route sees it.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::Value;
use tokio::time::Instant;

use super::faults::{apply_fault, wait_for_release};
use super::tenant_limit::tenant_limited;
use super::{ADMIN_KEY, Fake, FaultKind, SITE_EMAIL, SITE_TOKEN, error};

const MAX_BODY_BYTES: usize = 1 << 20;

/// Which `Authorization` a request carried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthKind {
    None,
    /// HTTP Basic with the right token, for this user.
    Basic {
        user: String,
    },
    /// Bearer with the right admin key.
    Bearer,
    /// Present but wrong or malformed.
    Invalid,
}

#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// As sent, still percent-encoded.
    pub path: String,
    pub query: Option<String>,
    pub auth: AuthKind,
    pub headers: HeaderMap,
    /// The body, if it parsed as JSON.
    pub body: Option<Value>,
    /// When it arrived, stamped under the fake's lock: the log is in arrival order.
    pub received_at: Instant,
    /// Refused with a `429` by the tenant's rate limit (`set_tenant_limit`): not served.
    pub rate_limited: bool,
}

impl RecordedRequest {
    /// Reads: every `GET` and the searches that are `POST`s (directory, JQL); everything else
    /// mutates.
    pub fn is_lookup(&self) -> bool {
        let search = self.path.ends_with("/users/search") || self.path.ends_with("/search/jql");
        self.method == "GET" || (self.method == "POST" && search)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|value| value.to_str().ok())
    }
}

/// Records the request and counts it against the tenant limit, then applies latency, faults
/// and authentication before routing.
pub(super) async fn front_door(State(shared): Fake, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_BODY_BYTES).await else {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "body too large");
    };
    let mut recorded = record(&parts, &bytes);
    let (fault, latency) = {
        let mut state = shared.lock();
        // Stamped again under the lock, so that arrival order is the bucket's order and the
        // served instants keep exactly to its bound (`max_in_window`).
        recorded.received_at = Instant::now();
        // The limit comes first and takes every request, authenticated or not, site or
        // admin: one tenant, one budget. A refused request consumes no fault.
        let received_at = recorded.received_at.into_std();
        recorded.rate_limited = state
            .tenant_limit
            .as_mut()
            .is_some_and(|limit| !limit.admit(received_at));
        state.requests.push(recorded.clone());
        let fault = if recorded.rate_limited {
            None
        } else {
            state.take_fault(&recorded)
        };
        (fault, state.latency)
    };
    // A zero sleep still waits for the timer's next millisecond tick.
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if recorded.rate_limited {
        return tenant_limited();
    }
    let hold_answer = matches!(fault, Some(FaultKind::HoldAnswer));
    if let Some(response) = apply_fault(&shared, fault).await {
        return response;
    }
    if !is_authorized(&recorded) {
        return error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
    }
    // Authenticated, but without a JSM agent licence: every service desk API endpoint
    // answers 403 with an empty body [JS-live].
    if recorded.path.starts_with("/rest/servicedeskapi/") && !shared.lock().jsm_agent_licence {
        return StatusCode::FORBIDDEN.into_response();
    }
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    if hold_answer {
        wait_for_release(&shared).await;
    }
    response
}

fn record(parts: &axum::http::request::Parts, body: &Bytes) -> RecordedRequest {
    RecordedRequest {
        method: parts.method.to_string(),
        path: parts.uri.path().to_owned(),
        query: parts.uri.query().map(str::to_owned),
        auth: auth_kind(&parts.headers),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(body).ok(),
        received_at: Instant::now(),
        rate_limited: false,
    }
}

fn auth_kind(headers: &HeaderMap) -> AuthKind {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return AuthKind::None;
    };
    let value = value.to_str().unwrap_or_default();
    if let Some(encoded) = value.strip_prefix("Basic ") {
        let decoded = BASE64.decode(encoded.trim()).unwrap_or_default();
        let credentials = String::from_utf8(decoded).unwrap_or_default();
        if let Some((user, SITE_TOKEN)) = credentials.split_once(':') {
            return AuthKind::Basic {
                user: user.to_owned(),
            };
        }
    }
    if value.strip_prefix("Bearer ") == Some(ADMIN_KEY) {
        return AuthKind::Bearer;
    }
    AuthKind::Invalid
}

/// Site endpoints (`/rest/…`) and the automation API (`/automation/…`, on the admin host, with
/// an API token [AUTO]) take the site user's Basic auth; the tenant info needs none [AUTO];
/// everything else takes the Bearer key.
fn is_authorized(request: &RecordedRequest) -> bool {
    if request.path == "/_edge/tenant_info" {
        return true;
    }
    if request.path.starts_with("/rest/") || request.path.starts_with("/automation/") {
        request.auth
            == AuthKind::Basic {
                user: SITE_EMAIL.to_owned(),
            }
    } else {
        request.auth == AuthKind::Bearer
    }
}
