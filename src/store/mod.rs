//! The durable job store: deliveries, jobs, their append-only audit events, the worker's
//! paused flag and the console sessions ended by a logout. One [`Store`] trait, two backends
//! chosen by the `database_url` scheme: Postgres for production (several replicas claim with
//! `FOR UPDATE SKIP LOCKED`) and SQLite as the embedded default (one process, writes
//! serialised by immediate transactions).
//!
//! Every write that moves a job names the claim it holds (`claim_seq`) and the state it
//! expects, so a worker whose lease was rescued cannot overwrite a newer state.

mod accept;
pub mod case_sql;
pub mod chain;
mod model;
mod postgres;
mod rows;
mod same_sql;
mod sqlite;
pub mod verifications;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use crate::domain::{
    Job, JobEvent, JobId, JobState, JobWithEvents, Outcome, PauseReason, Transition, WorkerState,
};

pub use case_sql::{Among, CaseReads, PeopleRange};
pub use chain::{ChainSql, Erased, Erasure};
pub use model::*;
pub use postgres::PostgresStore;
pub use same_sql::SameSql;
pub use sqlite::SqliteStore;
pub use verifications::{Recheck, Verification, VerificationSql, VerifiedState};

/// What can go wrong in the store. `Unavailable` means the database could not be reached or
/// did not commit: callers answer 503 and try again later.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("job {0} not found")]
    NotFound(JobId),
    #[error("cannot {transition} job {id}: it is {state}")]
    InvalidTransition {
        id: JobId,
        transition: Transition,
        state: JobState,
    },
    #[error("cannot retry job {id}: another live {action} job for the same person exists")]
    LiveJobExists {
        id: JobId,
        action: crate::domain::Action,
    },
    #[error("the store is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("store error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("corrupt row in the store: {0}")]
    Corrupt(String),
    /// A batched write this item was part of failed; the batch's error, as text.
    #[error("a batched write failed: {0}")]
    Batch(String),
    /// A delivery was not recorded within `StoreOptions::accept_deadline`. Unless
    /// `in_doubt`, it was not and will not be written; if `in_doubt`, its write was under
    /// way and may yet commit.
    #[error("{}", if *in_doubt {
        "the store did not confirm the write in time; it may have committed"
    } else {
        "the store did not take the write in time; nothing was written"
    })]
    Overdue { in_doubt: bool },
}

impl From<sqlx::Error> for StoreError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(err),
            other => StoreError::Database(other),
        }
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

impl From<crate::batch::Late> for StoreError {
    fn from(late: crate::batch::Late) -> Self {
        match late {
            crate::batch::Late::Stopped => StoreError::Batch("the delivery writer stopped".into()),
            crate::batch::Late::Withdrawn => StoreError::Overdue { in_doubt: false },
            crate::batch::Late::InDoubt => StoreError::Overdue { in_doubt: true },
        }
    }
}

/// Connection settings that are not part of the URL.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
    /// How long recording a delivery may take before its sender is answered 503
    /// (README, HTTP API, "Fast refusals": within 1 s when the store cannot be reached).
    pub accept_deadline: Duration,
    /// Postgres: how long recording a delivery waits for a connection. Connecting to a
    /// database that refuses or drops connections is retried until this passes.
    pub accept_acquire_timeout: Duration,
    /// Postgres `statement_timeout`: no query may hold locks longer than this.
    pub statement_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_connections: 16,
            // When the database is gone, answer 503 within a few seconds, before most senders
            // give up on us; a pool still busy after this long sheds load the same way, which
            // is safe: the sender retries and nothing was accepted.
            acquire_timeout: Duration::from_secs(3),
            // Deliveries are answered faster than that: the sender is waiting, and retries. A
            // batch of deliveries fails after `accept_acquire_timeout` when no connection can
            // be had, and the ones queued behind it after as long again, so twice that stays
            // within the deadline, which in turn leaves room within the 1 s contract.
            accept_deadline: Duration::from_millis(800),
            accept_acquire_timeout: Duration::from_millis(300),
            statement_timeout: Duration::from_secs(10),
        }
    }
}

/// The operations offboard needs from its database. Both backends pass the same contract
/// test suite (`tests/it/store_contract.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The operations both backends run with the same SQL (`same_sql.rs`).
    fn same_sql(&self) -> &dyn SameSql;
    /// Proof of offboarding's reads (`verifications.rs`).
    fn verifications(&self) -> &dyn VerificationSql;

    /// What a person's case reads (`case_sql.rs`).
    fn case_reads(&self) -> &dyn CaseReads;

    /// Applies the embedded migrations that have not run yet, and seeds the `actions` table
    /// from `Action::ALL` (`SameSql::migrate`).
    async fn migrate(&self) -> StoreResult<()> {
        self.same_sql().migrate().await?;
        // The back-fill: events written before the chain existed join it now (README,
        // "Proof for auditors", "Tamper evidence"). Only then: every command migrates, and
        // sealing a backlog here, in batches back to back, would take SQLite's write lock
        // from a running `serve`'s webhooks; its own sealer takes the backlog gently.
        if self.chain().chain_head().await?.is_none() {
            crate::evidence::seal_all(self.chain()).await?;
        }
        Ok(())
    }

    /// The audit trail's hash chain and pseudonymization (`chain.rs`).
    fn chain(&self) -> &dyn ChainSql;

    /// The newest sealed audit event, which a report names as the chain head it was made at
    /// (README, "Tamper evidence"); `crate::evidence::seal_all` first makes it include every
    /// event committed so far.
    async fn chain_head(&self) -> StoreResult<Option<crate::evidence::chain::ChainHead>> {
        self.chain().chain_head().await
    }

    /// A cheap round trip, for readiness checks.
    async fn ping(&self) -> StoreResult<()> {
        self.same_sql().ping().await
    }

    /// Whether a delivery could be recorded now, for `/readyz`: a webhook would not be
    /// answered 503 (README, "Health"). By default, a round trip.
    async fn ready(&self, within: Duration) -> StoreResult<()> {
        match tokio::time::timeout(within, self.ping()).await {
            Ok(answer) => answer,
            Err(_) => Err(StoreError::Overdue { in_doubt: false }),
        }
    }

    /// Records a delivery and, in the same transaction, cancels and enqueues what it asks
    /// for. A delivery id already recorded for the source returns the first response with
    /// `duplicate = true` and changes nothing. Answers within `StoreOptions::accept_deadline`:
    /// when the write is not done by then, `StoreError::Overdue`.
    async fn accept_delivery(&self, delivery: NewDelivery) -> StoreResult<DeliveryReceipt> {
        let within = self.accept_deadline();
        self.accept_delivery_within(delivery, within).await
    }

    /// [`Store::accept_delivery`] with a deadline of its own: a person waiting for a bulk
    /// request of thousands of jobs waits longer than a webhook sender would.
    async fn accept_delivery_within(
        &self,
        delivery: NewDelivery,
        within: Duration,
    ) -> StoreResult<DeliveryReceipt>;

    /// How long recording a delivery may take (`StoreOptions::accept_deadline`).
    fn accept_deadline(&self) -> Duration;

    /// Claims up to `limit` due jobs for `owner`, marking them running with a lease, and
    /// commits before returning. A job waits while the step it depends on has not succeeded;
    /// nothing is claimed while the worker is paused (checked in the same statement).
    async fn claim_due(&self, owner: &str, limit: u32, lease: Duration) -> StoreResult<Vec<Job>>;

    /// Finishes claimed jobs as succeeded, in one transaction: the worker batches the
    /// results of its concurrent tasks so a busy queue costs one commit per batch, not per
    /// job. For each item, `false` when its claim is no longer held.
    async fn complete_many(&self, items: &[Completion]) -> StoreResult<Vec<bool>>;

    /// Finishes one claimed job as succeeded. `false` when the claim is no longer held.
    async fn complete(&self, job: &Job, outcome: Outcome, detail: &str) -> StoreResult<bool> {
        let item = Completion {
            job: job.clone(),
            outcome,
            detail: detail.to_owned(),
        };
        Ok(held(self.complete_many(std::slice::from_ref(&item)).await?))
    }

    /// Records the account each claimed job acts on, before its first mutating call, so that
    /// a re-run after a lost lease and the later steps of its chain act on the same account.
    /// One transaction: the worker batches its concurrent tasks' records, as their results.
    /// For each item, `false` when its claim is no longer held.
    async fn record_accounts(&self, items: &[AccountRecord]) -> StoreResult<Vec<bool>>;

    /// The rate budget every replica on this store shares (README, "Running several
    /// replicas"); `None` where one process is the whole fleet (SQLite).
    fn fleet_budget(&self) -> Option<Arc<dyn crate::atlassian::FleetBudget>> {
        None
    }

    /// Writes what a claimed hand-over step has moved so far, with an event for the batch.
    async fn record_handover(
        &self,
        job: &Job,
        handover: &crate::domain::HandedOver,
        detail: &str,
    ) -> StoreResult<bool> {
        self.same_sql().record_handover(job, handover, detail).await
    }

    /// Records the account of one claimed job. `false` when the claim is no longer held.
    async fn record_account(
        &self,
        job: &Job,
        account_id: &str,
        account_type: &str,
    ) -> StoreResult<bool> {
        let item = AccountRecord {
            job: job.clone(),
            account_id: account_id.to_owned(),
            account_type: account_type.to_owned(),
            successor_account_id: None,
        };
        Ok(held(
            self.record_accounts(std::slice::from_ref(&item)).await?,
        ))
    }

    /// One job without its events (the earlier step of a chain, for the account it recorded).
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        self.same_sql().job(id).await
    }

    /// Fails a claimed job for good and cancels the later steps of its chain.
    async fn fail(&self, job: &Job, error: &str, detail: &str) -> StoreResult<bool>;

    /// Puts a claimed job back to pending, due at `run_at`. With `refund_attempt` the try does
    /// not count (rate-limit snoozes, auth pauses); otherwise it does, and `error` becomes the
    /// job's `last_error`.
    async fn retry_later(
        &self,
        job: &Job,
        run_at: DateTime<Utc>,
        refund_attempt: bool,
        error: Option<&str>,
        detail: &str,
    ) -> StoreResult<bool> {
        let back = PutBack {
            run_at,
            refund_attempt,
            error,
            detail,
        };
        self.put_back(job, back).await
    }

    /// [`Store::retry_later`], its arguments together.
    async fn put_back(&self, job: &Job, back: PutBack<'_>) -> StoreResult<bool>;

    /// Returns running jobs whose lease expired to pending (or fails them with `max_attempts`
    /// when they have used every attempt). Returns the ids it touched.
    async fn rescue_expired(&self) -> StoreResult<Vec<JobId>>;

    /// Operator transitions (README, "Jobs: states and outcomes"), each writing an event with the actor.
    /// Moves a job as `transition` allows from its current state, with an event naming the
    /// actor and `detail`; a retry refused by the one-live-job rule is `LiveJobExists`.
    async fn transition(
        &self,
        id: JobId,
        transition: Transition,
        actor: &str,
        detail: &str,
    ) -> StoreResult<Job> {
        let change = same_sql::Change {
            transition,
            actor,
            detail,
        };
        let job = self.same_sql().transition(id, change).await?;
        if job.state != JobState::Cancelled {
            self.announce();
        }
        Ok(job)
    }

    async fn cancel(&self, id: JobId, actor: &str, reason: &str) -> StoreResult<Job> {
        self.transition(id, Transition::Cancel, actor, reason).await
    }

    async fn approve(&self, id: JobId, actor: &str) -> StoreResult<Job> {
        self.transition(id, Transition::Approve, actor, "approved")
            .await
    }

    async fn retry(&self, id: JobId, actor: &str) -> StoreResult<Job> {
        self.transition(id, Transition::Retry, actor, "retried, attempts reset")
            .await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        self.same_sql().list_jobs(filter).await
    }

    /// A job's audit trail, oldest first.
    async fn events(&self, id: JobId) -> StoreResult<Vec<JobEvent>> {
        self.same_sql().events(id).await
    }

    async fn get_job(&self, id: JobId) -> StoreResult<Option<JobWithEvents>> {
        let Some(job) = self.job(id).await? else {
            return Ok(None);
        };
        let events = self.events(id).await?;
        Ok(Some(JobWithEvents { job, events }))
    }
    async fn list_deliveries(
        &self,
        source: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        self.same_sql().list_deliveries(source, limit).await
    }

    /// The SHA-256 of the body recorded under this signed delivery id (a manual request's
    /// key), to tell a repeat from a key reused for another body.
    async fn signed_delivery_body_sha256(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<String>> {
        self.same_sql()
            .signed_delivery_body_sha256(source, delivery_id)
            .await
    }

    /// Counts jobs that made a successful mutating call (outcome `done`) since `since`.
    async fn count_done_since(&self, since: DateTime<Utc>) -> StoreResult<u64> {
        self.same_sql().count_done_since(since).await
    }

    /// The account ids of the next due pending jobs of `sources` and `actions` that carry
    /// an `account_id` whose record is not read yet, in the order they will be claimed: the
    /// worker reads those records ahead, in bulk.
    async fn upcoming_account_ids(
        &self,
        sources: &[&str],
        actions: &[&str],
        limit: u32,
    ) -> StoreResult<Vec<String>> {
        self.same_sql()
            .upcoming_account_ids(sources, actions, limit)
            .await
    }

    /// Counts jobs per state, for metrics and the console.
    async fn count_by_state(&self) -> StoreResult<Vec<(JobState, u64)>> {
        self.same_sql().count_by_state().await
    }

    async fn worker_state(&self) -> StoreResult<WorkerState> {
        self.same_sql().worker_state().await
    }
    /// Pauses the worker. An existing pause keeps its original reason.
    async fn pause(&self, reason: PauseReason) -> StoreResult<WorkerState>;
    async fn resume(&self) -> StoreResult<WorkerState>;

    /// Ends a console session on every replica: `session_sha256` (the SHA-256 of the session
    /// cookie, lowercase hex) is refused from now on. `expires_at` is when the cookie expires
    /// by itself; rows past it are deleted by later calls, so the list stays as short as the
    /// sessions that could still be used.
    async fn revoke_session(
        &self,
        session_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        self.same_sql()
            .revoke_session(session_sha256, expires_at)
            .await
    }

    /// Whether a logout ended this session (`session_sha256` as in [`Store::revoke_session`]).
    async fn is_session_revoked(&self, session_sha256: &str) -> StoreResult<bool> {
        self.same_sql().is_session_revoked(session_sha256).await
    }

    /// Wakes the workers that may claim a job made due: this process's, and on Postgres
    /// every replica's.
    fn announce(&self);

    /// Signalled whenever jobs may have become claimable (enqueue, approve, retry), by this
    /// process or, on Postgres, by any replica through `LISTEN`/`NOTIFY`.
    fn wakeup(&self) -> Arc<Notify>;
}

/// Whether the one claim of a batched write of one was still held.
fn held(results: Vec<bool>) -> bool {
    results.first().copied().unwrap_or(false)
}

/// The two backends, for what differs between them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Postgres,
    Sqlite,
}

/// One backend's SQL of a migration, named by its file under `migrations/<backend>/` without
/// `.sql`: `<version>_<description with underscores>`, as sqlx names them.
macro_rules! sql_of {
    ($backend:literal, $file:literal) => {
        include_str!(concat!("../../migrations/", $backend, "/", $file, ".sql"))
    };
}

/// A migration of both backends, or of Postgres only.
macro_rules! migration {
    ($file:literal, both) => {
        (
            $file,
            Some(sql_of!("postgres", $file)),
            Some(sql_of!("sqlite", $file)),
        )
    };
    ($file:literal, postgres) => {
        ($file, Some(sql_of!("postgres", $file)), None)
    };
}

/// Every migration, in order: (file name, Postgres SQL, SQLite SQL). A landed migration is
/// never edited (`tests/it/migrations.rs` pins each file's checksum).
const MIGRATIONS: &[(&str, Option<&str>, Option<&str>)] = &[
    migration!("20261128000001_initial", both),
    migration!("20261128000002_accept_in_one_call", postgres),
    migration!("20261201000001_recorded_account", both),
    migration!("20261201000002_unsigned_ids_and_mass_approval", both),
    migration!("20261201000003_revoked_sessions", both),
    migration!("20261206000001_decisions_from_rust", postgres),
    migration!("20261206000002_undo_actions", both),
    migration!("20261207000001_target_in_live_key", both),
    migration!("20261207000002_cancel_spares_undo", postgres),
    migration!("20261208000001_action_reference_table", both),
    migration!("20261208000002_acceptance_in_rust", postgres),
    migration!("20261209000001_verifications", both),
    migration!("20261209000002_event_chain", both),
    migration!("20261209000005_verification_sweep_index", both),
    migration!("20261210000005_people", both),
    migration!("20261210000006_people_filters", both),
    migration!("20261211000001_handover", both),
    migration!("20261212000001_lanes", both),
    migration!("20261212000002_rate_budget", postgres),
];

/// The embedded migrations of one backend, in order.
fn migrator(backend: Backend) -> sqlx::migrate::Migrator {
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    use std::borrow::Cow;
    let migrations = MIGRATIONS
        .iter()
        .filter_map(|&(file, postgres, sqlite)| {
            let sql = match backend {
                Backend::Postgres => postgres,
                Backend::Sqlite => sqlite,
            }?;
            let (version, description) = file.split_once('_').expect("<version>_<description>");
            Some(Migration::new(
                version.parse().expect("a numeric migration version"),
                Cow::Owned(description.replace('_', " ")),
                MigrationType::Simple,
                Cow::Borrowed(sql),
                false,
            ))
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ignore_missing: false,
        locking: true,
        no_tx: false,
    }
}

/// Opens the store a `database_url` names: `postgres://…`/`postgresql://…` or `sqlite://…`
/// (`sqlite://offboard.db` is a file relative to the working directory, created if missing).
pub async fn open(database_url: &str, options: &StoreOptions) -> anyhow::Result<Arc<dyn Store>> {
    let scheme = database_url.split(':').next().unwrap_or_default();
    match scheme {
        "postgres" | "postgresql" => Ok(Arc::new(
            PostgresStore::connect(database_url, options).await?,
        )),
        "sqlite" => Ok(Arc::new(SqliteStore::open(database_url, options).await?)),
        _ => anyhow::bail!(
            "database_url must start with postgres://, postgresql:// or sqlite:// (got scheme `{scheme}`)"
        ),
    }
}

/// Opens the store and applies pending migrations.
pub async fn open_migrated(
    database_url: &str,
    options: &StoreOptions,
) -> anyhow::Result<Arc<dyn Store>> {
    let store = open(database_url, options).await?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("failed to apply migrations: {e}"))?;
    Ok(store)
}

/// What lease rescue makes of a running job whose worker's lease expired: one rule for both
/// backends, handed to Postgres as bound values.
pub(crate) mod lease_rescue {
    use crate::domain::JobState;

    /// Every attempt used: the job fails.
    pub const EXHAUSTED: (JobState, &str) = (JobState::Failed, "max_attempts");
    /// Attempts left: the job runs again at once.
    pub const AGAIN: (JobState, &str) = (JobState::Pending, "lease_expired");
    /// The rescue event's detail is `BEFORE_OWNER <worker> AFTER_OWNER`.
    pub const BEFORE_OWNER: &str = "lease of worker ";
    pub const AFTER_OWNER: &str = " expired";

    pub fn outcome(attempts: i32, max_attempts: i32) -> (JobState, &'static str) {
        if attempts >= max_attempts {
            EXHAUSTED
        } else {
            AGAIN
        }
    }

    pub fn detail(owner: Option<&str>) -> String {
        format!("{BEFORE_OWNER}{}{AFTER_OWNER}", owner.unwrap_or("?"))
    }
}

/// The actor of the events offboard itself writes (a dependent step cancelled, a lease
/// rescued).
pub(crate) const SYSTEM_ACTOR: &str = "offboard";

/// Renders the detail of a dependent step cancelled because an earlier step did not succeed.
pub(crate) const PREVIOUS_STEP_FAILED: &str = "previous_step_failed";

/// The longest `last_error` or event detail we keep; API bodies can be large.
pub(crate) const MAX_DETAIL_BYTES: usize = 4096;

pub(crate) fn truncate_detail(text: &str) -> &str {
    if text.len() <= MAX_DETAIL_BYTES {
        return text;
    }
    let mut end = MAX_DETAIL_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    /// A migration file that is not listed never runs: every file of `migrations/` is in
    /// `MIGRATIONS`, on the backends it has a file for.
    #[test]
    fn every_migration_file_is_listed() {
        for backend in ["postgres", "sqlite"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            for entry in std::fs::read_dir(&dir).unwrap() {
                let name = entry.unwrap().file_name().into_string().unwrap();
                let Some(stem) = name.strip_suffix(".sql") else {
                    continue;
                };
                let listed = super::MIGRATIONS.iter().any(|&(file, postgres, sqlite)| {
                    file == stem
                        && match backend {
                            "postgres" => postgres.is_some(),
                            _ => sqlite.is_some(),
                        }
                });
                assert!(listed, "migrations/{backend}/{name} is not in MIGRATIONS");
            }
        }
    }

    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{Row, SqlitePool};
    use std::str::FromStr;

    use super::{Backend, migrator};

    /// A SQLite database with every migration before `version` applied.
    async fn sqlite_before(dir: &std::path::Path, version: i64) -> SqlitePool {
        let options = SqliteConnectOptions::from_str(&format!("sqlite://{}/m.db", dir.display()))
            .unwrap()
            .create_if_missing(true)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        let mut earlier = migrator(Backend::Sqlite);
        earlier.migrations = earlier
            .migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        earlier.run(&pool).await.unwrap();
        pool
    }

    /// Rebuilding `jobs` for the undo actions keeps every row, id, chain link and audit
    /// event, and ids go on from where they were.
    #[tokio::test]
    async fn the_undo_actions_migration_keeps_jobs_and_their_trail() {
        let dir = tempfile::tempdir().unwrap();
        let pool = sqlite_before(dir.path(), 20261206000002).await;
        sqlx::query(
            "INSERT INTO jobs (id, action, state, email, run_at, max_attempts, created_at, updated_at) \
             VALUES (1, 'suspend_access', 'pending', 'a@example.com', 0, 8, 0, 0), \
                    (7, 'delete_account', 'pending', 'a@example.com', 0, 8, 0, 0)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query("UPDATE jobs SET depends_on = 1 WHERE id = 7")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO job_events (job_id, at, to_state, actor) VALUES (1, 0, 'pending', 'x'), (7, 0, 'pending', 'x')",
        )
        .execute(&pool)
        .await
        .unwrap();
        // A job that was deleted by hand: its id is never handed out again.
        sqlx::query("UPDATE sqlite_sequence SET seq = 9 WHERE name = 'jobs'")
            .execute(&pool)
            .await
            .unwrap();

        migrator(Backend::Sqlite).run(&pool).await.unwrap();

        let rows = sqlx::query("SELECT id, depends_on FROM jobs ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        let kept: Vec<(i64, Option<i64>)> = rows
            .iter()
            .map(|r| (r.get("id"), r.get("depends_on")))
            .collect();
        assert_eq!(kept, [(1, None), (7, Some(1))]);
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM job_events")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(events, 2);
        let broken = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert!(broken.is_empty(), "foreign keys hold");
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO jobs (action, state, email, run_at, max_attempts, created_at, updated_at) \
             VALUES ('enable_account', 'pending', 'a@example.com', 0, 8, 0, 0) RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(id, 10, "ids go on after the highest ever handed out");
        let refused = sqlx::query(
            "INSERT INTO jobs (action, state, email, run_at, max_attempts, created_at, updated_at) \
             VALUES ('fly_away', 'pending', 'a@example.com', 0, 8, 0, 0)",
        )
        .execute(&pool)
        .await;
        assert!(refused.is_err(), "the CHECK still refuses unknown actions");
    }
}
