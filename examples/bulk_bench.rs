//! Bulk benchmark (README, "Performance"): what an admin with a list waits for.
//!
//! ```sh
//! cargo run --release --example bulk_bench -- [--rows 10000] [--drain 2000] [--rps 20] \
//!     [--concurrency 4] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! Prints: importing a CSV of `--rows` rows (`account_id,email`, one `delete_portal_customer`
//! each) through `offboard jobs import`'s own code, on SQLite and on PostgreSQL, in rows/s,
//! with the check and the enqueue timed apart; and draining `--drain` such imported jobs with
//! the worker at `requests_per_second = --rps` and `concurrency = --concurrency` (the
//! default's 4) against the in-process fake Atlassian: the request rate kept from the first
//! to the last job request, as a share of the allowed rate, the jobs finished a second, and
//! the requests per job (a job with `account_id` reads its account by id, in a bulk read
//! shared with the jobs reading at the same time, then deletes). The fake answers bulk reads
//! in pages of 10.

#[path = "../tests/support/fake_atlassian/mod.rs"]
mod fake_atlassian;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use fake_atlassian::{FakeAccount, FakeAtlassian};
use offboard::config::{Config, ConfigOrigin};
use offboard::domain::JobState;
use offboard::manual::{self, ManualSource};
use offboard::serve::{Role, Service};
use offboard::store::{self, Store, StoreOptions};
use sqlx::{Connection, PgConnection};

/// Times `offboard jobs import` of a CSV on SQLite and PostgreSQL, then drains imported jobs
/// against the in-process fake Atlassian.
#[derive(Parser)]
struct Args {
    /// Rows of the imported CSV (`account_id,email`, one `delete_portal_customer` each).
    #[arg(long, default_value_t = 10_000)]
    rows: usize,
    /// Imported jobs the worker drains afterwards; 0 skips the drain.
    #[arg(long, default_value_t = 2_000)]
    drain: usize,
    /// The worker's `requests_per_second` while draining.
    #[arg(long, default_value_t = 20.0)]
    rps: f64,
    /// The worker's `concurrency` while draining.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// The PostgreSQL server; the Postgres import creates and drops a database of its own on it
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

fn csv(rows: usize) -> Vec<u8> {
    let mut text = String::from("account_id,email,display_name,active,service_desks\n");
    for i in 0..rows {
        text.push_str(&format!("qm:{i:06},bulk{i}@example.com,Bulk {i},true,10\n"));
    }
    text.into_bytes()
}

/// A config over `database_url`: every row becomes a pending job (no mass approval), live,
/// paced at `rps` with `concurrency` jobs at once, pointed at `fake` when there is one.
fn config(
    database_url: &str,
    fake: Option<&FakeAtlassian>,
    rps: f64,
    concurrency: usize,
) -> Config {
    let atlassian = fake.map_or(String::new(), |fake| {
        format!(
            "[atlassian]\nsite_url = \"{url}\"\nsite_email = \"{email}\"\nsite_api_token = \"{token}\"\n",
            url = fake.url,
            email = fake_atlassian::SITE_EMAIL,
            token = fake_atlassian::SITE_TOKEN,
        )
    });
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\ndry_run = false\n{atlassian}\n\
         [worker]\nconcurrency = {concurrency}\nrequests_per_second = {rps:?}\n\n\
         [safety]\nmax_actions_per_hour = 1000000\napproval_above = 1000000\n"
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

/// Checks and enqueues the file as `jobs import` does; (check, enqueue) times.
async fn import(store: &dyn Store, config: &Config, file: &[u8]) -> (Duration, Duration) {
    let started = Instant::now();
    let chains = manual::import::check(
        config,
        file,
        Some("delete_portal_customer"),
        false,
        chrono::Utc::now(),
        |_| {},
    )
    .expect("a valid file");
    let checked = started.elapsed();
    let key = format!("import:bench-{}", rand::random::<u64>());
    let receipt = manual::enqueue(store, config, ManualSource::Cli, &key, file, chains)
        .await
        .expect("enqueue");
    assert_eq!(
        Some(receipt.answer.jobs().len()),
        Some(file.iter().filter(|b| **b == b'\n').count() - 1)
    );
    (checked, started.elapsed() - checked)
}

fn report_import(store_name: &str, rows: usize, (check, enqueue): (Duration, Duration)) {
    let total = check + enqueue;
    println!(
        "import {rows} rows on {store_name}: {:.0} rows/s ({:.2} s: check {:.0} ms, enqueue {:.2} s)",
        rows as f64 / total.as_secs_f64(),
        total.as_secs_f64(),
        check.as_secs_f64() * 1000.0,
        enqueue.as_secs_f64()
    );
}

async fn import_on_sqlite(rows: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/bench.db", dir.path().display());
    let config = config(&url, None, 5.0, 4);
    let store = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("SQLite store");
    report_import(
        "SQLite",
        rows,
        import(store.as_ref(), &config, &csv(rows)).await,
    );
}

async fn import_on_postgres(server: &str, rows: usize) {
    let name = format!("offboard_bench_{:08x}", rand::random::<u32>());
    let Ok(mut conn) = PgConnection::connect(server).await else {
        println!("import on PostgreSQL: skipped, no server at --database-url");
        return;
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create database");
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    let url = format!("{base}/{name}");
    let config = config(&url, None, 5.0, 4);
    let store = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("Postgres store");
    report_import(
        "PostgreSQL",
        rows,
        import(store.as_ref(), &config, &csv(rows)).await,
    );
    drop(store);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut conn)
        .await
        .expect("drop database");
}

async fn drain(jobs: usize, rps: f64, concurrency: usize) {
    let fake = FakeAtlassian::start().await;
    for i in 0..jobs {
        fake.add_account(FakeAccount::customer(
            &format!("qm:{i:06}"),
            &format!("bulk{i}@example.com"),
        ));
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}/drain.db", dir.path().display());
    let config = Arc::new(config(&url, Some(&fake), rps, concurrency));
    let store = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("SQLite store");
    import(store.as_ref(), &config, &csv(jobs)).await;
    let service = Service::start_with_store(config, store.clone(), Role::Worker)
        .await
        .expect("start the worker");
    // A job's requests: its account's own record (the bulk read, or the single read of an
    // id the bulk answer left out), then the delete.
    let job_request = |r: &fake_atlassian::RecordedRequest| {
        r.path == "/rest/api/3/user" || r.path == "/rest/api/3/user/bulk"
    };
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let counts = store.count_by_state().await.expect("counts");
        let succeeded = counts
            .iter()
            .find(|(state, _)| *state == JobState::Succeeded)
            .map_or(0, |(_, n)| *n);
        if succeeded as usize >= jobs {
            break;
        }
    }
    service.stop().await.expect("stop");
    let requests: Vec<_> = fake.requests().into_iter().filter(job_request).collect();
    let first = requests.first().expect("requests").received_at;
    let last = requests.last().expect("requests").received_at;
    let seconds = last.duration_since(first).as_secs_f64();
    // The bucket starts full: `burst` requests are allowed at once, then `rps` a second.
    let burst = rps.ceil().max(1.0);
    let allowed = rps * seconds + burst;
    let bulk = requests
        .iter()
        .filter(|r| r.path == "/rest/api/3/user/bulk")
        .count();
    println!(
        "drain {jobs} imported delete_portal_customer jobs (CSV with account_id) at requests_per_second = {rps}, concurrency = {concurrency}: \
         {} requests ({bulk} of them bulk reads) in {seconds:.1} s = {:.2} requests/s; {:.1}% of the allowed rate ({:.0} allowed in that time with the burst of {burst}); \
         {:.2} jobs/s; {:.2} requests per job",
        requests.len(),
        requests.len() as f64 / seconds,
        100.0 * requests.len() as f64 / allowed,
        allowed,
        jobs as f64 / seconds,
        requests.len() as f64 / jobs as f64
    );
}

#[tokio::main]
async fn main() {
    offboard::install_tls_provider();
    let args = Args::parse();
    import_on_sqlite(args.rows).await;
    import_on_postgres(&args.server, args.rows).await;
    if args.drain > 0 {
        drain(args.drain, args.rps, args.concurrency).await;
    }
}
