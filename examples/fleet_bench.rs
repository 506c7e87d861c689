//! One rate budget for the fleet, and priority lanes, measured: replicas on one PostgreSQL
//! against the in-process fake Atlassian, which enforces the budget as a per-tenant limit
//! and answers 429 above it.
//!
//! ```sh
//! cargo run --release --example fleet_bench -- [--rps 50] [--seconds 20] [--bulk 5000] \
//!     [--database-url postgres://postgres@127.0.0.1/postgres]
//! ```
//!
//! For 1, 2 and 3 replicas, each configured with the whole `requests_per_second`, twice: as
//! before (each replica pacing itself, and the urgent job queued first-come behind the bulk
//! ones, as every job was before lanes) and now (the budget shared in Postgres, lanes).
//! Each run enqueues `--bulk` due bulk jobs, lets the replicas work for `--seconds`, then
//! enqueues one urgent job, and prints: the combined requests/s the fake served against the
//! budget, the 429s it answered, how long the urgent job waited for its first request, and
//! the share of the budget used. Each run gets a fresh database, dropped afterwards.

#[path = "../tests/support/fake_atlassian/mod.rs"]
mod fake_atlassian;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use fake_atlassian::FakeAtlassian;
use offboard::atlassian::Client;
use offboard::config::{Config, ConfigOrigin};
use offboard::domain::{Action, Email, Lane, NewChain, NewStep};
use offboard::http::server::Limits;
use offboard::serve::{Role, Service};
use offboard::store::{self, NewDelivery, Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// Replicas sharing one budget, or each pacing itself, against a fake that enforces it.
#[derive(Parser)]
struct Args {
    /// The budget: `requests_per_second` of every replica, and the fake's per-tenant limit.
    #[arg(long, default_value_t = 50.0)]
    rps: f64,
    /// How long the replicas work through the bulk jobs before the urgent one comes.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Due bulk jobs enqueued before each run.
    #[arg(long, default_value_t = 5000)]
    bulk: usize,
    /// The PostgreSQL server; each run creates and drops a database of its own on it
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_database_url(), hide_default_value = true)]
    server: String,
}

fn default_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn create_database(server: &str) -> (String, String) {
    let name = format!("offboard_fleet_{:08x}", rand::random::<u32>());
    let mut conn = PgConnection::connect(server).await.expect("connect");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    (name.clone(), format!("{base}/{name}"))
}

async fn drop_database(server: &str, name: &str) {
    let mut conn = PgConnection::connect(server).await.expect("connect");
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await;
}

fn config(url: &str, fake: &FakeAtlassian, rps: f64) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{url}"
dry_run = false

{atlassian}
[worker]
concurrency = 8
requests_per_second = {rps:?}
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = 1000000

[evidence]
verify_every = "1h"

[[sources]]
name = "hr"
scheme = "token"
secrets = ["fleet-bench-token"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["suspend_access"]
"#,
        atlassian = fake.atlassian_toml(),
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

/// `n` due jobs in `lane`: each one directory search for a person Atlassian does not know.
async fn enqueue(store: &dyn Store, n: usize, prefix: &str, lane: Lane) {
    let people: Vec<usize> = (0..n).collect();
    for (batch, chunk) in people.chunks(1000).enumerate() {
        let chains = chunk
            .iter()
            .map(|i| NewChain {
                email: Email::parse(&format!("{prefix}{i}@example.com")).expect("email"),
                account_id: None,
                account_type: None,
                rule: "bench".into(),
                approval: false,
                steps: vec![NewStep {
                    action: Action::SuspendAccess,
                    params: Default::default(),
                    run_at: Utc::now(),
                    lane,
                }],
            })
            .collect();
        store
            .accept_delivery(NewDelivery {
                max_attempts: 8,
                ..NewDelivery::signed(
                    "bench",
                    &format!("{prefix}-{batch}-{}", rand::random::<u64>()),
                    chains,
                )
            })
            .await
            .expect("enqueue");
    }
}

struct Run {
    served_per_second: f64,
    limited: usize,
    urgent_wait: Option<Duration>,
}

async fn run(args: &Args, replicas: usize, shared: bool) -> Run {
    let (name, url) = create_database(&args.server).await;
    let fake = FakeAtlassian::start().await;
    let config = Arc::new(config(&url, &fake, args.rps));
    let first = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("open the store");
    let mut services = Vec::new();
    for _ in 0..replicas {
        let store = store::open_migrated(&url, &StoreOptions::default())
            .await
            .expect("open the store");
        let atlassian = config.atlassian.as_ref().expect("[atlassian]");
        let fleet = if shared { store.fleet_budget() } else { None };
        let client = Client::for_worker(atlassian, &config.worker, fleet).expect("client");
        let limits = Limits::new(config.max_connections);
        let service =
            Service::start_with_client(config.clone(), store, Role::Worker, limits, Some(client))
                .await
                .expect("start a replica");
        services.push(service);
    }
    // The doctor's reads at start are not the bulk jobs'.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.clear_requests();
    fake.set_tenant_limit(args.rps, args.rps.ceil().max(1.0));
    enqueue(first.as_ref(), args.bulk, "bulk", Lane::Bulk).await;
    // Past the burst, a steady window of the work.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let served_before = fake.served_times().len();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    let served_per_second =
        (fake.served_times().len() - served_before) as f64 / window.elapsed().as_secs_f64();
    let before = fake.request_count();
    let urgent_at = Instant::now();
    // Before lanes, every job was taken first-come: as a bulk job is now.
    let lane = if shared { Lane::Urgent } else { Lane::Bulk };
    enqueue(first.as_ref(), 1, "urgent", lane).await;
    let mut urgent_wait = None;
    while urgent_at.elapsed() < Duration::from_secs(300) {
        let asked = fake.requests()[before..].iter().any(|r| {
            !r.rate_limited
                && r.body
                    .as_ref()
                    .is_some_and(|b| b.to_string().contains("urgent0@example.com"))
        });
        if asked {
            urgent_wait = Some(urgent_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let limited = fake.rate_limited_count();
    for service in services {
        service.stop().await.expect("stop");
    }
    drop(first);
    drop_database(&args.server, &name).await;
    Run {
        served_per_second,
        limited,
        urgent_wait,
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    offboard::install_tls_provider();
    println!(
        "fleet benchmark: budget {} requests/s per API family, {} due bulk jobs, {} s of work",
        args.rps, args.bulk, args.seconds
    );
    for shared in [false, true] {
        for replicas in 1..=3 {
            let r = run(&args, replicas, shared).await;
            println!(
                "{:<25} {replicas} replica(s): {:>6.1} requests/s served of {} ({:>5.1}% of the budget), {:>5} 429s, urgent job's first request after {}",
                if shared {
                    "now (shared, lanes)"
                } else {
                    "before (own, first-come)"
                },
                r.served_per_second,
                args.rps,
                100.0 * r.served_per_second / args.rps,
                r.limited,
                r.urgent_wait
                    .map_or("more than 300 s".to_owned(), |w| format!(
                        "{:.2} s",
                        w.as_secs_f64()
                    )),
            );
        }
    }
}
