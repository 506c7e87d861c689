//! The fake Atlassian's per-tenant rate limit, driven directly: several replicas of offboard
//! share one budget, and a test must be able to see it hold.

use std::time::{Duration, Instant};

use crate::support::fake_atlassian::{
    ADMIN_KEY, AccountStatus, FakeAtlassian, Fault, FaultKind, Matcher, SITE_EMAIL, SITE_TOKEN,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::task::JoinSet;

const MYSELF: &str = "/rest/api/3/myself";

async fn start() -> (FakeAtlassian, reqwest::Client) {
    offboard::install_tls_provider();
    (FakeAtlassian::start().await, reqwest::Client::new())
}

/// One site `GET`: its status, `Retry-After` and body.
async fn get(http: &reqwest::Client, url: &str) -> (StatusCode, Option<String>, Value) {
    let response = http
        .get(format!("{url}{MYSELF}"))
        .basic_auth(SITE_EMAIL, Some(SITE_TOKEN))
        .send()
        .await
        .expect("the fake answers");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ascii").to_owned());
    let text = response.text().await.expect("a body");
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

/// `n` site `GET`s at once; the answers, and how long sending them all took.
async fn burst(
    fake: &FakeAtlassian,
    http: &reqwest::Client,
    n: usize,
) -> (Vec<(StatusCode, Option<String>, Value)>, Duration) {
    let started = Instant::now();
    let mut calls = JoinSet::new();
    for _ in 0..n {
        let (http, url) = (http.clone(), fake.url.clone());
        calls.spawn(async move { get(&http, &url).await });
    }
    let answers = calls.join_all().await;
    (answers, started.elapsed())
}

/// Served answers are 200; every other one is the limit's 429 with `Retry-After: 1` and a
/// JSON error. Returns how many were served.
fn served(answers: &[(StatusCode, Option<String>, Value)]) -> usize {
    let mut served = 0;
    for (status, retry_after, body) in answers {
        if *status == StatusCode::OK {
            served += 1;
            continue;
        }
        assert_eq!(*status, StatusCode::TOO_MANY_REQUESTS, "{body}");
        assert_eq!(retry_after.as_deref(), Some("1"));
        assert!(body["errorMessages"][0].is_string(), "{body}");
    }
    served
}

/// At most the burst plus what the bucket refilled while the requests were arriving.
fn at_most(rate: f64, burst: f64, took: Duration) -> usize {
    (burst + rate * took.as_secs_f64()).floor() as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_limit_is_answered_429_and_the_bucket_refills() {
    let (fake, http) = start().await;
    fake.set_tenant_limit(20.0, 20.0);

    let (answers, took) = burst(&fake, &http, 100).await;
    let first = served(&answers);
    assert!(
        (20..=at_most(20.0, 20.0, took)).contains(&first),
        "{first} served in {took:?}"
    );
    assert_eq!(fake.rate_limited_count(), 100 - first);
    let requests = fake.requests();
    assert_eq!(requests.len(), 100, "limited requests are recorded too");
    assert_eq!(
        requests.iter().filter(|r| r.rate_limited).count(),
        100 - first
    );

    tokio::time::sleep(Duration::from_secs(1)).await;
    let (answers, took) = burst(&fake, &http, 100).await;
    let second = served(&answers);
    // A second's refill (20), what was left over (under one token) and the refill meanwhile.
    assert!(
        (20..=at_most(20.0, 21.0, took)).contains(&second),
        "{second} served in {took:?}"
    );
    assert_eq!(fake.rate_limited_count(), 200 - first - second);
    assert_eq!(fake.served_times().len(), first + second);
    let most = fake.max_in_window(Duration::from_secs(1));
    assert!(most <= 20 + 20, "{most} served within one second");
    assert!(most >= first.max(second), "{most}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_nothing_is_limited() {
    let (fake, http) = start().await;
    let (answers, _) = burst(&fake, &http, 100).await;
    assert_eq!(served(&answers), 100);
    assert_eq!(fake.rate_limited_count(), 0);
    assert_eq!(fake.served_times().len(), 100);
    assert_eq!(fake.max_in_window(Duration::from_secs(3600)), 100);

    // A limit, then lifted: served again at once.
    fake.set_tenant_limit(1.0, 1.0);
    let (answers, _) = burst(&fake, &http, 5).await;
    assert!(served(&answers) < 5);
    fake.clear_tenant_limit();
    let limited = fake.rate_limited_count();
    let (answers, _) = burst(&fake, &http, 20).await;
    assert_eq!(served(&answers), 20);
    assert_eq!(fake.rate_limited_count(), limited);
}

#[tokio::test]
async fn a_limited_request_changes_nothing_and_consumes_no_fault() {
    let (fake, http) = start().await;
    fake.add_managed("acc-leaver", "leaver@example.com");
    // One token, practically never refilled.
    fake.set_tenant_limit(0.001, 1.0);
    fake.inject(Fault::once(Matcher::Any, FaultKind::Status500));

    // The site takes the only token (and the fault)...
    let (status, _, _) = get(&http, &fake.url).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    fake.inject(Fault::once(Matcher::Any, FaultKind::Status500));

    // ... so the admin API, the same tenant, is refused, and the account stays active.
    let response = http
        .post(format!(
            "{}/users/acc-leaver/manage/lifecycle/disable",
            fake.url
        ))
        .bearer_auth(ADMIN_KEY)
        .json(&json!({ "message": "leaver" }))
        .send()
        .await
        .expect("the fake answers");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let account = fake.account("acc-leaver").expect("the account");
    assert_eq!(account.account_status, AccountStatus::Active);
    let last = fake.requests().pop().expect("recorded");
    assert!(last.rate_limited);
    assert_eq!(last.path, "/users/acc-leaver/manage/lifecycle/disable");

    // The fault waited for a request the limit let through.
    fake.clear_tenant_limit();
    assert_eq!(
        get(&http, &fake.url).await.0,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    assert_eq!(get(&http, &fake.url).await.0, StatusCode::OK);
    assert_eq!(fake.rate_limited_count(), 1);
}
