//! Postgres goes away under load and comes back: webhooks get 503 (never a 2xx without a
//! commit), /readyz says 503, the worker stops claiming and retries, and everything resumes
//! by itself. Afterwards every delivery that got a 2xx has its job, and every job completed
//! exactly once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml};
use crate::support::db::{Backend, TestDb};
use crate::support::fake_atlassian::FakeAtlassian;
use crate::support::pg_cluster::PgCluster;
use offboard::domain::{JobState, Outcome};
use offboard::store::JobFilter;
use reqwest::StatusCode;
use serde_json::json;

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
        let retried = send(&app, i).await;
        // A 503 for a write already under way may still have committed (the database went
        // away between its commit and our answer): the retry is then that delivery's
        // duplicate, 200, which loses nothing.
        let status = if retried == StatusCode::OK {
            StatusCode::ACCEPTED
        } else {
            retried
        };
        answers.insert(i, status);
    }
    assert!(
        answers.values().all(|s| *s == StatusCode::ACCEPTED),
        "after recovery every delivery is accepted or a duplicate of an accepted one: {answers:?}"
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
            .find(|j| *j.email == *email(i))
            .unwrap_or_else(|| panic!("no job for accepted delivery {i}"));
        assert_eq!(job.outcome, Some(Outcome::Done), "{job:?}");
    }
    let mutations = fake.mutating_requests();
    assert_eq!(mutations.len(), PEOPLE, "one DELETE per person, no repeats");
    let deliveries = app.store.list_deliveries(Some("hr"), 500).await.unwrap();
    assert_eq!(deliveries.len(), PEOPLE);
    app.stop().await;
}

/// README (HTTP API, "Fast refusals"): with the database gone, webhooks get 503 within 1 s and
/// /readyz within 0.5 s, one after another and many at once; the bounds here leave room for
/// a loaded test machine. Afterwards the refused deliveries are accepted as new (nothing was
/// recorded for them) and what was accepted before the outage is still there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_outage_is_refused_fast() {
    let Some(cluster) = PgCluster::start() else {
        return;
    };
    let fake = FakeAtlassian::start().await;
    let toml = format!(
        r#"{}
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
    // Before the outage: accepted, and the pool holds connections that are about to break.
    for (i, status) in send_all(&app, 0..10).await {
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "delivery {i} before the outage"
        );
    }
    cluster.stop_server();

    let mut timings = Vec::new();
    for i in 10..16 {
        let started = Instant::now();
        let answer = app
            .post_hook(
                "hr",
                json!({ "email": email(i) }).to_string(),
                &[("authorization".into(), "Bearer hr-token".into())],
            )
            .await;
        let took = started.elapsed();
        timings.push(took);
        assert_eq!(
            answer.status(),
            StatusCode::SERVICE_UNAVAILABLE,
            "delivery {i}"
        );
        assert!(
            took < REFUSAL_BOUND,
            "delivery {i} was refused after {took:?}"
        );
        // A store that cannot be reached has certainly not committed: the answer says so,
        // rather than that the write may have happened.
        let body: serde_json::Value = answer.json().await.unwrap();
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains("nothing was accepted")),
            "delivery {i}: {body}"
        );
    }
    eprintln!("sequential 503s with the store down: {timings:?}");

    let started = Instant::now();
    let concurrent = send_all_timed(&app, 16..56).await;
    eprintln!(
        "40 concurrent 503s with the store down: slowest {:?}, all done after {:?}",
        concurrent.iter().map(|(_, _, took)| *took).max().unwrap(),
        started.elapsed()
    );
    for (i, status, took) in &concurrent {
        assert_eq!(*status, StatusCode::SERVICE_UNAVAILABLE, "delivery {i}");
        assert!(
            *took < REFUSAL_BOUND,
            "delivery {i} was refused after {took:?}"
        );
    }

    let mut ready_timings = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        let ready = app
            .http
            .get(format!("{}/readyz", app.base_url))
            .send()
            .await
            .unwrap();
        let took = started.elapsed();
        ready_timings.push(took);
        assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(took < READY_BOUND, "/readyz answered after {took:?}");
    }
    eprintln!("/readyz 503s with the store down: {ready_timings:?}");

    cluster.start_server();
    wait_ready(&app).await;
    // Every refused delivery is new to the store: a 503 recorded nothing.
    for (i, status) in send_all(&app, 10..56).await {
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "delivery {i} after the outage"
        );
    }
    let deliveries = app.store.list_deliveries(Some("hr"), 500).await.unwrap();
    assert_eq!(
        deliveries.len(),
        56,
        "the deliveries from before the outage are kept"
    );
    app.stop().await;
}

/// A store that is reached but does not answer (its write lock held by someone else): the
/// sender still gets its 503 within the deadline, and since the write was under way the
/// answer says so; once the lock is released the write commits, and the sender's retry
/// replays the first answer.
async fn a_stuck_store_is_refused_fast_and_the_retry_replays(db: TestDb) {
    let app = TestApp::spawn(
        &db,
        r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["delete_portal_customer"]
"#,
    )
    .await;
    let lock = WriteLock::take(&db).await;
    let started = Instant::now();
    let refused = app
        .post_hook(
            "hr",
            json!({ "email": email(1) }).to_string(),
            &[("authorization".into(), "Bearer hr-token".into())],
        )
        .await;
    let took = started.elapsed();
    eprintln!("503 from a stuck {:?} store after {took:?}", db.backend);
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(took < REFUSAL_BOUND, "refused after {took:?}");
    let body: serde_json::Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "unavailable", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("send it again"),
        "{body}"
    );
    lock.release().await;
    let retried = send(&app, 1).await;
    assert_eq!(
        retried,
        StatusCode::OK,
        "the write under way committed: the retry is its duplicate"
    );
    let deliveries = app.store.list_deliveries(Some("hr"), 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    app.stop().await;
}

both_stores!(
    a_stuck_store_is_refused_fast_and_the_retry_replays_on,
    a_stuck_store_is_refused_fast_and_the_retry_replays
);

/// Another client holding the lock that recording a delivery needs.
enum WriteLock {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl WriteLock {
    async fn take(db: &TestDb) -> WriteLock {
        use sqlx::Connection as _;
        match db.backend {
            Backend::Sqlite => {
                let mut conn = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query("BEGIN IMMEDIATE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteLock::Sqlite(conn)
            }
            Backend::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
                sqlx::query("BEGIN").execute(&mut conn).await.unwrap();
                sqlx::query("LOCK TABLE deliveries IN ACCESS EXCLUSIVE MODE")
                    .execute(&mut conn)
                    .await
                    .unwrap();
                WriteLock::Postgres(conn)
            }
        }
    }

    async fn release(self) {
        match self {
            WriteLock::Sqlite(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
            WriteLock::Postgres(mut conn) => {
                sqlx::query("ROLLBACK").execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// How long a refusal may take here: README, "HTTP API" asks for 1 s, and for /readyz 0.5 s.
const REFUSAL_BOUND: Duration = Duration::from_millis(2500);
const READY_BOUND: Duration = Duration::from_millis(1500);

async fn send_all_timed(
    app: &TestApp,
    people: std::ops::Range<usize>,
) -> Vec<(usize, StatusCode, Duration)> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in people {
        let app = app.clone_handle();
        tasks.spawn(async move {
            let started = Instant::now();
            let status = send(&app, i).await;
            (i, status, started.elapsed())
        });
    }
    tasks.join_all().await
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
