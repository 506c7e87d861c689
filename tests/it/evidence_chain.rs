//! Tamper evidence and the end of personal data (README, "Proof for auditors"): the audit
//! trail's hash chain as `offboard evidence verify` checks it, and `offboard evidence erase`
//! and the `pseudonymize_after` pass, on both stores.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use offboard::domain::{AccountId, Action, Email, JobId, NewChain, NewStep, Outcome};
use offboard::evidence::{self, pseudonym::Pseudonyms};
use offboard::serve::Role;
use offboard::store::{NewDelivery, Store};
use secrecy::SecretString;
use serde_json::Map;
use sqlx::{Connection, PgConnection, SqliteConnection};

use crate::both_stores;
use crate::support::app::TestApp;
use crate::support::db::{Backend, TestDb};

const JANE: &str = "jane.doe@example.com";
const JANE_ACCOUNT: &str = "acc-jane-5b10ac8d";
const JOHN: &str = "john.roe@example.com";
const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";
const LEASE: Duration = Duration::from_secs(60);

static NEXT_DELIVERY: AtomicU64 = AtomicU64::new(1);

fn chain(email: &str, account_id: Option<&str>, actions: &[Action]) -> NewChain {
    NewChain {
        email: Email::parse(email).expect("valid email"),
        account_id: account_id.map(|id| AccountId::claimed(id).expect("valid account id")),
        account_type: None,
        rule: "offboard".to_owned(),
        approval: false,
        steps: actions
            .iter()
            .map(|&action| NewStep {
                action,
                params: Map::new(),
                run_at: Utc::now() - TimeDelta::minutes(1),
                lane: offboard::domain::Lane::Bulk,
            })
            .collect(),
    }
}

async fn accept(store: &dyn Store, chains: Vec<NewChain>) -> Vec<JobId> {
    let receipt = store
        .accept_delivery(NewDelivery::signed(
            "hr",
            &format!("ev-{}", NEXT_DELIVERY.fetch_add(1, Ordering::Relaxed)),
            chains,
        ))
        .await
        .expect("accept delivery");
    receipt
        .job_ids()
        .iter()
        .map(|id| id.parse().expect("numeric job id"))
        .collect()
}

/// A day's work: Jane's customer is deleted (her account id recorded, the result naming her
/// email and account), John's job fails, and a third job is cancelled by an operator. All of
/// Jane's jobs end final; John's later job stays live.
async fn activity(store: &dyn Store) {
    accept(
        store,
        vec![chain(
            JANE,
            Some(JANE_ACCOUNT),
            &[Action::DeletePortalCustomer],
        )],
    )
    .await;
    accept(
        store,
        vec![chain(JOHN, None, &[Action::DeletePortalCustomer])],
    )
    .await;
    for job in store.claim_due("w1", 10, LEASE).await.expect("claim") {
        if job.email == JANE {
            assert!(
                store
                    .record_account(&job, JANE_ACCOUNT, "customer")
                    .await
                    .unwrap()
            );
            let detail = format!("customer Jane.Doe@Example.com ({JANE_ACCOUNT}) deleted");
            assert!(store.complete(&job, Outcome::Done, &detail).await.unwrap());
        } else {
            assert!(store.fail(&job, "boom", "failed for good").await.unwrap());
        }
    }
    let later = accept(
        store,
        vec![chain(JANE, None, &[Action::RevokePortalAccess])],
    )
    .await;
    store
        .cancel(later[0], "admin:alice", &format!("not needed for {JANE}"))
        .await
        .expect("cancel");
    accept(
        store,
        vec![chain(JOHN, None, &[Action::RevokePortalAccess])],
    )
    .await;
}

struct Cli {
    _dir: tempfile::TempDir,
    config: PathBuf,
}

impl Cli {
    fn new(db: &TestDb, key: Option<&str>) -> Cli {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("offboard.toml");
        let mut toml = format!("database_url = \"{}\"\n", db.url);
        if let Some(key) = key {
            toml.push_str(&format!("[evidence]\npseudonym_key = \"{key}\"\n"));
        }
        std::fs::write(&config, toml).unwrap();
        Cli { _dir: dir, config }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .env_remove("DATABASE_URL")
            .env_remove("OFFBOARD_CONFIG")
            .output()
            .expect("run offboard")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs SQL the store would never run, as the database's owner could.
async fn owner_sql(db: &TestDb, statements: &[&str]) {
    match db.backend {
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.unwrap();
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
            for sql in statements {
                sqlx::query(sql).execute(&mut conn).await.unwrap();
            }
        }
    }
}

/// Switches off the triggers that keep the audit trail append-only, as an owner could.
fn lift_append_only(backend: Backend) -> &'static [&'static str] {
    match backend {
        Backend::Postgres => &["ALTER TABLE job_events DISABLE TRIGGER job_events_no_update"],
        Backend::Sqlite => &[
            "DROP TRIGGER job_events_no_update",
            "DROP TRIGGER job_events_no_delete",
        ],
    }
}

/// The (id, chain_seq) of the sealed events, in chain order.
async fn sealed(store: &dyn Store) -> Vec<(i64, i64)> {
    store
        .chain()
        .sealed_events(0, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| (e.content.id, e.seal.chain_seq))
        .collect()
}

async fn chain_is_intact_after_normal_activity(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    let cli = Cli::new(&db, None);
    let verified = cli.run(&["evidence", "verify"]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stderr)
    );
    let head = store.chain().chain_head().await.unwrap().expect("a head");
    let events = sealed(&*store).await.len();
    assert!(events >= 9, "{events} events");
    assert_eq!(head.chain_seq, events as i64);
    let out = text(&verified.stdout);
    assert!(
        out.contains(&format!("{events} events")) && out.contains(&head.sha256),
        "{out}"
    );
}
both_stores!(
    chain_is_intact_after_normal_activity,
    chain_is_intact_after_normal_activity
);

async fn an_edited_event_breaks_verify_at_that_event(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    evidence::seal_all(store.chain()).await.unwrap();
    let events = sealed(&*store).await;
    let (id, seq) = events[events.len() / 2];
    let mut sql: Vec<String> = lift_append_only(db.backend)
        .iter()
        .map(|s| s.to_string())
        .collect();
    sql.push(format!(
        "UPDATE job_events SET detail = detail || ' (edited)' WHERE id = {id}"
    ));
    owner_sql(&db, &sql.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let verified = Cli::new(&db, None).run(&["evidence", "verify"]);
    assert_eq!(verified.status.code(), Some(1));
    let err = text(&verified.stderr);
    assert!(
        err.contains(&format!("event {id} (chain_seq {seq})")) && err.contains("content"),
        "{err}"
    );
}
both_stores!(
    an_edited_event_breaks_verify_at_that_event,
    an_edited_event_breaks_verify_at_that_event
);

async fn a_deleted_event_breaks_verify_at_the_next(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    evidence::seal_all(store.chain()).await.unwrap();
    let events = sealed(&*store).await;
    let (gone, gone_seq) = events[3];
    let (next, next_seq) = events[4];
    let mut sql: Vec<String> = lift_append_only(db.backend)
        .iter()
        .map(|s| s.to_string())
        .collect();
    sql.push(format!("DELETE FROM job_events WHERE id = {gone}"));
    owner_sql(&db, &sql.iter().map(String::as_str).collect::<Vec<_>>()).await;

    let verified = Cli::new(&db, None).run(&["evidence", "verify"]);
    assert_eq!(verified.status.code(), Some(1));
    let err = text(&verified.stderr);
    assert!(
        err.contains(&format!(
            "event {next} (chain_seq {next_seq}): the events from chain_seq {gone_seq} are missing"
        )),
        "{err}"
    );
}
both_stores!(
    a_deleted_event_breaks_verify_at_the_next,
    a_deleted_event_breaks_verify_at_the_next
);

/// Everything the store's files hold, as a dump would show it, lower-cased.
async fn dump(db: &TestDb) -> String {
    match db.backend {
        Backend::Postgres => {
            let server = std::env::var("TEST_DATABASE_URL").unwrap();
            let schema = db
                .url
                .rsplit_once("search_path%3D")
                .expect("a test schema")
                .1;
            let out = Command::new("/usr/bin/pg_dump")
                .arg("--schema")
                .arg(schema)
                .arg("--dbname")
                .arg(&server)
                .output()
                .expect("run pg_dump");
            assert!(out.status.success(), "{}", text(&out.stderr));
            text(&out.stdout).to_lowercase()
        }
        Backend::Sqlite => {
            let file = db.url.strip_prefix("sqlite://").unwrap();
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-journal"] {
                let path = format!("{file}{suffix}");
                if Path::new(&path).exists() {
                    bytes.extend(std::fs::read(&path).unwrap());
                }
            }
            String::from_utf8_lossy(&bytes).to_lowercase()
        }
    }
}

/// A verification the lead's worker would record, naming Jane.
async fn record_verification(db: &TestDb, store: &dyn Store) {
    let jobs = store
        .list_jobs(&offboard::store::JobFilter {
            email: Some(JANE.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let job = jobs
        .iter()
        .find(|j| j.outcome.is_some())
        .expect("Jane's done job");
    let at = match db.backend {
        Backend::Postgres => "now()",
        Backend::Sqlite => "0",
    };
    let sql = format!(
        "INSERT INTO verifications (email, job_id, account_id, verified_at, state, seen) \
         VALUES ('{JANE}', {}, '{JANE_ACCOUNT}', {at}, 'verified', \
         'customer {JANE} ({JANE_ACCOUNT}) deleted (404)')",
        job.id
    );
    owner_sql(db, &[&sql]).await;
}

async fn erase_leaves_no_email_in_the_dump_and_verify_still_passes(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    record_verification(&db, &*store).await;
    evidence::seal_all(store.chain()).await.unwrap();
    let before = dump(&db).await;
    assert!(before.contains(JANE) && before.contains(&JANE_ACCOUNT.to_lowercase()));
    let head_before = store.chain().chain_head().await.unwrap().unwrap();
    drop(store);

    let cli = Cli::new(&db, Some(KEY));
    let erased = cli.run(&["evidence", "erase", "Jane.Doe@example.com"]);
    assert_eq!(erased.status.code(), Some(0), "{}", text(&erased.stderr));
    let pseudonym = Pseudonyms::new(SecretString::from(KEY.to_owned())).email(JANE);
    assert!(
        text(&erased.stdout).contains(&pseudonym),
        "{}",
        text(&erased.stdout)
    );

    let verified = cli.run(&["evidence", "verify"]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stderr)
    );

    let after = dump(&db).await;
    assert!(!after.contains(JANE), "the email is still in the dump");
    assert!(
        !after.contains("jane.doe"),
        "part of the email is still in the dump"
    );
    assert!(
        !after.contains(&JANE_ACCOUNT.to_lowercase()),
        "the account id is still in the dump"
    );
    assert!(after.contains(JOHN), "the dump holds the other people");
    assert!(after.contains(&pseudonym));

    // The erasure is audited and chained: one event per job of hers, sealed after the head.
    let store = db.store().await;
    let jobs = store
        .list_jobs(&offboard::store::JobFilter {
            email: Some(pseudonym.clone()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        let events = store.events(job.id).await.unwrap();
        let last = events.last().unwrap();
        assert_eq!(
            (last.actor.as_str(), last.detail.as_str()),
            ("operator:cli", evidence::PSEUDONYMIZED_DETAIL)
        );
        assert_eq!(last.from, Some(last.to));
    }
    let head_after = store.chain().chain_head().await.unwrap().unwrap();
    assert_eq!(head_after.chain_seq, head_before.chain_seq + 2);

    // Again: nothing left to change, the same pseudonym.
    let again = cli.run(&["evidence", "erase", JANE]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(
        text(&again.stdout).contains("0 jobs"),
        "{}",
        text(&again.stdout)
    );
}
both_stores!(
    erase_leaves_no_email_in_the_dump_and_verify_still_passes,
    erase_leaves_no_email_in_the_dump_and_verify_still_passes
);

/// A file written before offboard turned `secure_delete` on keeps freed copies of old rows:
/// the erase rebuilds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_leaves_no_email_in_a_sqlite_file_written_without_secure_delete() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    activity(&*store).await;
    drop(store);
    let mut sql = vec!["PRAGMA secure_delete = OFF".to_owned()];
    for n in 0..5 {
        sql.push(format!(
            "UPDATE jobs SET last_error = 'attempt {n} for {JANE}', params = '{{}}' \
             WHERE email = '{JANE}'"
        ));
    }
    owner_sql(&db, &sql.iter().map(String::as_str).collect::<Vec<_>>()).await;
    let erased = Cli::new(&db, Some(KEY)).run(&["evidence", "erase", JANE]);
    assert_eq!(erased.status.code(), Some(0), "{}", text(&erased.stderr));
    assert!(
        !dump(&db).await.contains(JANE),
        "the email is still in the file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_refuses_without_a_key_or_while_jobs_are_live() {
    let db = TestDb::sqlite();
    let store = db.store().await;
    activity(&*store).await;
    let no_key = Cli::new(&db, None).run(&["evidence", "erase", JANE]);
    assert_eq!(no_key.status.code(), Some(2));
    assert!(
        text(&no_key.stderr).contains("pseudonym_key is not set"),
        "{}",
        text(&no_key.stderr)
    );
    let live = Cli::new(&db, Some(KEY)).run(&["evidence", "erase", JOHN]);
    assert_eq!(live.status.code(), Some(2));
    let err = text(&live.stderr);
    assert!(err.contains("live jobs") && !err.contains(KEY), "{err}");
    let jobs = store
        .list_jobs(&offboard::store::JobFilter {
            email: Some(JOHN.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(jobs.len(), 2, "nothing of John's was changed");

    let job = store
        .list_jobs(&offboard::store::JobFilter {
            email: Some(JANE.into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap()[0]
        .id;
    owner_sql(
        &db,
        &[&format!(
            "INSERT INTO verifications (email, job_id, verified_at, state, seen, recheck_at) \
             VALUES ('{JANE}', {job}, 0, 'verified', 'gone', 1)"
        )],
    )
    .await;
    let recheck = Cli::new(&db, Some(KEY)).run(&["evidence", "erase", JANE]);
    assert_eq!(recheck.status.code(), Some(2));
    assert!(
        text(&recheck.stderr).contains("recheck due"),
        "{}",
        text(&recheck.stderr)
    );
}

async fn events_written_before_the_chain_are_sealed_by_migrate(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    let unsealed = store.chain().chain_head().await.unwrap();
    assert_eq!(
        unsealed, None,
        "nothing seals outside migrate, serve and evidence"
    );
    store.migrate().await.unwrap();
    let head = store.chain().chain_head().await.unwrap().expect("sealed");
    assert_eq!(head.chain_seq, sealed(&*store).await.len() as i64);
    let intact = evidence::verify(store.chain()).await.unwrap().unwrap();
    assert_eq!(intact.head, Some(head));
}
both_stores!(
    events_written_before_the_chain_are_sealed_by_migrate,
    events_written_before_the_chain_are_sealed_by_migrate
);

/// The events are not sealed yet when the pass runs: they are sealed after it, as the
/// pseudonymized jobs name them, and the chain verifies.
async fn the_pseudonymize_after_pass_takes_only_old_final_cases(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    assert_eq!(store.chain_head().await.unwrap(), None);
    let pseudonyms = Pseudonyms::new(SecretString::from(KEY.to_owned()));

    let none = evidence::pseudonymize_due(store.chain(), &pseudonyms, Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(none, 0, "Jane's case is not old enough");
    let done = evidence::pseudonymize_due(store.chain(), &pseudonyms, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(done, 1, "Jane only: John has a live job");
    let again = evidence::pseudonymize_due(store.chain(), &pseudonyms, Duration::ZERO)
        .await
        .unwrap();
    assert_eq!(again, 0, "idempotent");

    let emails: Vec<String> = store
        .list_jobs(&offboard::store::JobFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.email.to_string())
        .collect();
    assert!(emails.contains(&pseudonyms.email(JANE)), "{emails:?}");
    assert!(emails.contains(&JOHN.to_owned()), "{emails:?}");
    assert!(!emails.contains(&JANE.to_owned()), "{emails:?}");
    // Without a rebuild: SQLite's secure_delete and the checkpoint leave no copy behind.
    let dump = dump(&db).await;
    assert!(!dump.contains(JANE) && dump.contains(JOHN));
    evidence::verify(store.chain())
        .await
        .unwrap()
        .expect("the chain is intact after the pass");
}
both_stores!(
    the_pseudonymize_after_pass_takes_only_old_final_cases,
    the_pseudonymize_after_pass_takes_only_old_final_cases
);

/// Two stores on one database are two replicas: their sealers still make one chain.
async fn concurrent_sealers_make_one_chain(db: TestDb) {
    let store = db.store().await;
    let replica = db.store().await;
    let writers = (0..4).map(|i| {
        let store = if i % 2 == 0 {
            store.clone()
        } else {
            replica.clone()
        };
        tokio::spawn(async move {
            for n in 0..10 {
                let email = format!("p{i}-{n}@example.com");
                accept(
                    &*store,
                    vec![chain(&email, None, &[Action::RevokePortalAccess])],
                )
                .await;
                evidence::seal_all(store.chain()).await.unwrap();
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let intact = evidence::verify(store.chain()).await.unwrap().unwrap();
    assert_eq!(intact.events, 40);
}
both_stores!(
    concurrent_sealers_make_one_chain,
    concurrent_sealers_make_one_chain
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_seals_what_is_committed_within_seconds() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_role(&db, "", Role::Worker).await;
    accept(
        &*app.store,
        vec![chain(JANE, None, &[Action::RevokePortalAccess])],
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while app.store.chain().chain_head().await.unwrap().is_none() {
        assert!(tokio::time::Instant::now() < deadline, "nothing sealed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sealing and pseudonymization are the only rewrites the append-only guard lets through:
/// a sealed event's content, its seal, and its deletion are refused.
async fn the_guard_refuses_edits_and_reseals(db: TestDb) {
    let store = db.store().await;
    activity(&*store).await;
    evidence::seal_all(store.chain()).await.unwrap();
    for sql in [
        "UPDATE job_events SET detail = 'rewritten'",
        "UPDATE job_events SET chain_seq = chain_seq + 1000",
        "UPDATE job_events SET sha256 = prev_sha256",
        "UPDATE job_events SET chain_account_id = 'other'",
        "DELETE FROM job_events",
    ] {
        let refused = match db.backend {
            Backend::Postgres => {
                let mut conn = PgConnection::connect(&db.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.err()
            }
            Backend::Sqlite => {
                let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
                sqlx::query(sql).execute(&mut conn).await.err()
            }
        };
        let err = refused.unwrap_or_else(|| panic!("job_events accepted `{sql}`"));
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    evidence::verify(store.chain()).await.unwrap().unwrap();

    // A sealer that read a stale head would write a chain_seq that is taken: it fails.
    accept(&*store, vec![chain(JOHN, None, &[Action::SuspendAccess])]).await;
    let fork = format!(
        "UPDATE job_events SET chain_seq = 1, prev_sha256 = '{zero}', sha256 = '{zero}' \
         WHERE chain_seq IS NULL",
        zero = evidence::chain::GENESIS
    );
    let refused = match db.backend {
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.unwrap();
            sqlx::query(&fork).execute(&mut conn).await.err()
        }
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(&db.url).await.unwrap();
            sqlx::query(&fork).execute(&mut conn).await.err()
        }
    };
    let err = refused.expect("a second chain_seq 1 was accepted");
    assert!(
        err.as_database_error()
            .is_some_and(|e| e.is_unique_violation()),
        "{err}"
    );
}
both_stores!(
    the_guard_refuses_edits_and_reseals,
    the_guard_refuses_edits_and_reseals
);

/// The erase rebuilds the SQLite file while `serve` holds its own connections to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erase_works_while_serve_runs_on_the_same_sqlite_file() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_role(&db, "", Role::Worker).await;
    activity(&*app.store).await;
    let erased = Cli::new(&db, Some(KEY)).run(&["evidence", "erase", JANE]);
    assert_eq!(erased.status.code(), Some(0), "{}", text(&erased.stderr));
    assert!(
        !dump(&db).await.contains(JANE),
        "the email is still in the file"
    );
    let verified = Cli::new(&db, None).run(&["evidence", "verify"]);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        text(&verified.stderr)
    );
}

/// Two replicas' passes at once pseudonymize each person once, and the chain stays whole.
async fn two_replicas_pseudonymize_each_person_once(db: TestDb) {
    let store = db.store().await;
    for n in 0..6 {
        let email = format!("old{n}@example.com");
        let ids = accept(
            &*store,
            vec![chain(&email, None, &[Action::RevokePortalAccess])],
        )
        .await;
        store
            .cancel(ids[0], "admin:alice", "not needed")
            .await
            .unwrap();
    }
    let replica = db.store().await;
    let pseudonyms = Pseudonyms::new(SecretString::from(KEY.to_owned()));
    let (a, b) = tokio::join!(
        evidence::pseudonymize_due(store.chain(), &pseudonyms, Duration::ZERO),
        evidence::pseudonymize_due(replica.chain(), &pseudonyms, Duration::ZERO),
    );
    assert_eq!(a.unwrap() + b.unwrap(), 6);
    let intact = evidence::verify(store.chain()).await.unwrap().unwrap();
    assert_eq!(intact.events, 6 * 3, "created, cancelled, pseudonymized");
}
both_stores!(
    two_replicas_pseudonymize_each_person_once,
    two_replicas_pseudonymize_each_person_once
);
