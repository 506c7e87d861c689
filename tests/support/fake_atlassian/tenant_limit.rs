//! A rate limit per tenant: one token bucket for every request to the site and the admin
//! API, whoever sends it, so that several replicas of offboard share one budget as they do
//! against a real tenant. No numeric limits are published [69262]; API-token traffic is on
//! the burst limits [RL], which a token bucket models; a test picks the numbers.

use std::time::Instant;

use axum::http::StatusCode;
use axum::response::Response;

use super::faults::rate_limited;

/// Refilled continuously at `rate` tokens a second up to `burst`; starts full.
#[derive(Clone, Debug)]
pub(super) struct TenantLimit {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TenantLimit {
    pub(super) fn new(requests_per_second: f64, burst: f64, now: Instant) -> TenantLimit {
        assert!(
            requests_per_second.is_finite() && requests_per_second > 0.0,
            "a tenant limit needs a positive rate, not {requests_per_second}"
        );
        assert!(
            burst.is_finite() && burst >= 1.0,
            "a tenant limit needs a burst of at least one request, not {burst}"
        );
        TenantLimit {
            rate: requests_per_second,
            burst,
            tokens: burst,
            refilled_at: now,
        }
    }

    /// Takes a token for a request arriving at `now`; `false` when the bucket is empty.
    /// `now` never goes back: callers take it under the state lock.
    pub(super) fn admit(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The answer to a request the tenant limit refused: `429` with `Retry-After` in whole
/// seconds [69262] and a JSON error body. One second is the smallest whole wait; below one
/// request a second a retry after it may be refused again, as retrying early is in
/// production [69262]. Whether the burst limiter also sends `X-RateLimit-Reset` is
/// UNCONFIRMED; the fake leaves it out, the less convenient answer.
pub(super) fn tenant_limited() -> Response {
    rate_limited(StatusCode::TOO_MANY_REQUESTS, Some(1), None)
}
