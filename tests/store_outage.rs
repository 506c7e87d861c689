//! Postgres goes away under load and comes back: webhooks get 503 (never a 2xx without a
//! commit), /readyz says 503, the worker stops claiming and retries, and everything resumes
//! by itself. Afterwards every delivery that got a 2xx has its job, and every job completed
//! exactly once.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use offboard::jobs::{JobState, Outcome};
use offboard::store::JobFilter;
use reqwest::StatusCode;
use serde_json::json;
use support::app::{TestApp, atlassian_toml};
use support::db::{Backend, TestDb};
use support::fake_atlassian::FakeAtlassian;
use support::pg_cluster::PgCluster;

const PEOPLE: usize = 90;

fn email(i: usize) -> String {
    format!("person{i}@example.com")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_loses_nothing_and_recovers() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let fake = FakeAtlassian::start().await;
    for i in 0..PEOPLE {
        fake.add_customer(&format!("qm:{i}"), &email(i));
    }
    let toml = format!(
        r#"dry_run = false
{}
[worker]
concurrency = 4
requests_per_second = 1000.0
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = 100000

[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["delete_portal_customer"]
"#,
        atlassian_toml(&fake)
    );
    let db = TestDb::existing(Backend::Postgres, cluster.url());
    let app = TestApp::spawn(&db, &toml).await;
    let mut answers: BTreeMap<usize, StatusCode> = BTreeMap::new();

    // A third of the people while the database is up, the second third right as it goes
    // away: those race the shutdown and may get 202 (committed) or 503 (not).
    answers.extend(send_all(&app, 0..PEOPLE / 3).await);
    let racing = tokio::spawn({
        let app = app.clone_handle();
        async move { send_all(&app, PEOPLE / 3..PEOPLE / 2).await }
    });
    cluster.stop_server();
    answers.extend(racing.await.unwrap());
    for (i, status) in send_all(&app, PEOPLE / 2..2 * PEOPLE / 3).await {
        assert_eq!(
            status,
            StatusCode::SERVICE_UNAVAILABLE,
            "with the store down, delivery {i} must get 503"
        );
        answers.insert(i, status);
    }
    for (i, status) in &answers {
        assert!(
            *status == StatusCode::ACCEPTED || *status == StatusCode::SERVICE_UNAVAILABLE,
            "delivery {i} got {status}"
        );
    }
    let ready = app
        .http
        .get(format!("{}/readyz", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    // It comes back; nobody restarts offboard.
    cluster.start_server();
    wait_ready(&app).await;
    answers.extend(send_all(&app, 2 * PEOPLE / 3..PEOPLE).await);
    // Senders retry what got 503.
    let unanswered: Vec<usize> = answers
        .iter()
        .filter(|(_, s)| **s == StatusCode::SERVICE_UNAVAILABLE)
        .map(|(i, _)| *i)
        .collect();
    for i in unanswered {
        answers.insert(i, send(&app, i).await);
    }
    assert!(
        answers.values().all(|s| *s == StatusCode::ACCEPTED),
        "after recovery every delivery is accepted: {answers:?}"
    );

    // Every accepted delivery has its job, and every job completes exactly once.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let jobs = loop {
        let jobs = app
            .store
            .list_jobs(&JobFilter {
                limit: 500,
                ..JobFilter::default()
            })
            .await
            .expect("list jobs");
        if jobs.len() == PEOPLE && jobs.iter().all(|j| j.state == JobState::Succeeded) {
            break jobs;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs did not all succeed: {:?}",
            jobs.iter().map(|j| (j.id, j.state)).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for i in 0..PEOPLE {
        let job = jobs
            .iter()
            .find(|j| j.email == email(i))
            .unwrap_or_else(|| panic!("no job for accepted delivery {i}"));
        assert_eq!(job.outcome, Some(Outcome::Done), "{job:?}");
    }
    let mutations = fake.mutating_requests();
    assert_eq!(mutations.len(), PEOPLE, "one DELETE per person, no repeats");
    let deliveries = app.store.list_deliveries(Some("hr"), 500).await.unwrap();
    assert_eq!(deliveries.len(), PEOPLE);
    app.stop().await;
}

/// Sends deliveries for these people concurrently.
async fn send_all(app: &TestApp, people: std::ops::Range<usize>) -> Vec<(usize, StatusCode)> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in people {
        let app = app.clone_handle();
        tasks.spawn(async move { (i, send(&app, i).await) });
    }
    tasks.join_all().await
}

async fn send(app: &TestApp, i: usize) -> StatusCode {
    let body = json!({ "email": email(i) }).to_string();
    app.post_hook(
        "hr",
        body,
        &[("authorization".into(), "Bearer hr-token".into())],
    )
    .await
    .status()
}

async fn wait_ready(app: &TestApp) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let ready = app
            .http
            .get(format!("{}/readyz", app.base_url))
            .send()
            .await
            .unwrap();
        if ready.status() == StatusCode::OK {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "never ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
