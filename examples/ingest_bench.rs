//! Ingestion benchmark: signed webhooks over HTTP into a running service, on PostgreSQL and
//! on SQLite, plus the durable-commit ceiling of the same PostgreSQL.
//!
//! ```sh
//! cargo run --release --example ingest_bench -- [--concurrency 32] [--requests 4000] \
//!     [--rounds 5] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! Every request is a distinct Standard Webhooks delivery (verified HMAC, rules, one job) and
//! counts only when answered 202, i.e. after its delivery and job were committed. The ceiling
//! is the rate of plain one-row INSERT transactions into the same server at the same
//! concurrency: what any durable receiver could at best reach there. On a small machine both
//! move by 10-20% from run to run, so the Postgres pair is measured `--rounds` times, each
//! ingest right before its ceiling, and the medians are reported with every round.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use offboard::config::{Config, ConfigOrigin};
use offboard::serve::{Role, Service};
use offboard::store::{self, StoreOptions};
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

/// Signed webhooks over HTTP into a running service on PostgreSQL and SQLite, against the
/// one-row INSERT ceiling of the same PostgreSQL.
#[derive(Parser)]
struct Args {
    /// Requests in flight at once, and connections of the ceiling's INSERTs.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// Deliveries per measurement, each a distinct person.
    #[arg(long, default_value_t = 4000)]
    requests: usize,
    /// Postgres measurements (ingest, then its ceiling); the medians are reported.
    #[arg(long, default_value_t = 5, value_parser = at_least_one)]
    rounds: usize,
    /// The PostgreSQL server; the benchmark creates databases of its own on it
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    // The resolved default is not shown: TEST_DATABASE_URL may carry a password.
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_database_url(), hide_default_value = true)]
    server: String,
}

/// `TEST_DATABASE_URL` where the tests' server is, else a local PostgreSQL.
fn default_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn config(database_url: &str) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{database_url}"

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

struct Figures {
    accepted: usize,
    elapsed: Duration,
    p50: Duration,
    p99: Duration,
}

async fn run_ingest(database_url: &str, concurrency: usize, requests: usize) -> Figures {
    let config = Arc::new(config(database_url));
    let options = StoreOptions {
        max_connections: concurrency as u32,
        ..StoreOptions::default()
    };
    let store = store::open_migrated(database_url, &options)
        .await
        .expect("open store");
    let service = Service::start_with_store(config.clone(), store, Role::Api)
        .await
        .expect("start service");
    let url = format!("http://{}/hooks/hr", service.addr);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .expect("client");
    let next = Arc::new(AtomicUsize::new(0));
    // People of their own: the rounds share one database, and a person an earlier round named
    // still has a live job, which a delivery naming them again would resolve to.
    let run = rand::random::<u32>();
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, url, next, config) =
            (client.clone(), url.clone(), next.clone(), config.clone());
        tasks.spawn(async move {
            let verifier = &config.source("hr").expect("source").verifier;
            let mut latencies = Vec::new();
            let mut accepted = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= requests {
                    break;
                }
                let body = format!(
                    r#"{{"type":"employee.left","data":{{"email":"person{i}-{run:08x}@example.com","id":{i}}}}}"#
                );
                let sent = Instant::now();
                let mut request = client.post(&url).body(body.clone());
                for (name, value) in verifier.sign(body.as_bytes(), chrono::Utc::now()) {
                    request = request.header(name, value);
                }
                let response = request.send().await.expect("POST");
                let status = response.status();
                let _ = response.bytes().await;
                latencies.push(sent.elapsed());
                if status == reqwest::StatusCode::ACCEPTED {
                    accepted += 1;
                }
            }
            (accepted, latencies)
        });
    }
    let mut accepted = 0;
    let mut latencies = Vec::with_capacity(requests);
    for (a, l) in tasks.join_all().await {
        accepted += a;
        latencies.extend(l);
    }
    let elapsed = started.elapsed();
    service.stop().await.expect("stop");
    latencies.sort();
    Figures {
        accepted,
        elapsed,
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    }
}

/// One-row INSERT transactions (autocommit) at the same concurrency, into the same server.
async fn insert_ceiling(database_url: &str, concurrency: usize, rows: usize) -> f64 {
    let pool = PgPoolOptions::new()
        .max_connections(concurrency as u32)
        .connect(database_url)
        .await
        .expect("connect");
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS ceiling (id BIGSERIAL PRIMARY KEY, payload TEXT NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create table");
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pool, next) = (pool.clone(), next.clone());
        tasks.spawn(async move {
            while next.fetch_add(1, Ordering::Relaxed) < rows {
                sqlx::query("INSERT INTO ceiling (payload) VALUES ($1)")
                    .bind("person@example.com")
                    .execute(&pool)
                    .await
                    .expect("insert");
            }
        });
    }
    tasks.join_all().await;
    rows as f64 / started.elapsed().as_secs_f64()
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn print(store: &str, figures: &Figures, requests: usize) {
    println!(
        "{store:<9} accepted {}/{requests} in {:.2} s: {:.0} accepted/s, p50 {:.2} ms, p99 {:.2} ms",
        figures.accepted,
        figures.elapsed.as_secs_f64(),
        figures.accepted as f64 / figures.elapsed.as_secs_f64(),
        figures.p50.as_secs_f64() * 1000.0,
        figures.p99.as_secs_f64() * 1000.0,
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    println!(
        "ingest benchmark: {} signed deliveries, concurrency {}",
        args.requests, args.concurrency
    );

    let name = format!("offboard_bench_{:08x}", rand::random::<u32>());
    let mut admin = PgConnection::connect(&args.server)
        .await
        .expect("connect to Postgres");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let base = args
        .server
        .rsplit_once('/')
        .map_or(args.server.as_str(), |(b, _)| b);
    let pg_url = format!("{base}/{name}");

    let (mut rates, mut ceilings, mut ratios, mut p99s) = (vec![], vec![], vec![], vec![]);
    for round in 1..=args.rounds {
        let postgres = run_ingest(&pg_url, args.concurrency, args.requests).await;
        print(&format!("postgres #{round}"), &postgres, args.requests);
        let ceiling = insert_ceiling(&pg_url, args.concurrency, args.requests).await;
        let rate = postgres.accepted as f64 / postgres.elapsed.as_secs_f64();
        println!(
            "postgres #{round} ceiling: {ceiling:.0} one-row INSERT transactions/s at {} connections; accepted/s is {:.0}% of it",
            args.concurrency,
            100.0 * rate / ceiling
        );
        rates.push(rate);
        ceilings.push(ceiling);
        ratios.push(100.0 * rate / ceiling);
        p99s.push(postgres.p99.as_secs_f64() * 1000.0);
    }
    println!(
        "postgres  median of {} rounds: {:.0} accepted/s, ceiling {:.0}/s, {:.0}% of the ceiling, p99 {:.2} ms (worst {:.2} ms)",
        args.rounds,
        median(&mut rates),
        median(&mut ceilings),
        median(&mut ratios),
        median(&mut p99s),
        p99s.iter().copied().fold(0.0, f64::max),
    );
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");

    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let sqlite = run_ingest(&sqlite_url, args.concurrency, args.requests).await;
    print("sqlite", &sqlite, args.requests);
}
