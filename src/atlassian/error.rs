//! The shared rules that turn a response or a transport failure into what the worker does next.

use std::error::Error as _;
use std::fmt::Write as _;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Response, StatusCode};

use crate::domain::ApiFamily;

/// Rejected bodies are kept for the audit trail, so they are bounded.
const BODY_LIMIT: usize = 2048;

/// A server asking for more than this is more likely wrong than right; after this long we ask
/// again rather than stall a family indefinitely.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(3600);

/// Why a call did not go through. Each variant is a different next step for the worker.
/// `Clone`: one bulk read answers every job that asked in it.
#[derive(Clone, Debug, thiserror::Error)]
pub enum CallError {
    /// 429 or 503: snooze without consuming an attempt. `wait` comes from `Retry-After`
    /// (seconds or HTTP date), else `X-RateLimit-Reset`; `None` means the caller backs off.
    #[error("Atlassian is rate limiting (HTTP {status}){}", wait_hint(.wait))]
    RateLimited { status: u16, wait: Option<Duration> },
    /// 401: the credentials of this family are bad; the worker pauses with reason `auth`.
    #[error("Atlassian rejected the {} credentials (HTTP 401)", .family.as_str())]
    Unauthorized { family: ApiFamily },
    /// Other 5xx, network errors, timeouts, unparseable lookup bodies: retry with backoff.
    #[error("transient Atlassian failure: {detail}")]
    Transient { detail: String },
    /// Any other 4xx (403 included): permanent for this job. `body` is truncated to ~2 KB.
    #[error("Atlassian refused the request (HTTP {status}): {body}")]
    Rejected { status: u16, body: String },
    /// The family has no credentials in `[atlassian]`: nothing was sent.
    #[error("the {} credentials are not configured in [atlassian]", .family.as_str())]
    NotConfigured { family: ApiFamily },
    /// A 404 for something our configuration names (a group, service desk or customer
    /// organization): a mistake in the rules, never "already done".
    #[error("the {kind} `{id}` does not exist in Atlassian (HTTP 404)")]
    MissingTarget { kind: &'static str, id: String },
    /// A write to the directory with `directory_id = "-"`, which names every directory and
    /// is documented for reads only: nothing was sent.
    #[error(
        "directory_id \"-\" is for reads only; set a real directory id (`offboard doctor` lists them)"
    )]
    DirectoryNotWritable,
}

/// What a 403 with an empty body from a service desk API (`/rest/servicedeskapi/…`) means:
/// without a JSM agent licence, every one of them answers that way (observed live).
pub const NO_JSM_AGENT_LICENCE: &str =
    "the site user needs a Jira Service Management agent licence";

impl CallError {
    /// A 403 with an empty body: from a service desk API, the site user has no Jira Service
    /// Management agent licence ([`NO_JSM_AGENT_LICENCE`]). A 403 with a body says its own
    /// reason.
    pub fn is_bare_forbidden(&self) -> bool {
        matches!(self, CallError::Rejected { status: 403, body } if body.trim().is_empty())
    }

    /// Applies the rules that hold for every endpoint; any other response is returned for the
    /// endpoint to classify.
    pub(crate) async fn check_shared_rules(
        family: ApiFamily,
        response: Response,
    ) -> Result<Response, CallError> {
        let status = response.status();
        match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                Err(CallError::RateLimited {
                    status: status.as_u16(),
                    wait: rate_limit_wait(response.headers(), Utc::now()),
                })
            }
            StatusCode::UNAUTHORIZED => Err(CallError::Unauthorized { family }),
            _ if status.is_server_error() => Err(CallError::Transient {
                detail: format!("HTTP {status}: {}", read_body_prefix(response).await),
            }),
            _ => Ok(response),
        }
    }

    /// A permanent refusal, with the start of the body: Atlassian puts the reason there
    /// (`forbidden.targetUnverified`, "user cannot be removed").
    pub(crate) async fn rejected(response: Response) -> CallError {
        CallError::Rejected {
            status: response.status().as_u16(),
            body: read_body_prefix(response).await,
        }
    }

    /// An id that the URL parser would rewrite: nothing was sent, and the call can never
    /// succeed as given.
    pub(crate) fn unsendable(id: &str) -> CallError {
        CallError::Rejected {
            status: StatusCode::BAD_REQUEST.as_u16(),
            body: format!("not sent: the id {id:?} cannot be used in a URL"),
        }
    }

    /// The request never got a response (connect, TLS, timeout, broken body).
    pub(crate) fn transport(err: &reqwest::Error) -> CallError {
        let mut detail = err.to_string();
        let mut source = err.source();
        while let Some(cause) = source {
            let _ = write!(detail, ": {cause}");
            source = cause.source();
        }
        CallError::Transient { detail }
    }
}

fn wait_hint(wait: &Option<Duration>) -> String {
    wait.map(|wait| format!(", retry in {}s", wait.as_secs()))
        .unwrap_or_default()
}

/// How long the server asked us to wait: `Retry-After` first (Atlassian does not always send
/// it, JRACLOUD-82801), then `X-RateLimit-Reset`. A time already past means "now".
pub(crate) fn rate_limit_wait(headers: &HeaderMap, now: DateTime<Utc>) -> Option<Duration> {
    let header = |name| headers.get(name).and_then(|value| value.to_str().ok());
    let wait = header(RETRY_AFTER.as_str())
        .and_then(|value| parse_retry_after(value, now))
        .or_else(|| header("x-ratelimit-reset").and_then(|value| parse_reset(value, now)))?;
    Some(wait.min(MAX_RATE_LIMIT_WAIT))
}

/// `Retry-After` is either delay-seconds or an HTTP date (RFC 9110 §10.2.3).
fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = DateTime::parse_from_rfc2822(value).ok()?;
    Some(until(at.with_timezone(&Utc), now))
}

/// `X-RateLimit-Reset` is ISO 8601 UTC. Atlassian sends it at minute precision
/// (`2026-03-01T12:01Z`, JRACLOUD-69262): the limit lifts somewhere inside that minute, and
/// retrying early only earns a longer wait, so the wait runs to the minute's end. RFC 3339
/// with seconds, and a missing offset, are honoured as they are.
fn parse_reset(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    let naive = value.strip_suffix('Z').unwrap_or(value);
    if let Ok(at) = DateTime::parse_from_rfc3339(value) {
        return Some(until(at.with_timezone(&Utc), now));
    }
    if let Ok(at) = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M:%S%.f") {
        return Some(until(at.and_utc(), now));
    }
    let minute = NaiveDateTime::parse_from_str(naive, "%Y-%m-%dT%H:%M").ok()?;
    Some(until(minute.and_utc() + chrono::Duration::minutes(1), now))
}

fn until(at: DateTime<Utc>, now: DateTime<Utc>) -> Duration {
    (at - now).to_std().unwrap_or(Duration::ZERO)
}

/// Reads at most about `BODY_LIMIT` bytes: a huge error page must not be buffered whole. A
/// body that breaks off midway keeps what arrived.
pub(super) async fn read_body_prefix(mut response: Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() <= BODY_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    truncate_utf8(&bytes, BODY_LIMIT)
}

/// Cuts on a character boundary so the result stays valid UTF-8.
fn truncate_utf8(bytes: &[u8], limit: usize) -> String {
    let text = String::from_utf8_lossy(bytes);
    text[..text.floor_char_boundary(limit)].to_owned()
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2025-03-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn wait(pairs: &[(&'static str, &'static str)]) -> Option<Duration> {
        rate_limit_wait(&headers(pairs), now())
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(wait(&[("retry-after", "7")]), Some(Duration::from_secs(7)));
    }

    #[test]
    fn retry_after_as_an_http_date() {
        let value = "Sat, 01 Mar 2025 12:00:30 GMT";
        assert_eq!(
            wait(&[("retry-after", value)]),
            Some(Duration::from_secs(30))
        );
    }

    #[test]
    fn retry_after_wins_over_the_reset_time() {
        let pairs = [
            ("retry-after", "3"),
            ("x-ratelimit-reset", "2025-03-01T12:01:00Z"),
        ];
        assert_eq!(wait(&pairs), Some(Duration::from_secs(3)));
    }

    #[test]
    fn reset_time_is_relative_to_now() {
        let pairs = [("x-ratelimit-reset", "2025-03-01T12:01:00Z")];
        assert_eq!(wait(&pairs), Some(Duration::from_secs(60)));
        let fractional = [("x-ratelimit-reset", "2025-03-01T12:00:10.500Z")];
        assert_eq!(wait(&fractional), Some(Duration::from_millis(10_500)));
        let no_offset = [("x-ratelimit-reset", "2025-03-01T12:00:05")];
        assert_eq!(wait(&no_offset), Some(Duration::from_secs(5)));
    }

    #[test]
    fn reset_time_at_minute_precision_as_atlassian_sends_it() {
        // Until the named minute is over.
        let minute = [("x-ratelimit-reset", "2025-03-01T12:02Z")];
        assert_eq!(wait(&minute), Some(Duration::from_secs(180)));
        let no_zone = [("x-ratelimit-reset", "2025-03-01T12:01")];
        assert_eq!(wait(&no_zone), Some(Duration::from_secs(120)));
        let this_minute = [("x-ratelimit-reset", "2025-03-01T12:00Z")];
        assert_eq!(wait(&this_minute), Some(Duration::from_secs(60)));
        let with_seconds_and_zone = [("x-ratelimit-reset", "2025-03-01T12:00:30Z")];
        assert_eq!(wait(&with_seconds_and_zone), Some(Duration::from_secs(30)));
        for broken in [
            "2025-03-01T12Z",
            "2025-03-01 12:01",
            "12:01Z",
            "2025-03-01T12:01ZZ",
        ] {
            let pairs = [("x-ratelimit-reset", broken)];
            assert_eq!(
                rate_limit_wait(&headers_owned(&pairs), now()),
                None,
                "{broken}"
            );
        }
    }

    fn headers_owned(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn unparseable_retry_after_falls_back_to_the_reset_time() {
        let pairs = [
            ("retry-after", "soon"),
            ("x-ratelimit-reset", "2025-03-01T12:00:02Z"),
        ];
        assert_eq!(wait(&pairs), Some(Duration::from_secs(2)));
    }

    #[test]
    fn a_time_already_past_means_now() {
        let pairs = [("x-ratelimit-reset", "2025-03-01T11:00:00Z")];
        assert_eq!(wait(&pairs), Some(Duration::ZERO));
    }

    #[test]
    fn absurd_waits_are_capped() {
        assert_eq!(
            wait(&[("retry-after", "999999999")]),
            Some(MAX_RATE_LIMIT_WAIT)
        );
    }

    #[test]
    fn no_usable_header_means_no_wait() {
        assert_eq!(wait(&[]), None);
        assert_eq!(
            wait(&[("retry-after", "-1"), ("x-ratelimit-reset", "tomorrow")]),
            None
        );
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        let text = "é".repeat(10);
        assert_eq!(truncate_utf8(text.as_bytes(), 5), "éé");
        assert_eq!(truncate_utf8(b"short", 2048), "short");
    }

    #[test]
    fn messages_name_the_family_and_wait() {
        let limited = CallError::RateLimited {
            status: 429,
            wait: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            limited.to_string(),
            "Atlassian is rate limiting (HTTP 429), retry in 2s"
        );
        let unauthorized = CallError::Unauthorized {
            family: ApiFamily::Admin,
        };
        assert_eq!(
            unauthorized.to_string(),
            "Atlassian rejected the admin credentials (HTTP 401)"
        );
    }
}
