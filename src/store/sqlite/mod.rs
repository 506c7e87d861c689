//! The embedded store: one SQLite file in WAL mode. Every write runs in a `BEGIN IMMEDIATE`
//! transaction, which takes the write lock up front, so two writers never both read and then
//! race to write; readers are not blocked. Times are integer microseconds (UTC) from this
//! process's clock.
//!
//! The `Store` trait's operations on SQLite. Delivery acceptance is in `accept.rs`, bulk
//! requests in `bulk.rs`, what both backends read alike in `../rows.rs`.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use tokio::sync::Notify;

mod accept;
mod bulk;

use super::model::*;
use super::rows::{CLAIMED_ATTEMPT, due_jobs, job_columns, owner_actor, worker_actor};
use super::{SYSTEM_ACTOR, Store, StoreError, StoreOptions, StoreResult, truncate_detail};
use crate::batch::Batcher;
use crate::domain::{Job, JobEvent, JobId, JobState, Lane, PauseReason, WorkerState};

pub struct SqliteStore {
    pool: SqlitePool,
    wakeup: Arc<Notify>,
    /// Deliveries are recorded by one writer, many to a transaction (`crate::batch`).
    batcher: OnceLock<Batcher<NewDelivery, StoreResult<DeliveryReceipt>>>,
    accept_deadline: Duration,
}

fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

fn from_micros(value: i64) -> StoreResult<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {value}")))
}

fn now_micros() -> i64 {
    micros(Utc::now())
}

type Tx = Transaction<'static, Sqlite>;

type Db = Sqlite;
const BACKEND: super::Backend = super::Backend::Sqlite;
/// Times are integer microseconds (UTC).
type StoredTime = i64;
fn stored(at: DateTime<Utc>) -> StoredTime {
    micros(at)
}
fn loaded(at: StoredTime) -> StoreResult<DateTime<Utc>> {
    from_micros(at)
}

/// SQLite's clock, in the stored unit; `subsec` gives milliseconds.
macro_rules! now_sql {
    () => {
        "CAST(unixepoch('subsec') * 1000000 AS INTEGER)"
    };
}
/// The immediate transaction holds the database's write lock already.
macro_rules! for_update {
    () => {
        ""
    };
}
super::same_sql::same_sql!();
super::verifications::verifications_sql!();
super::chain::chain_sql!();
super::case_sql::case_sql!();

/// How long a write waits for another writer's lock.
fn busy_timeout(options: &StoreOptions) -> Duration {
    options.statement_timeout.max(Duration::from_secs(5))
}

/// The database file in WAL mode, each connection set up alike.
async fn open_pool(url: &str, options: &StoreOptions) -> anyhow::Result<SqlitePool> {
    let connect = SqliteConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("invalid SQLite database_url: {e}"))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // FULL: a commit we answered 2xx for survives a power cut, not just a crash.
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        // Freed space is overwritten with zeros, so a pseudonymized email leaves no copy
        // behind in the file (README, "Proof for auditors", "Personal data has an end").
        .pragma("secure_delete", "on")
        .busy_timeout(busy_timeout(options));
    SqlitePoolOptions::new()
        .max_connections(options.max_connections.clamp(1, 8))
        .acquire_timeout(options.acquire_timeout)
        .connect_with(connect)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open SQLite database {url}: {e}"))
}

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        Ok(SqliteStore {
            pool: open_pool(url, options).await?,
            wakeup: Arc::new(Notify::new()),
            batcher: OnceLock::new(),
            accept_deadline: options.accept_deadline,
        })
    }

    async fn begin_write(&self) -> StoreResult<Tx> {
        begin_write(&self.pool).await
    }

    /// Runs one guarded worker write: the UPDATE must name the claim the worker holds.
    async fn finish_claim(
        &self,
        job: &Job,
        update: &'static str,
        to: JobState,
        bind: impl FnOnce(
            sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments<'static>>,
        )
            -> sqlx::query::Query<'static, Sqlite, sqlx::sqlite::SqliteArguments<'static>>,
        detail: &str,
    ) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let query = sqlx::query(update)
            .bind(job.id)
            .bind(job.claim_seq)
            .bind(now);
        let updated = bind(query).execute(&mut *tx).await?.rows_affected();
        if updated == 0 {
            return Ok(false);
        }
        insert_event(
            &mut tx,
            job.id,
            Some(JobState::Running),
            to,
            &worker_actor(job),
            detail,
        )
        .await?;
        if to == JobState::Failed {
            cancel_dependents(&mut tx, &[job.id]).await?;
        }
        tx.commit().await?;
        if to != JobState::Failed {
            self.wakeup.notify_one();
        }
        Ok(true)
    }
}

/// Cancels the live later steps of these jobs' chains, transitively (the one cascade,
/// `../accept.rs`).
async fn cancel_dependents(tx: &mut Tx, ids: &[JobId]) -> StoreResult<Vec<JobId>> {
    super::accept::cancel_dependents(tx, ids).await
}

#[async_trait]
impl Store for SqliteStore {
    fn accept_deadline(&self) -> Duration {
        self.accept_deadline
    }

    /// Takes the write lock and gives it back: a read answers even while another writer (in
    /// this process or another, such as `offboard jobs import`) holds the lock for longer
    /// than a webhook may wait, and then webhooks are answered 503.
    async fn ready(&self, within: Duration) -> StoreResult<()> {
        // A connection of its own, waiting for the lock no longer than `within`: the pool's
        // wait for a writer is far longer, and a probe must not change a pooled connection.
        let options = (*self.pool.connect_options()).clone().busy_timeout(within);
        let mut conn = tokio::time::timeout(within, sqlx::ConnectOptions::connect(&options))
            .await
            .map_err(|_| StoreError::Overdue { in_doubt: false })??;
        let took = sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await;
        if took.is_ok() {
            sqlx::query("ROLLBACK").execute(&mut conn).await?;
        }
        took.map(drop).map_err(|e| match &e {
            sqlx::Error::Database(db) if db.message().contains("locked") => {
                StoreError::Overdue { in_doubt: false }
            }
            _ => e.into(),
        })
    }

    async fn accept_delivery_within(
        &self,
        delivery: NewDelivery,
        within: Duration,
    ) -> StoreResult<DeliveryReceipt> {
        let deadline = tokio::time::Instant::now() + within;
        let receipt = match delivery.bulk_chunks(bulk::CHUNK_STEPS) {
            Some(chunks) => {
                bulk::record_in_chunks(&self.pool, &delivery, &chunks, deadline).await?
            }
            None => {
                self.batcher
                    .get_or_init(|| accept::spawn_batcher(self.pool.clone()))
                    .submit_by(delivery, deadline)
                    .await??
            }
        };
        if receipt.may_have_made_jobs_due() {
            self.wakeup.notify_one();
        }
        Ok(receipt)
    }

    async fn claim_due(&self, owner: &str, limit: u32, lease: Duration) -> StoreResult<Vec<Job>> {
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let lease_until = now.saturating_add(i64::try_from(lease.as_micros()).unwrap_or(i64::MAX));
        let rows = sqlx::query(concat!(
            "UPDATE jobs SET state = 'running', attempts = attempts + 1, claim_seq = claim_seq + 1, ",
            "  lease_owner = ?2, lease_expires_at = ?3, updated_at = ?4 ",
            "WHERE id IN ( ",
            due_jobs!("?4", "?1", "?5", "?6", "?7"),
            ") ",
            "RETURNING ",
            job_columns!()
        ))
        .bind(i64::from(limit))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .bind(Lane::BY_PRIORITY[0].as_str())
        .bind(Lane::BY_PRIORITY[1].as_str())
        .bind(Lane::BY_PRIORITY[2].as_str())
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|job| (job.lane, job.run_at, job.id));
        let actor = owner_actor(owner);
        for job in &jobs {
            let detail = format!("{CLAIMED_ATTEMPT}{}", job.attempts);
            insert_event(
                &mut tx,
                job.id,
                Some(JobState::Pending),
                JobState::Running,
                &actor,
                &detail,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(jobs)
    }

    async fn complete_many(&self, items: &[Completion]) -> StoreResult<Vec<bool>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let job = &item.job;
            let updated = sqlx::query(
                "UPDATE jobs SET state = 'succeeded', outcome = ?4, finalized_at = ?3, updated_at = ?3, \
                   lease_owner = NULL, lease_expires_at = NULL \
                 WHERE id = ?1 AND state = 'running' AND claim_seq = ?2",
            )
            .bind(job.id)
            .bind(job.claim_seq)
            .bind(now)
            .bind(item.outcome.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if updated > 0 {
                insert_event(
                    &mut tx,
                    job.id,
                    Some(JobState::Running),
                    JobState::Succeeded,
                    &worker_actor(job),
                    &item.detail,
                )
                .await?;
            }
            results.push(updated > 0);
        }
        tx.commit().await?;
        if results.contains(&true) {
            self.wakeup.notify_one();
        }
        Ok(results)
    }

    async fn record_accounts(&self, items: &[AccountRecord]) -> StoreResult<Vec<bool>> {
        // One statement over the whole batch, as on Postgres:
        // [id, claim_seq, account, type, successor].
        let input: Vec<serde_json::Value> = items
            .iter()
            .map(|i| {
                serde_json::json!([
                    i.job.id,
                    i.job.claim_seq,
                    i.account_id,
                    i.account_type,
                    i.successor_account_id
                ])
            })
            .collect();
        let recorded: Vec<JobId> = sqlx::query_scalar(
            "UPDATE jobs SET account_id = input.value ->> 2, account_type = input.value ->> 3, \
               successor_account_id = coalesce(input.value ->> 4, jobs.successor_account_id), \
               updated_at = $2 \
             FROM json_each($1) AS input \
             WHERE jobs.id = input.value ->> 0 AND jobs.state = 'running' \
               AND jobs.claim_seq = input.value ->> 1 \
             RETURNING jobs.id",
        )
        .bind(serde_json::Value::Array(input).to_string())
        .bind(now_micros())
        .fetch_all(&self.pool)
        .await?;
        Ok(items.iter().map(|i| recorded.contains(&i.job.id)).collect())
    }

    async fn fail(&self, job: &Job, error: &str, detail: &str) -> StoreResult<bool> {
        let error = truncate_detail(error).to_owned();
        self.finish_claim(
            job,
            "UPDATE jobs SET state = 'failed', last_error = ?4, finalized_at = ?3, updated_at = ?3, \
               lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = ?1 AND state = 'running' AND claim_seq = ?2",
            JobState::Failed,
            |q| q.bind(error),
            detail,
        )
        .await
    }

    async fn put_back(&self, job: &Job, back: PutBack<'_>) -> StoreResult<bool> {
        let error = back.error.map(|e| truncate_detail(e).to_owned());
        self.finish_claim(
            job,
            "UPDATE jobs SET state = 'pending', run_at = ?4, \
               attempts = CASE WHEN ?5 THEN max(attempts - 1, 0) ELSE attempts END, \
               last_error = coalesce(?6, last_error), lease_owner = NULL, lease_expires_at = NULL, \
               updated_at = ?3 \
             WHERE id = ?1 AND state = 'running' AND claim_seq = ?2",
            JobState::Pending,
            |q| {
                q.bind(micros(back.run_at))
                    .bind(back.refund_attempt)
                    .bind(error)
            },
            back.detail,
        )
        .await
    }

    async fn rescue_expired(&self) -> StoreResult<Vec<JobId>> {
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let expired: Vec<(JobId, i32, i32, Option<String>)> = sqlx::query_as(
            "SELECT id, attempts, max_attempts, lease_owner FROM jobs \
             WHERE state = 'running' AND lease_expires_at < ?1 ORDER BY id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut failed = Vec::new();
        for (id, attempts, max_attempts, owner) in &expired {
            let (state, error) = super::lease_rescue::outcome(*attempts, *max_attempts);
            let exhausted = state == JobState::Failed;
            sqlx::query(
                "UPDATE jobs SET state = ?2, last_error = ?3, finalized_at = ?4, run_at = ?5, \
                   lease_owner = NULL, lease_expires_at = NULL, updated_at = ?5 WHERE id = ?1",
            )
            .bind(id)
            .bind(state.as_str())
            .bind(error)
            .bind(exhausted.then_some(now))
            .bind(now)
            .execute(&mut *tx)
            .await?;
            let detail = super::lease_rescue::detail(owner.as_deref());
            insert_event(
                &mut tx,
                *id,
                Some(JobState::Running),
                state,
                SYSTEM_ACTOR,
                &detail,
            )
            .await?;
            if exhausted {
                failed.push(*id);
            }
        }
        cancel_dependents(&mut tx, &failed).await?;
        tx.commit().await?;
        if !expired.is_empty() {
            self.wakeup.notify_one();
        }
        Ok(expired.into_iter().map(|(id, ..)| id).collect())
    }

    async fn pause(&self, reason: PauseReason) -> StoreResult<WorkerState> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE worker_state SET paused = 1, reason = coalesce(reason, ?1), updated_at = ?2 \
             WHERE id = 1 RETURNING paused, reason, resumed_at",
        )
        .bind(reason.as_str())
        .bind(now_micros())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        worker_state_from_row(&row)
    }

    async fn resume(&self) -> StoreResult<WorkerState> {
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let row = sqlx::query(
            "UPDATE worker_state SET paused = 0, reason = NULL, resumed_at = ?1, updated_at = ?1 \
             WHERE id = 1 RETURNING paused, reason, resumed_at",
        )
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.wakeup.notify_one();
        worker_state_from_row(&row)
    }

    fn announce(&self) {
        self.wakeup.notify_one();
    }

    fn same_sql(&self) -> &dyn super::SameSql {
        &self.pool
    }

    fn verifications(&self) -> &dyn super::VerificationSql {
        &self.pool
    }

    fn chain(&self) -> &dyn super::ChainSql {
        &self.pool
    }

    fn case_reads(&self) -> &dyn super::CaseReads {
        &self.pool
    }

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }
}
