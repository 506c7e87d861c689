//! Bulk requests never hold webhooks up (README, "Bulk requests and webhooks"): while 10,000
//! jobs are recorded through `POST /api/v1/jobs`, or by `offboard jobs import` in another
//! process, webhooks sent 20 a second are all answered 202, well within the 800 ms after which
//! they would get a 503; and `/readyz` says not ready exactly when webhooks would get 503.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use sqlx::Connection;
use tokio::sync::watch;

use crate::both_stores;
use crate::support::app::{ADMIN_TOKEN, TestApp};
use crate::support::db::{Backend, TestDb};

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const ROWS: usize = 10_000;

fn config() -> String {
    format!(
        r#"
[safety]
max_actions_per_hour = 1000000
approval_above = 1000000

[[sources]]
name = "hr"
scheme = "standard-webhooks"
secrets = ["{SECRET}"]
  [[sources.rules]]
  name = "leaver"
  when = {{ "/type" = "employee.left" }}
  email = "/data/email"
  actions = ["suspend_access"]
"#
    )
}

/// Each webhook's status and how long its answer took.
type Answers = Vec<(Option<StatusCode>, Duration)>;

/// Sends a fresh signed webhook every 50 ms until `stop`.
async fn webhooks(app: Arc<TestApp>, mut stop: watch::Receiver<bool>) -> Answers {
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut sent = tokio::task::JoinSet::new();
    let mut n = 0;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        n += 1;
        let body = json!({ "type": "employee.left", "data": { "email": format!("hook{n}-{}@example.com", rand::random::<u32>()) } })
            .to_string();
        let app = app.clone();
        sent.spawn(async move {
            let started = Instant::now();
            let headers = app.sign("hr", body.as_bytes());
            let status = app
                .http
                .post(format!("{}/hooks/hr", app.base_url))
                .header("content-type", "application/json")
                .headers(
                    headers
                        .iter()
                        .map(|(k, v)| (k.parse().unwrap(), v.parse().unwrap()))
                        .collect(),
                )
                .body(body)
                .send()
                .await
                .ok()
                .map(|r| r.status());
            (status, started.elapsed())
        });
    }
    sent.join_all().await
}

/// Runs `bulk` while webhooks are sent; what they got, and how long `bulk` took.
async fn during<F: std::future::Future<Output = ()>>(
    app: &Arc<TestApp>,
    bulk: F,
) -> (Answers, Duration) {
    let (stop, stopped) = watch::channel(false);
    let sender = tokio::spawn(webhooks(app.clone(), stopped));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    bulk.await;
    let took = started.elapsed();
    stop.send(true).unwrap();
    (sender.await.unwrap(), took)
}

fn assert_all_answered(what: &str, answers: &Answers, took: Duration) {
    let overlapping = (took.as_millis() / 50) as usize;
    assert!(
        answers.len() >= overlapping.min(10),
        "{what}: {} webhooks over {took:?}",
        answers.len()
    );
    let slowest = answers.iter().map(|(_, d)| *d).max().unwrap_or_default();
    let refused: Vec<_> = answers
        .iter()
        .filter(|(status, _)| *status != Some(StatusCode::ACCEPTED))
        .collect();
    assert!(
        refused.is_empty(),
        "{what}: {} of {} webhooks not answered 202: {refused:?}",
        refused.len(),
        answers.len()
    );
    // A webhook that waits 800 ms for the store is answered 503 (the figures of a release
    // build are in the README, "Performance").
    assert!(
        slowest < Duration::from_millis(800),
        "{what}: the slowest webhook took {slowest:?}"
    );
    eprintln!(
        "{what}: {} webhooks, all 202, slowest {slowest:?}, bulk took {took:?}",
        answers.len()
    );
}

fn write_config(dir: &Path, db: &TestDb) -> std::path::PathBuf {
    let path = dir.join("offboard.toml");
    let text = format!(
        "database_url = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{}",
        db.url,
        config()
    );
    std::fs::write(&path, text).unwrap();
    path
}

async fn webhooks_are_answered_while_bulk_requests_are_recorded(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    let app = Arc::new(TestApp::spawn(&db, &config()).await);

    let entries: Vec<_> = (0..ROWS)
        .map(|i| json!({ "action": "delete_portal_customer", "email": format!("api{i}@example.com"), "account_id": format!("qm:api{i}") }))
        .collect();
    let (answers, took) = during(&app, async {
        let response = app
            .admin(reqwest::Method::POST, "/api/v1/jobs")
            .json(&json!({ "jobs": entries }))
            .timeout(Duration::from_secs(300))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["jobs"].as_array().unwrap().len(), ROWS);
    })
    .await;
    assert_all_answered("POST /api/v1/jobs", &answers, took);
    let webhooks_before = answers.len();

    // `offboard jobs import`, in a process of its own.
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db);
    let csv = dir.path().join("leavers.csv");
    let mut text = String::from("account_id,email\n");
    for i in 0..ROWS {
        text.push_str(&format!("qm:cli{i},cli{i}@example.com\n"));
    }
    std::fs::write(&csv, text).unwrap();
    let (answers, took) = during(&app, async {
        let (config, csv) = (config.clone(), csv.clone());
        let out = tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_offboard"))
                .args(["jobs", "import"])
                .arg(&csv)
                .args(["--action", "delete_portal_customer", "--config"])
                .arg(&config)
                .env_remove("DATABASE_URL")
                .env_remove("OFFBOARD_CONFIG")
                .output()
                .unwrap()
        })
        .await
        .unwrap();
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    })
    .await;
    assert_all_answered("jobs import", &answers, took);

    // Every row and every webhook made its one job.
    let counts = app.store.count_by_state().await.unwrap();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    assert_eq!(total as usize, 2 * ROWS + webhooks_before + answers.len());
}
both_stores!(
    webhooks_are_answered_while_bulk_requests_are_recorded_on,
    webhooks_are_answered_while_bulk_requests_are_recorded
);

/// On SQLite a read answers while another process holds the write lock, but a webhook
/// waits for the lock and gets 503: `/readyz` takes the lock, as a webhook would.
#[tokio::test]
async fn readyz_is_not_ready_while_webhooks_would_get_503() {
    let db = TestDb::sqlite();
    assert_eq!(db.backend, Backend::Sqlite);
    let app = TestApp::spawn(&db, &config()).await;
    let ready = || async {
        app.http
            .get(format!("{}/readyz", app.base_url))
            .send()
            .await
            .unwrap()
            .status()
    };
    let webhook = || async {
        let body = json!({ "type": "employee.left", "data": { "email": format!("p{}@example.com", rand::random::<u32>()) } }).to_string();
        app.send_signed("hr", body.as_bytes()).await.status()
    };
    assert_eq!(ready().await, StatusCode::OK);
    assert_eq!(webhook().await, StatusCode::ACCEPTED);

    // Another process's writer, holding the lock as a long write would.
    let mut other = sqlx::SqliteConnection::connect(&db.url).await.unwrap();
    sqlx::query("BEGIN IMMEDIATE")
        .execute(&mut other)
        .await
        .unwrap();
    assert_eq!(ready().await, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(webhook().await, StatusCode::SERVICE_UNAVAILABLE);
    sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();

    assert_eq!(ready().await, StatusCode::OK);
    assert_eq!(webhook().await, StatusCode::ACCEPTED);
}
