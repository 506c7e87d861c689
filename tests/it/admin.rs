//! The admin API, `/metrics`, health and the request id, over a real port on both stores.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use crate::both_stores;
use crate::support::app::{ADMIN_TOKEN, TestApp, atlassian_toml, job_ids, test_config};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::FakeAtlassian;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// Two rules: one needs approval, one does not. No [atlassian]: the worker stays idle, so jobs
/// stay where the test puts them.
const CONFIG: &str = r#"
[[sources]]
name = "jira"
scheme = "token"
secrets = ["jira-token"]

  [[sources.rules]]
  name = "needs-approval"
  when = { "/kind" = "approve" }
  email = "/email"
  approval = true
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "direct"
  when = { "/kind" = "direct" }
  email = "/email"
  actions = ["revoke_portal_access", { action = "delete_portal_customer", after = "30d" }]
"#;

async fn get_json(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.admin(Method::GET, path).send().await.expect("GET");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

async fn post_json(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.admin(Method::POST, path).send().await.expect("POST");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

async fn every_route_needs_the_token(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let routes = [
        (Method::GET, "/api/v1/jobs"),
        (Method::POST, "/api/v1/jobs"),
        (Method::GET, "/api/v1/jobs/1"),
        (Method::POST, "/api/v1/jobs/1/cancel"),
        (Method::POST, "/api/v1/jobs/1/retry"),
        (Method::POST, "/api/v1/jobs/1/approve"),
        (Method::GET, "/api/v1/deliveries"),
        (Method::GET, "/api/v1/worker"),
        (Method::POST, "/api/v1/worker/pause"),
        (Method::POST, "/api/v1/worker/resume"),
        (Method::GET, "/api/v1/people"),
        (Method::GET, "/api/v1/people/a@example.com"),
        (
            Method::GET,
            "/api/v1/evidence/report?from=2026-01-01&to=2026-01-31",
        ),
    ];
    for (i, (method, path)) in routes.into_iter().enumerate() {
        let url = format!("{}{path}", app.base_url);
        // Each route from an address of its own: ten wrong tokens from one would be throttled.
        let http = client_from(Ipv4Addr::new(127, 0, 1, i as u8 + 1));
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("test-admin-token"),
            Some("Basic dGVzdA=="),
        ] {
            let mut request = http.request(method.clone(), &url);
            if let Some(auth) = auth {
                request = request.header("authorization", auth);
            }
            let response = request.send().await.expect("request");
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path} {auth:?}"
            );
            let body: Value = response.json().await.expect("JSON");
            assert_eq!(body["error"], "unauthorized");
            assert!(!body.to_string().contains(ADMIN_TOKEN));
        }
        let response = app
            .admin(method.clone(), path)
            .send()
            .await
            .expect("request");
        assert_ne!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
    }
    // The worker was not paused by the unauthorised POSTs.
    assert!(!app.store.worker_state().await.unwrap().paused);
    app.stop().await;
}
both_stores!(every_route_needs_the_token_on, every_route_needs_the_token);

/// A client whose connections come from `address` (any 127/8 address is this host).
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// `GET /api/v1/worker` from `http` with this `Authorization`; the status and `Retry-After`.
async fn worker_with(
    http: &reqwest::Client,
    app: &TestApp,
    auth: Option<&str>,
) -> (StatusCode, Option<u64>) {
    let mut request = http.get(format!("{}/api/v1/worker", app.base_url));
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.expect("request");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().expect("seconds"));
    let body: Value = response.json().await.expect("JSON");
    if status == StatusCode::TOO_MANY_REQUESTS {
        assert_eq!(body["error"], "too_many_attempts", "{body}");
        assert!(!body.to_string().contains(ADMIN_TOKEN));
    }
    (status, retry_after)
}

/// Bearer guesses are throttled like console logins, in one count per client address: after
/// ten wrong tokens within a minute every admin request from that address gets 429, the right
/// token too (as at the console, so that the eleventh guess learns nothing), until the minute
/// has passed. Other addresses are not affected. Not a store matter: SQLite only.
#[tokio::test]
async fn ten_wrong_bearer_tokens_a_minute_are_the_limit() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, CONFIG).await;
    let right = format!("Bearer {ADMIN_TOKEN}");
    let guesser = client_from(Ipv4Addr::new(127, 0, 2, 1));
    assert_eq!(
        worker_with(&guesser, &app, Some(&right)).await.0,
        StatusCode::OK
    );
    for i in 0..10 {
        let (status, _) = worker_with(&guesser, &app, Some(&format!("Bearer guess-{i}"))).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "guess {i}");
    }
    let mut waits = Vec::new();
    for auth in [Some("Bearer guess-10"), Some(right.as_str()), None] {
        let (status, retry_after) = worker_with(&guesser, &app, auth).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{auth:?}");
        let wait = retry_after.expect("Retry-After");
        assert!((1..=60).contains(&wait), "{wait}");
        waits.push(wait);
    }
    // The same count holds at the console's door.
    let login = guesser
        .post(format!("{}/console/login", app.base_url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(!app.store.worker_state().await.unwrap().paused);

    // Another address has tries of its own.
    let colleague = client_from(Ipv4Addr::new(127, 0, 2, 2));
    assert_eq!(
        worker_with(&colleague, &app, Some("Bearer typo")).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        worker_with(&colleague, &app, Some(&right)).await.0,
        StatusCode::OK
    );

    // Five wrong logins and five wrong bearer tokens are ten guesses at one secret.
    let both_doors = client_from(Ipv4Addr::new(127, 0, 2, 3));
    for i in 0..5 {
        let login = both_doors
            .post(format!("{}/console/login", app.base_url))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token=guess-{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(login.status(), StatusCode::UNAUTHORIZED);
        let auth = format!("Bearer guess-{i}");
        assert_eq!(
            worker_with(&both_doors, &app, Some(&auth)).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    assert_eq!(
        worker_with(&both_doors, &app, Some(&right)).await.0,
        StatusCode::TOO_MANY_REQUESTS
    );

    // Once the minute has passed, the right token works again.
    let wait = waits.into_iter().max().unwrap();
    tokio::time::sleep(Duration::from_secs(wait + 1)).await;
    assert_eq!(
        worker_with(&guesser, &app, Some(&right)).await.0,
        StatusCode::OK
    );
    app.stop().await;
}

async fn without_a_configured_token_the_admin_api_is_closed(db: TestDb) {
    let mut config = test_config(&db, CONFIG);
    config.admin_token = None;
    let store = db.store().await;
    let service = offboard::serve::Service::start_with_store(
        std::sync::Arc::new(config),
        store,
        offboard::serve::Role::Api,
    )
    .await
    .unwrap();
    let url = format!("http://{}/api/v1/jobs", service.addr);
    let client = reqwest::Client::new();
    for auth in ["Bearer ", "Bearer test-admin-token", "Bearer"] {
        let response = client
            .get(&url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth}");
    }
    service.stop().await.unwrap();
}
both_stores!(
    without_a_token_on,
    without_a_configured_token_the_admin_api_is_closed
);

async fn jobs_list_filter_paginate_and_show(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    for i in 0..3 {
        app.deliver(
            "jira",
            &json!({ "kind": "direct", "email": format!("p{i}@example.com") }),
        )
        .await;
    }
    app.deliver(
        "jira",
        &json!({ "kind": "approve", "email": "Q@Example.com" }),
    )
    .await;

    let (status, all) = get_json(&app, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::OK);
    let jobs = all["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 7);
    let ids: Vec<i64> = jobs
        .iter()
        .map(|j| j["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first: {ids:?}");
    assert_eq!(all["next_before"], Value::Null);
    for key in [
        "id",
        "action",
        "params",
        "state",
        "email",
        "account_id",
        "depends_on",
        "run_at",
        "attempts",
        "max_attempts",
        "last_error",
        "outcome",
        "source",
        "rule",
        "delivery_id",
        "created_at",
        "updated_at",
    ] {
        assert!(
            jobs[0].get(key).is_some(),
            "job JSON lacks {key}: {}",
            jobs[0]
        );
    }

    let (_, page1) = get_json(&app, "/api/v1/jobs?limit=4").await;
    assert_eq!(page1["jobs"].as_array().unwrap().len(), 4);
    let next = page1["next_before"]
        .as_str()
        .expect("a next page")
        .to_owned();
    let (_, page2) = get_json(&app, &format!("/api/v1/jobs?limit=4&before={next}")).await;
    let page2_ids: Vec<i64> = page2["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(page2_ids.len(), 3);
    assert!(
        page2_ids
            .iter()
            .all(|id| *id < next.parse::<i64>().unwrap())
    );

    let (_, awaiting) = get_json(&app, "/api/v1/jobs?state=awaiting_approval").await;
    assert_eq!(awaiting["jobs"].as_array().unwrap().len(), 1);
    assert_eq!(awaiting["jobs"][0]["email"], "q@example.com");
    let (_, by_email) = get_json(&app, "/api/v1/jobs?email=P1@EXAMPLE.COM").await;
    assert_eq!(by_email["jobs"].as_array().unwrap().len(), 2);
    let (_, by_action) = get_json(&app, "/api/v1/jobs?action=revoke_portal_access").await;
    assert_eq!(by_action["jobs"].as_array().unwrap().len(), 3);

    for bad in ["state=bogus", "action=nuke", "limit=lots", "before=x"] {
        let (status, body) = get_json(&app, &format!("/api/v1/jobs?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
    }

    let id = jobs[0]["id"].as_str().unwrap();
    let (status, job) = get_json(&app, &format!("/api/v1/jobs/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let events = job["events"].as_array().unwrap();
    assert_eq!(events[0]["from"], Value::Null);
    assert_eq!(events[0]["to"], "awaiting_approval");
    assert_eq!(events[0]["actor"], "source:jira");
    for missing in ["999999", "abc", "-1"] {
        let (status, body) = get_json(&app, &format!("/api/v1/jobs/{missing}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
        assert_eq!(body["error"], "not_found");
    }
    app.stop().await;
}
both_stores!(jobs_list_on, jobs_list_filter_paginate_and_show);

async fn transitions_answer_200_404_409(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let approve = app
        .deliver(
            "jira",
            &json!({ "kind": "approve", "email": "a@example.com" }),
        )
        .await;
    let approve_id = job_ids(&approve)[0].clone();
    let direct = app
        .deliver(
            "jira",
            &json!({ "kind": "direct", "email": "b@example.com" }),
        )
        .await;
    let direct_ids = job_ids(&direct);

    // approve: awaiting_approval → pending, only once.
    let (status, job) = post_json(&app, &format!("/api/v1/jobs/{approve_id}/approve")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "pending");
    let (status, body) = post_json(&app, &format!("/api/v1/jobs/{approve_id}/approve")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"], "invalid_transition");

    // retry is only for failed jobs.
    let (status, _) = post_json(&app, &format!("/api/v1/jobs/{}/retry", direct_ids[0])).await;
    assert_eq!(status, StatusCode::CONFLICT);

    // cancel the first step: the later step of its chain is cancelled too.
    let (status, job) = post_json(&app, &format!("/api/v1/jobs/{}/cancel", direct_ids[0])).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(job["state"], "cancelled");
    let (_, later) = get_json(&app, &format!("/api/v1/jobs/{}", direct_ids[1])).await;
    assert_eq!(later["state"], "cancelled");
    assert_eq!(later["last_error"], "previous_step_failed");
    let (status, _) = post_json(&app, &format!("/api/v1/jobs/{}/cancel", direct_ids[0])).await;
    assert_eq!(status, StatusCode::CONFLICT);

    let (_, shown) = get_json(&app, &format!("/api/v1/jobs/{}", direct_ids[0])).await;
    let last = shown["events"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "api");
    assert_eq!(last["from"], "pending");
    assert_eq!(last["to"], "cancelled");

    for action in ["cancel", "retry", "approve"] {
        let (status, body) = post_json(&app, &format!("/api/v1/jobs/424242/{action}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{action}");
        assert_eq!(body["error"], "not_found");
    }
    app.stop().await;
}
both_stores!(transitions_on, transitions_answer_200_404_409);

async fn deliveries_and_worker_state(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    app.deliver(
        "jira",
        &json!({ "kind": "direct", "email": "c@example.com" }),
    )
    .await;
    let response = app
        .post_hook(
            "jira",
            "{\"kind\":\"direct\"}",
            &[("authorization".into(), "Bearer jira-token".into())],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);

    let (status, body) = get_json(&app, "/api/v1/deliveries?source=jira&limit=10").await;
    assert_eq!(status, StatusCode::OK);
    let deliveries = body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["status"], "unmappable");
    assert!(deliveries[0]["error"].as_str().unwrap().contains("email"));
    assert_eq!(deliveries[1]["status"], "accepted");
    assert_eq!(deliveries[1]["job_ids"].as_array().unwrap().len(), 2);
    for key in ["id", "source", "delivery_id", "received_at"] {
        assert!(deliveries[1].get(key).is_some(), "{key}");
    }
    let (_, other) = get_json(&app, "/api/v1/deliveries?source=nope").await;
    assert_eq!(other["deliveries"].as_array().unwrap().len(), 0);

    let (_, state) = get_json(&app, "/api/v1/worker").await;
    assert_eq!(state, json!({ "paused": false, "reason": null }));
    let (_, state) = post_json(&app, "/api/v1/worker/pause").await;
    assert_eq!(state, json!({ "paused": true, "reason": "manual" }));
    let (_, state) = get_json(&app, "/api/v1/worker").await;
    assert_eq!(state, json!({ "paused": true, "reason": "manual" }));
    let (_, state) = post_json(&app, "/api/v1/worker/resume").await;
    assert_eq!(state, json!({ "paused": false, "reason": null }));
    app.stop().await;
}
both_stores!(deliveries_and_worker_on, deliveries_and_worker_state);

async fn health_metrics_and_request_id(db: TestDb) {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:metrics", "metrics@example.com");
    let toml = format!("dry_run = false\n{}\n{CONFIG}", atlassian_toml(&fake));
    let app = TestApp::spawn(&db, &toml).await;
    let body = app
        .deliver(
            "jira",
            &json!({ "kind": "direct", "email": "metrics@example.com" }),
        )
        .await;
    let first = job_ids(&body)[0].clone();
    app.wait_final(&first, Duration::from_secs(10)).await;

    let health = app
        .http
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let ready = app
        .http
        .get(format!("{}/readyz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    let metrics = app
        .http
        .get(format!("{}/metrics", app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "offboard_deliveries_total{source=\"jira\",result=\"accepted\"}",
        "offboard_jobs_finished_total{action=\"revoke_portal_access\",state=\"succeeded\",result=\"done\"}",
        "offboard_jobs{state=\"pending\"} 1",
        "offboard_atlassian_requests_total{endpoint=\"site_user_search\",status=\"200\",family=\"site\",lane=\"urgent\"}",
        "offboard_atlassian_requests_total{endpoint=\"revoke_portal_access\",status=\"204\",family=\"site\",lane=\"urgent\"}",
        "offboard_queue_wait_seconds_bucket{lane=\"urgent\",",
        "offboard_atlassian_request_duration_seconds_bucket{",
        "le=\"+Inf\"",
        "offboard_worker_paused{reason=\"auth\"} 0",
    ] {
        assert!(
            metrics.contains(expected),
            "missing {expected} in:\n{metrics}"
        );
    }
    assert!(!metrics.contains("jira-token"));

    // Without `Accept`, the classic text format, which every scraper reads; OpenMetrics for a
    // scraper that asks for it, as Prometheus does.
    let prometheus_2 = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    for (accept, content_type, eof) in [
        (None, "text/plain; version=0.0.4; charset=utf-8", false),
        (
            Some("text/plain"),
            "text/plain; version=0.0.4; charset=utf-8",
            false,
        ),
        (
            Some(prometheus_2),
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            true,
        ),
    ] {
        let mut request = app.http.get(format!("{}/metrics", app.base_url));
        if let Some(accept) = accept {
            request = request.header("accept", accept);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"],
            content_type,
            "{accept:?}"
        );
        let text = response.text().await.unwrap();
        assert_eq!(text.ends_with("# EOF\n"), eof, "{accept:?}:\n{text}");
        assert!(
            text.contains("offboard_deliveries_total{source=\"jira\",result=\"accepted\"}"),
            "{accept:?}:\n{text}"
        );
    }

    // The caller's request id comes back; without one a fresh id is made.
    let echoed = app
        .http
        .get(format!("{}/healthz", app.base_url))
        .header("x-request-id", "trace-abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-abc-123");
    let fresh = app
        .http
        .get(format!("{}/healthz", app.base_url))
        .send()
        .await
        .unwrap();
    let generated = fresh.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(generated.len(), 32);
    let hostile = app
        .http
        .get(format!("{}/nope", app.base_url))
        .header("x-request-id", "a b\tc")
        .send()
        .await
        .unwrap();
    assert_eq!(hostile.status(), StatusCode::NOT_FOUND);
    assert_ne!(hostile.headers()["x-request-id"], "a b\tc");
    app.stop().await;
}
both_stores!(health_metrics_on, health_metrics_and_request_id);

/// Sends one request and checks the answer is `{"error","message"}` with this status and
/// code, as JSON that a browser may not sniff into something else.
async fn expect_json_error(
    request: reqwest::RequestBuilder,
    status: StatusCode,
    code: &str,
) -> reqwest::header::HeaderMap {
    let response = request.send().await.expect("request");
    let headers = response.headers().clone();
    let answered = response.status();
    let text = response.text().await.expect("body");
    let what = format!("{status} {code}: {answered} {text}");
    assert_eq!(answered, status, "{what}");
    let body: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {what}"));
    let keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["error", "message"], "{what}");
    assert_eq!(body["error"], code, "{what}");
    assert!(!body["message"].as_str().unwrap().is_empty(), "{what}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{what}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
    headers
}

async fn every_error_is_json(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let url = |path: &str| format!("{}{path}", app.base_url);

    // A path segment that is not UTF-8 once decoded.
    for (method, path) in [
        (Method::POST, "/hooks/%FF%FE"),
        (Method::GET, "/api/v1/jobs/%FF"),
        (Method::POST, "/api/v1/jobs/%C0/cancel"),
    ] {
        let request = app.admin(method, path);
        expect_json_error(request, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    // A repeated query parameter is refused, not read as one of its values.
    for path in [
        "/api/v1/jobs?limit=1&limit=2",
        "/api/v1/jobs?state=pending&state=failed",
        "/api/v1/deliveries?source=jira&source=other",
    ] {
        let request = app.admin(Method::GET, path);
        expect_json_error(request, StatusCode::BAD_REQUEST, "bad_request").await;
    }
    for path in [
        "/nope",
        "/api/v1/nope",
        "/hooks",
        "/console/nope",
        "/hooks/jira/extra",
    ] {
        let request = app.admin(Method::GET, path);
        expect_json_error(request, StatusCode::NOT_FOUND, "not_found").await;
    }
    for (method, path) in [
        (Method::GET, "/hooks/jira"),
        (Method::DELETE, "/api/v1/jobs"),
        (Method::PUT, "/healthz"),
        (Method::GET, "/api/v1/worker/pause"),
        (Method::DELETE, "/console/login"),
    ] {
        let request = app.admin(method.clone(), path);
        let headers = expect_json_error(
            request,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        )
        .await;
        assert!(headers.contains_key("allow"), "{method} {path}");
    }
    // The console's login form takes a form, not JSON.
    let login = app
        .http
        .post(url("/console/login"))
        .json(&json!({ "token": ADMIN_TOKEN }));
    let headers = expect_json_error(
        login,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    assert!(!format!("{headers:?}").contains(ADMIN_TOKEN));

    // Answers that are not errors carry nosniff too.
    let worker = app
        .admin(Method::GET, "/api/v1/worker")
        .send()
        .await
        .unwrap();
    assert_eq!(worker.status(), StatusCode::OK);
    assert_eq!(worker.headers()["x-content-type-options"], "nosniff");
    let health = app.http.get(url("/healthz")).send().await.unwrap();
    assert_eq!(health.headers()["x-content-type-options"], "nosniff");
    app.stop().await;
}
both_stores!(every_error_is_json_on, every_error_is_json);

#[tokio::test]
async fn a_worker_only_process_serves_health_and_metrics_only() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_role(&db, CONFIG, offboard::serve::Role::Worker).await;
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base_url))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let hook = app.send_signed("jira", b"{}").await;
    assert_eq!(hook.status(), StatusCode::NOT_FOUND);
    let request = app.http.put(format!("{}/healthz", app.base_url));
    expect_json_error(
        request,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    let request = app.http.get(format!("{}/hooks/jira", app.base_url));
    expect_json_error(request, StatusCode::NOT_FOUND, "not_found").await;
    let (status, _) = get_json(&app, "/api/v1/jobs").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    app.stop().await;
}
