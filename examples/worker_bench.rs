//! Worker benchmark on PostgreSQL, against the in-process fake Atlassian.
//!
//! ```sh
//! cargo run --release --example worker_bench -- [--jobs 6000] [--concurrency 1,4,16] \
//!     [--chains 300] [--only chains] [--database-url postgres://postgres@127.0.0.1/postgres]
//! ```
//!
//! Prints: throughput (jobs/s) at concurrency 1, 4 and 16 with a zero-latency fake and no
//! rate limit; pickup latency from the commit of an enqueue (by a separate store, as another
//! replica would) to the job's first request at the fake, on an idle worker; and the request
//! rate the worker keeps with `requests_per_second = 10`; and Atlassian requests per
//! completed job for chains of 1, 2 and 3 steps (one lookup per chain, then one call per
//! step, and two counting reads before `delete_account`: (steps + 1 + 2 deletions) /
//! steps). Each run gets a fresh database, dropped afterwards. `--only chains` runs the last
//! measurement alone.

#[path = "../tests/support/fake_atlassian/mod.rs"]
mod fake_atlassian;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use fake_atlassian::FakeAtlassian;
use offboard::config::{Config, ConfigOrigin};
use offboard::domain::Email;
use offboard::domain::{Action, JobState, NewChain, NewStep};
use offboard::serve::{Role, Service};
use offboard::store::{self, NewDelivery, Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// The worker on PostgreSQL against the in-process fake Atlassian: throughput, pickup
/// latency, pacing and requests per job.
#[derive(Parser)]
struct Args {
    /// Jobs per throughput run.
    #[arg(long, default_value_t = 6000)]
    jobs: usize,
    /// The PostgreSQL server; each run creates and drops a database of its own on it
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    // The resolved default is not shown: TEST_DATABASE_URL may carry a password.
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_database_url(), hide_default_value = true)]
    server: String,
    /// The concurrency levels of the throughput runs, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 4, 16])]
    concurrency: Vec<usize>,
    /// People per chain length in the requests-per-job runs.
    #[arg(long, default_value_t = 300)]
    chains: usize,
    /// Run only this measurement.
    #[arg(long, value_enum)]
    only: Option<Only>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Only {
    /// Atlassian requests per completed job, for chains of 1, 2 and 3 steps.
    Chains,
}

/// `TEST_DATABASE_URL` where the tests' server is, else a local PostgreSQL.
fn default_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database for one measurement, dropped on drop.
struct BenchDb {
    server: String,
    name: String,
    url: String,
}

impl BenchDb {
    async fn create(server: &str) -> BenchDb {
        let name = format!("offboard_bench_{:08x}", rand::random::<u32>());
        let mut conn = PgConnection::connect(server)
            .await
            .expect("connect to Postgres");
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await
            .expect("create database");
        let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
        BenchDb {
            server: server.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    async fn drop_now(self) {
        let mut conn = PgConnection::connect(&self.server).await.expect("connect");
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut conn)
        .await
        .expect("drop database");
    }
}

fn config(db: &BenchDb, fake: &FakeAtlassian, concurrency: usize, rps: f64) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{db}"
dry_run = false

{atlassian}
[worker]
concurrency = {concurrency}
requests_per_second = {rps}
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = 1000000
"#,
        db = db.url,
        atlassian = fake.atlassian_toml(),
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

fn email(i: usize) -> Email {
    Email::parse(&format!("bench{i}@example.com")).expect("email")
}

/// Enqueues `people` revoke jobs, `per_delivery` people per delivery.
async fn enqueue(store: &dyn Store, people: std::ops::Range<usize>, per_delivery: usize) {
    let revoke = [(Action::RevokePortalAccess, None)];
    enqueue_chains(store, people, per_delivery, &revoke).await;
}

/// A managed leaver's chain, cut to its first `steps` steps.
fn managed_chain(steps: usize) -> Vec<(Action, Option<(&'static str, &'static str)>)> {
    let all = [
        (Action::SuspendAccess, None),
        (Action::RemoveFromGroup, Some(("group_id", "g-1"))),
        (Action::DeleteAccount, None),
    ];
    all[..steps].to_vec()
}

/// Enqueues one chain of `steps` for each of `people`, `per_delivery` people per delivery.
async fn enqueue_chains(
    store: &dyn Store,
    people: std::ops::Range<usize>,
    per_delivery: usize,
    steps: &[(Action, Option<(&str, &str)>)],
) {
    let people: Vec<usize> = people.collect();
    for batch in people.chunks(per_delivery) {
        let chains = batch
            .iter()
            .map(|i| NewChain {
                email: email(*i),
                account_id: None,
                account_type: None,
                rule: "bench".into(),
                approval: false,
                steps: steps
                    .iter()
                    .map(|(action, param)| NewStep {
                        action: *action,
                        params: param
                            .iter()
                            .map(|(k, v)| ((*k).to_owned(), serde_json::json!(v)))
                            .collect(),
                        run_at: Utc::now(),
                        lane: offboard::domain::Lane::Bulk,
                    })
                    .collect(),
            })
            .collect();
        store
            .accept_delivery(NewDelivery {
                max_attempts: 8,
                ..NewDelivery::signed(
                    "bench",
                    &format!("d-{}-{}", batch[0], rand::random::<u64>()),
                    chains,
                )
            })
            .await
            .expect("enqueue");
    }
}

/// Waits until the fake has seen `requests` requests (cheap to poll), then until the store
/// says every job succeeded. Polling the store itself every few milliseconds would cost the
/// database more than the worker does.
async fn wait_all_succeeded(store: &dyn Store, fake: &FakeAtlassian, requests: usize, total: u64) {
    while fake.request_count() < requests {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    loop {
        let counts = store.count_by_state().await.expect("count");
        let done = counts
            .iter()
            .find(|(s, _)| *s == JobState::Succeeded)
            .map_or(0, |(_, n)| *n);
        let failed = counts
            .iter()
            .find(|(s, _)| *s == JobState::Failed)
            .map_or(0, |(_, n)| *n);
        assert_eq!(failed, 0, "jobs failed during the benchmark");
        if done >= total {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn open(url: &str) -> Arc<dyn Store> {
    store::open_migrated(url, &StoreOptions::default())
        .await
        .expect("open store")
}

async fn throughput(server: &str, jobs: usize, concurrency: usize) -> f64 {
    let db = BenchDb::create(server).await;
    let fake = FakeAtlassian::start().await;
    for i in 0..jobs {
        fake.add_customer(&format!("qm:{i}"), email(i).as_str());
    }
    let store = open(&db.url).await;
    enqueue(store.as_ref(), 0..jobs, 100).await;
    let config = Arc::new(config(&db, &fake, concurrency, 100_000.0));
    let started = Instant::now();
    let service = Service::start_with_store(config, store.clone(), Role::Worker)
        .await
        .expect("start worker");
    wait_all_succeeded(store.as_ref(), &fake, 2 * jobs, jobs as u64).await;
    let elapsed = started.elapsed();
    service.stop().await.expect("stop");
    drop(store);
    db.drop_now().await;
    jobs as f64 / elapsed.as_secs_f64()
}

async fn pickup_latency(server: &str, samples: usize) -> (Duration, Duration) {
    let db = BenchDb::create(server).await;
    let fake = FakeAtlassian::start().await;
    for i in 0..samples {
        fake.add_customer(&format!("qm:{i}"), email(i).as_str());
    }
    let worker_store = open(&db.url).await;
    // Another replica enqueues: the worker learns of it through LISTEN/NOTIFY.
    let api_store = open(&db.url).await;
    let config = Arc::new(config(&db, &fake, 4, 100_000.0));
    let service = Service::start_with_store(config, worker_store.clone(), Role::Worker)
        .await
        .expect("start worker");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut latencies = Vec::with_capacity(samples);
    for i in 0..samples {
        let seen = fake.request_count();
        enqueue(api_store.as_ref(), i..i + 1, 1).await;
        let committed = tokio::time::Instant::now();
        while fake.request_count() <= seen {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let started = fake.requests()[seen].received_at;
        latencies.push(started.duration_since(committed));
        wait_all_succeeded(worker_store.as_ref(), &fake, 2 * (i + 1), (i + 1) as u64).await;
        // Let the worker go idle again between samples.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.stop().await.expect("stop");
    drop((worker_store, api_store));
    db.drop_now().await;
    latencies.sort();
    (percentile(&latencies, 0.50), percentile(&latencies, 0.99))
}

/// Runs jobs through a worker paced at `rps` and returns (overall rate, worst excess over
/// the bucket in any window).
async fn pacing(server: &str, jobs: usize, rps: f64) -> (f64, usize, (i64, i64)) {
    let db = BenchDb::create(server).await;
    let fake = FakeAtlassian::start().await;
    for i in 0..jobs {
        fake.add_customer(&format!("qm:{i}"), email(i).as_str());
    }
    let store = open(&db.url).await;
    enqueue(store.as_ref(), 0..jobs, 100).await;
    let config = Arc::new(config(&db, &fake, 16, rps));
    let service = Service::start_with_store(config, store.clone(), Role::Worker)
        .await
        .expect("start worker");
    wait_all_succeeded(store.as_ref(), &fake, 2 * jobs, jobs as u64).await;
    service.stop().await.expect("stop");
    drop(store);
    db.drop_now().await;
    let times: Vec<tokio::time::Instant> = fake.requests().iter().map(|r| r.received_at).collect();
    let span = times.last().unwrap().duration_since(times[0]).as_secs_f64();
    // Steady rate: requests after the initial burst, over the time they took.
    let burst = rps.ceil().max(1.0) as usize;
    let steady = (times.len() - burst) as f64 / span;
    // The bucket allows at most burst + rps * t requests in any window of length t. Times are
    // arrival times at the fake, so loopback jitter can bring two requests closer than they
    // were sent: report the excess as measured and with 5 ms of jitter allowed.
    let excess = |jitter: f64| {
        let mut worst = i64::MIN;
        for (i, start) in times.iter().enumerate() {
            for (j, end) in times.iter().enumerate().skip(i) {
                let t = end.duration_since(*start).as_secs_f64() + jitter;
                let allowed = burst as f64 + rps * t;
                worst = worst.max((j - i + 1) as i64 - allowed.floor() as i64);
            }
        }
        worst
    };
    let worst_excess = (excess(0.0), excess(0.005));
    (steady, times.len(), worst_excess)
}

/// Runs one chain of `steps` for each of `people` managed leavers and returns (jobs, Atlassian
/// requests) once every job succeeded.
async fn requests_per_job(server: &str, people: usize, steps: usize) -> (usize, usize) {
    let db = BenchDb::create(server).await;
    let fake = FakeAtlassian::start().await;
    for i in 0..people {
        let mut account =
            fake_atlassian::FakeAccount::managed(&format!("acc-{i}"), email(i).as_str());
        account.groups.insert("g-1".to_owned());
        fake.add_account(account);
    }
    let store = open(&db.url).await;
    enqueue_chains(store.as_ref(), 0..people, 100, &managed_chain(steps)).await;
    let config = Arc::new(config(&db, &fake, 16, 100_000.0));
    let service = Service::start_with_store(config, store.clone(), Role::Worker)
        .await
        .expect("start worker");
    let jobs = people * steps;
    wait_all_succeeded(store.as_ref(), &fake, 0, jobs as u64).await;
    service.stop().await.expect("stop");
    let requests = fake.request_count();
    drop(store);
    db.drop_now().await;
    (jobs, requests)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    println!(
        "worker benchmark on {} (fresh database per run)",
        redact(&args.server)
    );
    if args.only != Some(Only::Chains) {
        measure_throughput_latency_pacing(&args).await;
    }
    for steps in 1..=3 {
        let (jobs, requests) = requests_per_job(&args.server, args.chains, steps).await;
        // One lookup per chain, one call per step, and two counting reads before a deletion
        // (README, "No silent loss").
        let deletions = managed_chain(steps)
            .iter()
            .filter(|(action, _)| action.spec().deletes_owned_content)
            .count();
        println!(
            "requests per job, {steps}-step chains: {:.3} ({requests} Atlassian requests for {jobs} jobs, {} people; target {:.3})",
            requests as f64 / jobs as f64,
            args.chains,
            (steps + 1 + 2 * deletions) as f64 / steps as f64
        );
    }
}

async fn measure_throughput_latency_pacing(args: &Args) {
    for &concurrency in &args.concurrency {
        let rate = throughput(&args.server, args.jobs, concurrency).await;
        println!(
            "throughput: concurrency {concurrency:>2}: {rate:>7.0} jobs/s ({} jobs, 2 requests each)",
            args.jobs
        );
    }
    let (p50, p99) = pickup_latency(&args.server, 200).await;
    println!(
        "pickup latency (commit by another store → first request at the fake), idle worker: p50 {:.2} ms, p99 {:.2} ms",
        p50.as_secs_f64() * 1000.0,
        p99.as_secs_f64() * 1000.0
    );
    let (rate, requests, excess) = pacing(&args.server, 60, 10.0).await;
    println!(
        "pacing at requests_per_second = 10: {rate:.2} requests/s after the burst ({requests} requests); worst excess over the bucket in any window: {} as measured at the fake, {} allowing 5 ms of arrival jitter (≤ 0 means never above)",
        excess.0, excess.1
    );
}

fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
