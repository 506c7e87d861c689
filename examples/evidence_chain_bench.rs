//! Hash chain benchmark (README, "Performance"): what `offboard evidence verify` costs over a
//! long audit trail.
//!
//! ```sh
//! cargo run --release --example evidence_chain_bench -- [--events 1000000] \
//!     [--events-per-job 10] [--database-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! On a fresh SQLite file and a fresh PostgreSQL database of its own, inserts `--events`
//! unsealed audit events (bulk SQL, `--events-per-job` per job, each naming its person's
//! email), then prints: sealing them all (what `migrate` does as a back-fill, and `serve`
//! a second at a time), `evidence verify` over the sealed chain, in events/s, and
//! `evidence erase` of one person in that store (with SQLite's rebuild of the file).

use std::time::Instant;

use clap::Parser;
use offboard::evidence::{self, pseudonym::Pseudonyms};
use offboard::store::{self, Erased, Erasure, Store, StoreOptions};
use secrecy::SecretString;
use sqlx::{Connection, PgConnection, SqliteConnection};

/// Seals and verifies a long audit trail on SQLite and PostgreSQL.
#[derive(Parser)]
struct Args {
    /// Audit events to create, seal and verify.
    #[arg(long, default_value_t = 1_000_000)]
    events: i64,
    /// Events per job.
    #[arg(long, default_value_t = 10)]
    events_per_job: i64,
    /// The PostgreSQL server; the bench creates and drops a database of its own on it
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    // The resolved default is not shown: TEST_DATABASE_URL may carry a password.
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_database_url(), hide_default_value = true)]
    server: String,
    /// Skip PostgreSQL.
    #[arg(long)]
    sqlite_only: bool,
}

fn default_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Jobs, then their events, in one statement each; `$1` events, `$2` per job. Job ids of a
/// fresh database start at 1. `WITH RECURSIVE` counts on SQLite, `generate_series` on
/// Postgres.
const SQLITE_SETUP: [&str; 2] = [
    "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ($1 + $2 - 1) / $2) \
     INSERT INTO jobs (action, params, state, email, run_at, max_attempts, last_error, \
       created_at, updated_at, finalized_at) \
     SELECT 'delete_portal_customer', '{}', 'failed', 'person' || n || '@example.com', 0, 3, \
       'boom', 0, 0, 0 FROM g",
    "WITH RECURSIVE g(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM g WHERE n < $1 - 1) \
     INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
     SELECT n / $2 + 1, 1765000000000000 + n, 'running', 'pending', 'worker:bench', \
       'attempt ' || n || ' for person' || (n / $2 + 1) || '@example.com' FROM g",
];
const POSTGRES_SETUP: [&str; 2] = [
    "INSERT INTO jobs (action, params, state, email, run_at, max_attempts, last_error, \
       created_at, updated_at, finalized_at) \
     SELECT 'delete_portal_customer', '{}', 'failed', 'person' || n || '@example.com', now(), 3, \
       'boom', now(), now(), now() FROM generate_series(1, ($1 + $2 - 1) / $2) n",
    "INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
     SELECT n / $2 + 1, now() + n * interval '1 microsecond', 'running', 'pending', \
       'worker:bench', 'attempt ' || n || ' for person' || (n / $2 + 1) || '@example.com' \
     FROM generate_series(0, $1 - 1) n",
];

async fn seal_and_verify(label: &str, store: &dyn Store, events: i64) {
    let started = Instant::now();
    let sealed = evidence::seal_all(store.chain()).await.expect("seal");
    let seal_took = started.elapsed();
    assert_eq!(sealed as i64, events, "every event sealed");
    let started = Instant::now();
    let intact = evidence::verify(store.chain())
        .await
        .expect("verify")
        .expect("an intact chain");
    let verify_took = started.elapsed();
    assert_eq!(intact.events, events);
    println!(
        "{label}: sealing {events} events took {:.1} s ({:.0} events/s); \
         evidence verify took {:.1} s ({:.0} events/s)",
        seal_took.as_secs_f64(),
        events as f64 / seal_took.as_secs_f64(),
        verify_took.as_secs_f64(),
        events as f64 / verify_took.as_secs_f64(),
    );
    erase_one(label, store).await;
}

/// `evidence erase` of the first person, as the command does it: pseudonymize, seal, then
/// compact (SQLite: checkpoint and `VACUUM`).
async fn erase_one(label: &str, store: &dyn Store) {
    let pseudonyms = Pseudonyms::new(SecretString::from("bench-key-".repeat(4)));
    let started = Instant::now();
    let erased = evidence::erase(
        store.chain(),
        Erasure {
            email: "person1@example.com",
            pseudonyms: &pseudonyms,
            actor: "operator:bench",
            refuse_unfinished: true,
        },
    )
    .await
    .expect("erase");
    let pseudonymized = started.elapsed();
    assert!(matches!(erased, Erased::Done { .. }), "{erased:?}");
    store.chain().compact(true).await.expect("compact");
    println!(
        "{label}: evidence erase of one person took {:.2} s ({:.2} s pseudonymizing and \
         sealing, {:.2} s compacting)",
        started.elapsed().as_secs_f64(),
        pseudonymized.as_secs_f64(),
        (started.elapsed() - pseudonymized).as_secs_f64(),
    );
}

async fn on_sqlite(events: i64, per_job: i64) {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let store = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("SQLite store");
    let started = Instant::now();
    let mut conn = SqliteConnection::connect(&url).await.expect("connect");
    for sql in SQLITE_SETUP {
        sqlx::query(sql)
            .bind(events)
            .bind(per_job)
            .execute(&mut conn)
            .await
            .expect("setup");
    }
    conn.close().await.ok();
    println!(
        "SQLite: {events} unsealed events inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    seal_and_verify("SQLite", store.as_ref(), events).await;
}

async fn on_postgres(server: &str, events: i64, per_job: i64) {
    let name = format!("offboard_bench_{:08x}", rand::random::<u32>());
    let Ok(mut admin) = PgConnection::connect(server).await else {
        println!("PostgreSQL: skipped, no server at --database-url");
        return;
    };
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create database");
    let base = server.rsplit_once('/').map_or(server, |(base, _)| base);
    let url = format!("{base}/{name}");
    let store = store::open_migrated(&url, &StoreOptions::default())
        .await
        .expect("Postgres store");
    let started = Instant::now();
    let mut conn = PgConnection::connect(&url).await.expect("connect");
    for sql in POSTGRES_SETUP {
        sqlx::query(sql)
            .bind(events)
            .bind(per_job)
            .execute(&mut conn)
            .await
            .expect("setup");
    }
    sqlx::query("ANALYZE").execute(&mut conn).await.ok();
    conn.close().await.ok();
    println!(
        "PostgreSQL: {events} unsealed events inserted in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    seal_and_verify("PostgreSQL", store.as_ref(), events).await;
    drop(store);
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    offboard::install_tls_provider();
    on_sqlite(args.events, args.events_per_job).await;
    if !args.sqlite_only {
        on_postgres(&args.server, args.events, args.events_per_job).await;
    }
}
