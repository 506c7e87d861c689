//! Webhooks during a bulk request (README, "Performance"): what a sender sees while an admin
//! records a large list.
//!
//! ```sh
//! cargo run --release --example bulk_webhooks -- [--rows 10000] [--webhooks-per-second 20] \
//!     [--database-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! For SQLite and for PostgreSQL, the service (API role) answers signed webhooks sent at
//! `--webhooks-per-second`, first alone for 3 s (the usual latency), then while a request of
//! `--rows` jobs is recorded, once through `POST /api/v1/jobs` (the service's own store) and
//! once as `offboard jobs import` does it (a store of its own, as the CLI in another process
//! has). Prints, per phase, the webhooks sent, how many were not answered 202, and their
//! latency (p50, p99, max), and how long the bulk request took.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use offboard::config::{Config, ConfigOrigin};
use offboard::manual::{self, ManualSource};
use offboard::serve::{Role, Service};
use offboard::store::{self, StoreOptions};
use sqlx::{Connection, PgConnection};
use tokio::sync::watch;

#[derive(Parser)]
#[command(about = "Webhook latency while a bulk request is recorded, on SQLite and PostgreSQL")]
struct Args {
    /// Jobs in the bulk request.
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Webhooks sent a second, throughout.
    #[arg(long, default_value_t = 20)]
    webhooks_per_second: u32,
    /// A PostgreSQL server; a database is created on it and dropped after
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    // The resolved default is not shown: TEST_DATABASE_URL may carry a password.
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_server(), hide_default_value = true)]
    database_url: String,
}

fn default_server() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const ADMIN_TOKEN: &str = "bench-admin-token";

fn config(database_url: &str) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{database_url}"
admin_token = "{ADMIN_TOKEN}"

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
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

/// What the webhooks of one phase saw.
#[derive(Default)]
struct Answers {
    latencies: Vec<Duration>,
    refused: usize,
}

impl Answers {
    fn report(&mut self, phase: &str) {
        self.latencies.sort();
        let at = |q: f64| {
            let n = self.latencies.len();
            if n == 0 {
                return 0.0;
            }
            let i = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            self.latencies[i].as_secs_f64() * 1000.0
        };
        println!(
            "  {phase}: {} webhooks, {} not 202; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latencies.len(),
            self.refused,
            at(0.50),
            at(0.99),
            at(1.0),
        );
    }
}

/// Sends signed webhooks at `rate` until `stop` turns true.
async fn send_webhooks(
    url: String,
    config: Arc<Config>,
    rate: u32,
    mut stop: watch::Receiver<bool>,
) -> Answers {
    let client = reqwest::Client::new();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
    let mut sent = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.wait_for(|stop| *stop) => break,
        }
        let i: u64 = rand::random();
        let body = format!(
            r#"{{"type":"employee.left","data":{{"email":"hook{i}@example.com","id":{i}}}}}"#
        );
        let verifier = config.source("hr").expect("source").verifier.clone();
        let (client, url) = (client.clone(), url.clone());
        sent.spawn(async move {
            let mut request = client.post(&url).body(body.clone());
            for (name, value) in verifier.sign(body.as_bytes(), chrono::Utc::now()) {
                request = request.header(name, value);
            }
            let started = Instant::now();
            let status = request.send().await.map(|r| r.status());
            (started.elapsed(), status)
        });
    }
    let mut answers = Answers::default();
    for (latency, status) in sent.join_all().await {
        answers.latencies.push(latency);
        if !matches!(status, Ok(reqwest::StatusCode::ACCEPTED)) {
            answers.refused += 1;
        }
    }
    answers
}

/// Webhooks at `rate` while `bulk` runs (or for 3 s with none); the answers and how long the
/// bulk request took.
async fn phase<F>(
    service: &Service,
    config: &Arc<Config>,
    rate: u32,
    bulk: F,
) -> (Answers, Duration)
where
    F: std::future::Future<Output = ()>,
{
    let (stop, stopped) = watch::channel(false);
    let url = format!("http://{}/hooks/hr", service.addr);
    let sender = tokio::spawn(send_webhooks(url, config.clone(), rate, stopped));
    // The sender is under way before the bulk request starts.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    bulk.await;
    let took = started.elapsed();
    stop.send(true).expect("sender listens");
    (sender.await.expect("sender"), took)
}

fn entries(rows: usize, tag: &str) -> serde_json::Value {
    let jobs: Vec<serde_json::Value> = (0..rows)
        .map(|i| {
            serde_json::json!({
                "action": "delete_portal_customer",
                "email": format!("{tag}{i}@example.com"),
                "account_id": format!("qm:{tag}{i:06}"),
            })
        })
        .collect();
    serde_json::json!({ "jobs": jobs })
}

fn csv(rows: usize) -> Vec<u8> {
    let mut text = String::from("account_id,email\n");
    for i in 0..rows {
        text.push_str(&format!("qm:{i:06},import{i}@example.com\n"));
    }
    text.into_bytes()
}

async fn run(store_name: &str, url: &str, args: &Args) {
    let config = Arc::new(config(url));
    let store = store::open_migrated(url, &StoreOptions::default())
        .await
        .expect("open store");
    let service = Service::start_with_store(config.clone(), store, Role::Api)
        .await
        .expect("start service");
    let rate = args.webhooks_per_second;
    println!("{store_name}, {rate} webhooks/s:");

    let (mut alone, _) = phase(&service, &config, rate, async {
        tokio::time::sleep(Duration::from_secs(3)).await;
    })
    .await;
    alone.report("alone");

    let api = format!("http://{}/api/v1/jobs", service.addr);
    let body = entries(args.rows, "api");
    let (mut during, took) = phase(&service, &config, rate, async {
        let response = reqwest::Client::new()
            .post(&api)
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .timeout(Duration::from_secs(600))
            .send()
            .await
            .expect("POST /api/v1/jobs");
        assert!(response.status().is_success(), "{}", response.status());
    })
    .await;
    during.report(&format!(
        "during POST /api/v1/jobs of {} jobs ({:.2} s)",
        args.rows,
        took.as_secs_f64()
    ));

    // `offboard jobs import` opens a store of its own.
    let cli_store = store::open_migrated(url, &StoreOptions::default())
        .await
        .expect("open store");
    let file = csv(args.rows);
    let (mut during, took) = phase(&service, &config, rate, async {
        let chains = manual::import::check(
            &config,
            &file,
            Some("delete_portal_customer"),
            false,
            chrono::Utc::now(),
            |_| {},
        )
        .expect("a valid file");
        let key = format!("import:bench-{}", rand::random::<u64>());
        manual::enqueue(
            cli_store.as_ref(),
            &config,
            ManualSource::Cli,
            &key,
            &file,
            chains,
        )
        .await
        .expect("import");
    })
    .await;
    during.report(&format!(
        "during jobs import of {} rows ({:.2} s)",
        args.rows,
        took.as_secs_f64()
    ));
    service.stop().await.expect("stop");
}

#[tokio::main]
async fn main() {
    offboard::install_tls_provider();
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}/bench.db", dir.path().display());
    run("SQLite", &sqlite, &args).await;

    let server = &args.database_url;
    let Ok(mut conn) = PgConnection::connect(server).await else {
        println!("PostgreSQL: skipped, no server at --database-url");
        return;
    };
    let name = format!("offboard_bench_{:08x}", rand::random::<u32>());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(base, _)| base);
    run("PostgreSQL", &format!("{base}/{name}"), &args).await;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop database");
}
