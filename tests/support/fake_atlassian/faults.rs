//! Faults a test injects: rate limits, errors, latency, and requests or answers held until
//! released.

use std::time::Duration;

use axum::http::StatusCode;
use axum::http::header::{CONTENT_TYPE, RETRY_AFTER};
use axum::response::{IntoResponse, Response};

use super::accounts::FakeState;
use super::{RecordedRequest, Shared, error};

#[derive(Clone, Debug)]
pub enum Matcher {
    Any,
    Mutating,
    Lookup,
    PathContains(String),
}

impl Matcher {
    fn matches(&self, request: &RecordedRequest) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Mutating => !request.is_lookup(),
            Matcher::Lookup => request.is_lookup(),
            Matcher::PathContains(part) => request.path.contains(part.as_str()),
        }
    }
}

#[derive(Clone, Debug)]
pub enum FaultKind {
    /// `reset_after` sends `X-RateLimit-Reset` as now + n seconds at minute precision, the
    /// way Atlassian formats it (`2026-03-01T12:01Z`) [69262].
    Status429 {
        retry_after: Option<u64>,
        reset_after: Option<u64>,
    },
    /// A 429 whose `X-RateLimit-Reset` is RFC 3339 with seconds, now + n seconds.
    Status429ResetSeconds {
        reset_after: u64,
    },
    Status503 {
        retry_after: Option<u64>,
    },
    Status500,
    Status401,
    Status403 {
        body: String,
    },
    /// Any status with a JSON body, for answers the fake's state would not give (a 409 from
    /// an account that its state would let through, say).
    Refuse {
        status: u16,
        body: String,
    },
    /// Delays the request, which then proceeds normally.
    Latency(Duration),
    /// Holds the request open until `release_held`, then lets it proceed normally.
    Hang,
    /// Carries the request out at once, but holds its answer until `release_held`: the
    /// change is made even if the caller dies waiting.
    HoldAnswer,
}

/// Applies `kind` to the next `times` requests that `matcher` accepts. Faults are tried in
/// the order they were injected; one request consumes at most one fault.
#[derive(Clone, Debug)]
pub struct Fault {
    pub matcher: Matcher,
    pub times: usize,
    pub kind: FaultKind,
}

impl Fault {
    pub fn once(matcher: Matcher, kind: FaultKind) -> Fault {
        Fault {
            matcher,
            times: 1,
            kind,
        }
    }
}

impl FakeState {
    pub(super) fn take_fault(&mut self, request: &RecordedRequest) -> Option<FaultKind> {
        let index = self
            .faults
            .iter()
            .position(|fault| fault.times > 0 && fault.matcher.matches(request))?;
        let fault = &mut self.faults[index];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.faults.remove(index);
        }
        Some(kind)
    }
}

/// The response a fault answers with, or `None` when the request should go on.
pub(super) async fn apply_fault(shared: &Shared, fault: Option<FaultKind>) -> Option<Response> {
    match fault? {
        FaultKind::Status429 {
            retry_after,
            reset_after,
        } => Some(rate_limited(
            StatusCode::TOO_MANY_REQUESTS,
            retry_after,
            reset_after.map(reset_at_minute),
        )),
        FaultKind::Status429ResetSeconds { reset_after } => {
            let reset = chrono::Utc::now() + chrono::Duration::seconds(reset_after as i64);
            let value = reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            Some(rate_limited(
                StatusCode::TOO_MANY_REQUESTS,
                None,
                Some(value),
            ))
        }
        FaultKind::Status503 { retry_after } => Some(rate_limited(
            StatusCode::SERVICE_UNAVAILABLE,
            retry_after,
            None,
        )),
        FaultKind::Status500 => Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal server error",
        )),
        FaultKind::Status401 => Some(error(StatusCode::UNAUTHORIZED, "Unauthorized")),
        FaultKind::Refuse { status, body } => Some(
            (
                StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
                [(CONTENT_TYPE, "application/json")],
                body.clone(),
            )
                .into_response(),
        ),
        FaultKind::Status403 { body } => Some(
            (
                StatusCode::FORBIDDEN,
                [(CONTENT_TYPE, "application/json")],
                body,
            )
                .into_response(),
        ),
        FaultKind::Latency(delay) => {
            tokio::time::sleep(delay).await;
            None
        }
        FaultKind::Hang => {
            wait_for_release(shared).await;
            None
        }
        FaultKind::HoldAnswer => None,
    }
}

/// `yyyy-MM-ddTHH:mmZ`: request time + the wait, UTC, at minute precision [69262].
fn reset_at_minute(seconds: u64) -> String {
    let reset = chrono::Utc::now() + chrono::Duration::seconds(seconds as i64);
    reset.format("%Y-%m-%dT%H:%MZ").to_string()
}

pub(super) fn rate_limited(
    status: StatusCode,
    retry_after: Option<u64>,
    reset: Option<String>,
) -> Response {
    let mut response = error(status, "Rate limit exceeded");
    let headers = response.headers_mut();
    if let Some(seconds) = retry_after {
        headers.insert(RETRY_AFTER, seconds.into());
    }
    if let Some(value) = reset {
        headers.insert(
            "x-ratelimit-reset",
            value.parse().expect("a timestamp is a valid header value"),
        );
    }
    response
}

pub(super) async fn wait_for_release(shared: &Shared) {
    let mut released = shared.release.subscribe();
    released.borrow_and_update();
    // An error means the fake is shutting down: nothing will answer anyway.
    let _ = released.changed().await;
}
