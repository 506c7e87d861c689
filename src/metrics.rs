//! Prometheus metrics (`GET /metrics`), all named `offboard_*`. Counters are process-wide;
//! queue depth and the pause flag are read from the store at scrape time (by the handler in
//! `http/health.rs`, which hands them over), so every replica reports the shared truth.
//!
//! Two exposition formats: OpenMetrics for a scraper that asks for it (Prometheus does), and
//! the classic Prometheus text format for every other. Many agents parse only the classic
//! one, and read OpenMetrics' counters (`# TYPE offboard_deliveries counter` over
//! `offboard_deliveries_total` samples) as untyped, or refuse the content type.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeLabelSet, prometheus_text};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::domain::{ApiFamily, JobState, Lane, PauseReason, WorkerState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeliveryLabels {
    source: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    action: String,
    state: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    status: String,
    family: String,
    /// The lane of the job the request was made for; `none` outside a job.
    lane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LaneLabels {
    lane: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FamilyLabels {
    family: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: String,
}

struct Metrics {
    registry: Registry,
    deliveries: Family<DeliveryLabels, Counter>,
    jobs_finished: Family<JobLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    latency: Family<EndpointLabels, Histogram>,
    rate_limit_waits: Family<FamilyLabels, Counter>,
    rate_limited: Family<FamilyLabels, Counter>,
    queue_wait: Family<LaneLabels, Histogram>,
    queue_depth: Family<StateLabels, Gauge>,
    worker_paused: Family<ReasonLabels, Gauge>,
    verification_failed: Counter,
    reactivated: Counter,
    time_to_revoke: Histogram,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("offboard");
    let deliveries = Family::<DeliveryLabels, Counter>::default();
    registry.register(
        "deliveries",
        "Webhook deliveries by source and result",
        deliveries.clone(),
    );
    let jobs_finished = Family::<JobLabels, Counter>::default();
    registry.register(
        "jobs_finished",
        "Jobs that reached a final state, by action, state and outcome or error",
        jobs_finished.clone(),
    );
    let requests = Family::<RequestLabels, Counter>::default();
    registry.register(
        "atlassian_requests",
        "Requests to Atlassian by endpoint and HTTP status (`error` for no response)",
        requests.clone(),
    );
    let latency = Family::<EndpointLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
    });
    registry.register(
        "atlassian_request_duration_seconds",
        "Latency of requests to Atlassian by endpoint",
        latency.clone(),
    );
    let rate_limit_waits = Family::<FamilyLabels, Counter>::default();
    registry.register(
        "rate_limit_waits",
        "429/503 answers that made an API family wait",
        rate_limit_waits.clone(),
    );
    let rate_limited = Family::<FamilyLabels, Counter>::default();
    registry.register(
        "rate_limited",
        "429 answers from Atlassian, by API family",
        rate_limited.clone(),
    );
    let queue_wait = Family::<LaneLabels, Histogram>::new_with_constructor(|| {
        Histogram::new([
            0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
        ])
    });
    registry.register(
        "queue_wait_seconds",
        "How long a job waited from due to claimed, by lane",
        queue_wait.clone(),
    );
    let queue_depth = Family::<StateLabels, Gauge>::default();
    registry.register("jobs", "Jobs in the store by state", queue_depth.clone());
    let worker_paused = Family::<ReasonLabels, Gauge>::default();
    registry.register(
        "worker_paused",
        "1 when the worker is paused, with the reason as a label",
        worker_paused.clone(),
    );
    let verification_failed = Counter::default();
    registry.register(
        "verification_failed",
        "Chains whose account, read once they ended, did not show what they did",
        verification_failed.clone(),
    );
    let reactivated = Counter::default();
    registry.register(
        "reactivated",
        "Verified cases whose account a recheck found active again",
        reactivated.clone(),
    );
    const HOUR: f64 = 3600.0;
    let time_to_revoke = Histogram::new([
        60.0,
        300.0,
        900.0,
        HOUR,
        4.0 * HOUR,
        12.0 * HOUR,
        24.0 * HOUR,
        48.0 * HOUR,
        7.0 * 24.0 * HOUR,
    ]);
    registry.register(
        "time_to_revoke_seconds",
        "A verified case's time to revoke: from max(first_seen, effective_at) to access_removed_at",
        time_to_revoke.clone(),
    );
    Metrics {
        verification_failed,
        reactivated,
        time_to_revoke,
        registry,
        deliveries,
        jobs_finished,
        requests,
        latency,
        rate_limit_waits,
        rate_limited,
        queue_wait,
        queue_depth,
        worker_paused,
    }
});

/// A webhook answered: `result` is `accepted`, `duplicate`, or the error code.
pub fn delivery(source: &str, result: &str) {
    METRICS
        .deliveries
        .get_or_create(&DeliveryLabels {
            source: source.to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

/// A job reached a final state; `result` is its outcome or error code.
pub fn job_finished(action: &str, state: JobState, result: &str) {
    METRICS
        .jobs_finished
        .get_or_create(&JobLabels {
            action: action.to_owned(),
            state: state.as_str().to_owned(),
            result: result.to_owned(),
        })
        .inc();
}

/// A verification read contradicted its chain, or could not tell.
pub fn verification_failed() {
    METRICS.verification_failed.inc();
}

/// A recheck found a verified case's account active again.
pub fn reactivated() {
    METRICS.reactivated.inc();
}

/// How long a verified chain took to remove access.
pub fn time_to_revoke(seconds: f64) {
    METRICS.time_to_revoke.observe(seconds);
}

/// One request to Atlassian; `status` is `None` when no response came back, `lane` when
/// the request was made outside a job.
pub fn atlassian_request(
    endpoint: &str,
    family: ApiFamily,
    lane: Option<Lane>,
    status: Option<u16>,
    elapsed: Duration,
) {
    let status = status.map_or_else(|| "error".to_owned(), |s| s.to_string());
    let limited = status_is_429(&status);
    METRICS
        .requests
        .get_or_create(&RequestLabels {
            endpoint: endpoint.to_owned(),
            status,
            family: family.as_str().to_owned(),
            lane: lane.map_or("none", Lane::as_str).to_owned(),
        })
        .inc();
    if limited {
        METRICS
            .rate_limited
            .get_or_create(&FamilyLabels {
                family: family.as_str().to_owned(),
            })
            .inc();
    }
    METRICS
        .latency
        .get_or_create(&EndpointLabels {
            endpoint: endpoint.to_owned(),
        })
        .observe(elapsed.as_secs_f64());
}

fn status_is_429(status: &str) -> bool {
    status == "429"
}

/// A job claimed `waited` after it was due.
pub fn queue_wait(lane: Lane, waited: Duration) {
    METRICS
        .queue_wait
        .get_or_create(&LaneLabels {
            lane: lane.as_str().to_owned(),
        })
        .observe(waited.as_secs_f64());
}

pub fn rate_limit_wait(family: ApiFamily) {
    METRICS
        .rate_limit_waits
        .get_or_create(&FamilyLabels {
            family: family.as_str().to_owned(),
        })
        .inc();
}

/// The text a scrape is answered in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    OpenMetrics,
    /// The Prometheus text format, version 0.0.4.
    PrometheusText,
}

impl Format {
    /// OpenMetrics when `accept` (an `Accept` header) names `application/openmetrics-text`
    /// with a quality above zero, the classic text format otherwise, also without `Accept`.
    pub fn from_accept(accept: Option<&str>) -> Format {
        let asks_for_openmetrics = accept.is_some_and(|accept| {
            accept.split(',').any(|range| {
                let mut parts = range.split(';').map(str::trim);
                let media_type = parts.next().unwrap_or_default();
                let refused = parts.any(|param| {
                    param
                        .strip_prefix("q=")
                        .is_some_and(|q| q.parse::<f32>().is_ok_and(|q| q <= 0.0))
                });
                media_type.eq_ignore_ascii_case("application/openmetrics-text") && !refused
            })
        });
        if asks_for_openmetrics {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::PrometheusText => prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The scrape: `counts` per job state and the worker's pause flag, as the caller read them
/// from the store, and every process-wide counter.
pub fn render(
    counts: &[(JobState, u64)],
    worker: &WorkerState,
    format: Format,
) -> anyhow::Result<String> {
    for state in JobState::ALL {
        let count = counts
            .iter()
            .find(|(s, _)| *s == state)
            .map_or(0, |(_, n)| *n);
        METRICS
            .queue_depth
            .get_or_create(&StateLabels {
                state: state.as_str().to_owned(),
            })
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
    for reason in PauseReason::ALL {
        let paused = worker.paused && worker.reason == Some(reason);
        METRICS
            .worker_paused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str().to_owned(),
            })
            .set(i64::from(paused));
    }
    let mut out = String::new();
    match format {
        Format::OpenMetrics => encode(&mut out, &METRICS.registry)?,
        Format::PrometheusText => prometheus_text::encode(&mut out, &METRICS.registry)?,
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openmetrics_only_for_a_scraper_that_asks_for_it() {
        for (accept, expected) in [
            (None, Format::PrometheusText),
            (Some("*/*"), Format::PrometheusText),
            (Some("text/plain"), Format::PrometheusText),
            (
                Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
                Format::PrometheusText,
            ),
            (Some("application/openmetrics-text"), Format::OpenMetrics),
            (
                // Prometheus 2.x's scrape header.
                Some(
                    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
                ),
                Format::OpenMetrics,
            ),
            (
                Some("Application/OpenMetrics-Text; q=0.5"),
                Format::OpenMetrics,
            ),
            (
                Some("application/openmetrics-text;q=0, text/plain"),
                Format::PrometheusText,
            ),
        ] {
            assert_eq!(Format::from_accept(accept), expected, "{accept:?}");
        }
    }
}
