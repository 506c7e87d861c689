//! `GET /api/v1/customers` over a real port (README, "Customer inventory"): the admin token,
//! cursor paging over one reading, the filters, and the errors.

use crate::customers::{CUSTOMERS, REVOKED, populated_fake};
use crate::support::app::{TestApp, atlassian_toml};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{Fault, FaultKind, Matcher, SITE_TOKEN};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn get(app: &TestApp, query: &str) -> (StatusCode, Value) {
    let response = app
        .admin(Method::GET, &format!("/api/v1/customers{query}"))
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.expect("JSON body"))
}

fn ids(body: &Value) -> Vec<String> {
    body["customers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["account_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_follow_the_cursor_over_one_reading() {
    let fake = populated_fake().await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, &atlassian_toml(&fake)).await;

    let anonymous = app
        .http
        .get(format!("{}/api/v1/customers", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert!(fake.requests().is_empty(), "nothing read for a stranger");

    let (status, first) = get(&app, "?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{first}");
    let reads = fake.request_count();
    assert!(reads > 3, "the first page reads every desk");
    let mut seen = ids(&first);
    assert_eq!(seen.len(), 100);
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    let mut pages = 1;
    while let Some(next) = cursor {
        let (status, page) = get(&app, &format!("?limit=100&cursor={next}")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(ids(&page));
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), CUSTOMERS);
    let (_, all) = get(&app, "?limit=5000").await;
    assert_eq!(
        seen,
        ids(&all),
        "the pages together are the whole list, in order"
    );
    assert_eq!(all["next_cursor"], Value::Null, "limit is cut to 1000");
    assert_eq!(
        fake.request_count(),
        2 * reads,
        "pages after the first continue on its reading; a first page reads again"
    );

    let (_, inactive) = get(&app, "?inactive=true&limit=1").await;
    assert_eq!(ids(&inactive), [REVOKED[0]]);
    let cursor = inactive["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = get(&app, &format!("?inactive=1&limit=1&cursor={cursor}")).await;
    assert_eq!(ids(&rest), [REVOKED[1]]);
    assert_eq!(rest["next_cursor"], Value::Null);
    let (_, eu) = get(&app, "?domain=EU.example.com&inactive=false").await;
    assert!(ids(&eu).iter().all(|id| {
        let n: usize = id[3..].parse().unwrap();
        n.is_multiple_of(5)
    }));
    assert_eq!(ids(&eu).len(), 49, "every fifth but the hidden email");
    assert!(fake.mutating_requests().is_empty(), "read-only");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_parameters_missing_credentials_and_atlassian_failures_are_json_errors() {
    let fake = populated_fake().await;
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, &atlassian_toml(&fake)).await;
    for query in [
        "?limit=many",
        "?inactive=yes",
        "?cursor=not-a-cursor",
        "?domain=example",
    ] {
        let (status, body) = get(&app, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["error"], "bad_request", "{query}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert!(fake.requests().is_empty(), "refused before reading");

    fake.inject(Fault::once(
        Matcher::PathContains("/servicedesk/20/customer".into()),
        FaultKind::Status403 {
            body: "no permission to view customers".into(),
        },
    ));
    let (status, body) = get(&app, "").await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"], "upstream_error");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("403") && message.contains("no permission"),
        "{message}"
    );
    assert!(!message.contains(SITE_TOKEN));
    let (status, _) = get(&app, "").await;
    assert_eq!(status, StatusCode::OK, "a failed reading is not kept");
    app.stop().await;

    let bare_db = TestDb::sqlite();
    let bare = TestApp::spawn(&bare_db, "").await;
    let (status, body) = get(&bare, "").await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "not_configured");
    assert!(body["message"].as_str().unwrap().contains("site_url"));
    bare.stop().await;
}
