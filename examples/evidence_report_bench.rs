//! Proof-of-offboarding benchmark: the time-to-revoke report over every case, and one page of
//! `GET /api/v1/people?sla=missed`, on SQLite and on PostgreSQL.
//!
//! ```sh
//! cargo run --release --example evidence_report_bench -- [--cases 100000] [--rounds 3] \
//!     [--database-url postgres://postgres@127.0.0.1:5432/postgres]
//! ```
//!
//! Seeds `--cases` people with set-based SQL (as acceptance would have left them: a `people`
//! row, a succeeded `revoke_portal_access` and a pending `delete_portal_customer` each),
//! spread over 90 days. Every tenth case took 30 hours to revoke (missed), the rest one hour;
//! half have a verification, every hundredth failed, every two hundredth was reactivated.
//! Then, per round: `evidence report` over all of them (built, and written as CSV), and one
//! page (50) of `sla=missed`, of `verification=failed` (sparser: the walk budget shows) and
//! of the unfiltered list, each through the HTTP API of a running service.

use std::time::{Duration, Instant};

use clap::Parser;
use offboard::config::{Config, ConfigOrigin};
use offboard::evidence::report::{self, Period};
use offboard::serve::{Role, Service};
use offboard::store::{self, StoreOptions};
use sqlx::{Connection, PgConnection};

/// The report over every case and one page of the People list, on SQLite and PostgreSQL.
#[derive(Parser)]
struct Args {
    /// People to seed.
    #[arg(long, default_value_t = 100_000)]
    cases: u32,
    /// Measurements of each figure.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// The PostgreSQL server; the benchmark creates a database of its own on it
    /// [default: $TEST_DATABASE_URL, else postgres://postgres@127.0.0.1:5432/postgres].
    // The resolved default is not shown: TEST_DATABASE_URL may carry a password.
    #[arg(long = "database-url", value_name = "URL", default_value_t = default_database_url(), hide_default_value = true)]
    server: String,
}

fn default_database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

const ADMIN_TOKEN: &str = "evidence-bench-admin-token";
/// The first case is first seen then, the others evenly after it over `SPAN_DAYS`.
const START: &str = "2026-01-01T00:00:00Z";
const SPAN_DAYS: i64 = 90;

fn config(database_url: &str) -> Config {
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{database_url}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n"
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

/// The seed, in each dialect: `$1` the number of cases, `$2` the first first_seen, `$3` the
/// spacing between two cases, in microseconds.
const SEED_POSTGRES: [&str; 4] = [
    "INSERT INTO people (email, first_seen, effective_at) \
     SELECT format('person%s@example.com', g), \
            to_timestamp($2 / 1e6) + make_interval(secs => g * $3 / 1e6), \
            to_timestamp($2 / 1e6) + make_interval(secs => g * $3 / 1e6) \
     FROM generate_series(0, $1 - 1) g",
    "INSERT INTO jobs (action, state, email, run_at, max_attempts, outcome, source, rule, \
         delivery_id, created_at, updated_at, finalized_at) \
     SELECT 'revoke_portal_access', 'succeeded', p.email, p.effective_at, 8, 'done', 'hr', \
            'leaver', 'd' || p.email, p.first_seen, p.first_seen, \
            p.first_seen + CASE WHEN g % 10 = 0 THEN interval '30 hours' ELSE interval '1 hour' END \
     FROM generate_series(0, $1 - 1) g \
     JOIN people p ON p.email = format('person%s@example.com', g) ORDER BY g",
    "INSERT INTO jobs (action, state, email, run_at, max_attempts, source, rule, delivery_id, \
         created_at, updated_at) \
     SELECT 'delete_portal_customer', 'pending', p.email, p.effective_at + interval '30 days', \
            8, 'hr', 'leaver', 'd' || p.email, p.first_seen, p.first_seen \
     FROM people p",
    "INSERT INTO verifications (email, job_id, verified_at, state, seen, reactivated_at) \
     SELECT j.email, j.id, j.finalized_at, \
            CASE WHEN j.id % 100 = 0 THEN 'verification_failed' ELSE 'verified' END, \
            'customer deleted (404)', \
            CASE WHEN j.id % 200 = 0 THEN j.finalized_at + interval '1 day' END \
     FROM jobs j WHERE j.action = 'revoke_portal_access' AND j.id % 2 = 0",
];

const SEED_SQLITE: [&str; 4] = [
    "WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i + 1 < $1) \
     INSERT INTO people (email, first_seen, effective_at) \
     SELECT 'person' || i || '@example.com', $2 + i * $3, $2 + i * $3 FROM g",
    "INSERT INTO jobs (action, state, email, run_at, max_attempts, outcome, source, rule, \
         delivery_id, created_at, updated_at, finalized_at) \
     SELECT 'revoke_portal_access', 'succeeded', email, effective_at, 8, 'done', 'hr', 'leaver', \
            'd' || email, first_seen, first_seen, \
            first_seen + CASE WHEN CAST(substr(email, 7, length(email) - 18) AS INTEGER) % 10 = 0 \
                THEN 30 * 3600000000 ELSE 3600000000 END \
     FROM people WHERE $1 > 0 AND $2 IS NOT NULL AND $3 IS NOT NULL ORDER BY first_seen",
    "INSERT INTO jobs (action, state, email, run_at, max_attempts, source, rule, delivery_id, \
         created_at, updated_at) \
     SELECT 'delete_portal_customer', 'pending', email, effective_at + 30 * 86400000000, 8, \
            'hr', 'leaver', 'd' || email, first_seen, first_seen \
     FROM people WHERE $1 > 0 AND $2 IS NOT NULL AND $3 IS NOT NULL",
    "INSERT INTO verifications (email, job_id, verified_at, state, seen, reactivated_at) \
     SELECT email, id, finalized_at, \
            CASE WHEN id % 100 = 0 THEN 'verification_failed' ELSE 'verified' END, \
            'customer deleted (404)', \
            CASE WHEN id % 200 = 0 THEN finalized_at + 86400000000 END \
     FROM jobs WHERE action = 'revoke_portal_access' AND id % 2 = 0 \
         AND $1 > 0 AND $2 IS NOT NULL AND $3 IS NOT NULL",
];

fn start() -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(START)
        .expect("START")
        .with_timezone(&chrono::Utc)
}

async fn seed(database_url: &str, cases: u32) -> Duration {
    let spacing = SPAN_DAYS * 86_400_000_000 / i64::from(cases.max(1));
    let first = start().timestamp_micros();
    let started = Instant::now();
    if database_url.starts_with("postgres") {
        let mut conn = PgConnection::connect(database_url).await.expect("connect");
        for sql in SEED_POSTGRES {
            sqlx::query(sql)
                .bind(i64::from(cases))
                .bind(first as f64)
                .bind(spacing as f64)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("seed: {e}\n{sql}"));
        }
        sqlx::query("ANALYZE")
            .execute(&mut conn)
            .await
            .expect("analyze");
    } else {
        let mut conn = sqlx::SqliteConnection::connect(database_url)
            .await
            .expect("connect");
        for sql in SEED_SQLITE {
            sqlx::query(sql)
                .bind(i64::from(cases))
                .bind(first)
                .bind(spacing)
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("seed: {e}\n{sql}"));
        }
        sqlx::query("ANALYZE")
            .execute(&mut conn)
            .await
            .expect("analyze");
    }
    started.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn measure(name: &str, database_url: &str, args: &Args) {
    let store = store::open_migrated(database_url, &StoreOptions::default())
        .await
        .expect("open store");
    let seeded = seed(database_url, args.cases).await;
    println!(
        "{name}: seeded {} cases in {:.1} s",
        args.cases,
        seeded.as_secs_f64()
    );
    let config = std::sync::Arc::new(config(database_url));
    let service = Service::start_with_store(config.clone(), store.clone(), Role::Api)
        .await
        .expect("start service");
    let http = reqwest::Client::new();
    let period = Period::parse("2025-12-01", "2026-12-31").expect("period");
    for round in 1..=args.rounds {
        let now = chrono::Utc::now();
        let started = Instant::now();
        let built = report::build(store.as_ref(), period, config.evidence.sla, now)
            .await
            .expect("report");
        let took = started.elapsed();
        let started = Instant::now();
        let csv = built.csv();
        let written = started.elapsed();
        let missed = built
            .cases
            .iter()
            .filter(|r| r.case.sla.met == Some(false))
            .count();
        println!(
            "{name} #{round}: evidence report over {} cases ({missed} missed): built in {:.0} ms, CSV ({:.1} MB) written in {:.0} ms",
            built.cases.len(),
            ms(took),
            csv.len() as f64 / 1e6,
            ms(written)
        );
        for query in ["sla=missed", "verification=failed", ""] {
            let url = format!("http://{}/api/v1/people?{query}", service.addr);
            let started = Instant::now();
            let page: serde_json::Value = http
                .get(&url)
                .bearer_auth(ADMIN_TOKEN)
                .send()
                .await
                .expect("GET /api/v1/people")
                .json()
                .await
                .expect("JSON");
            println!(
                "{name} #{round}: GET /api/v1/people?{query}: {} cases in {:.1} ms, next_after {}",
                page["people"].as_array().map_or(0, Vec::len),
                ms(started.elapsed()),
                if page["next_after"].is_null() {
                    "null"
                } else {
                    "set"
                }
            );
        }
    }
    service.stop().await.expect("stop service");
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    offboard::install_tls_provider();
    let args = Args::parse();
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("bench.db").display());
    measure("sqlite", &sqlite, &args).await;

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
    measure("postgres", &format!("{base}/{name}"), &args).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("drop database");
}
