//! The embedded store: one SQLite file in WAL mode. Every write runs in a `BEGIN IMMEDIATE`
//! transaction, which takes the write lock up front, so two writers never both read and then
//! race to write; readers are not blocked. Times are integer microseconds (UTC) from this
//! process's clock.
//!
//! Over 600 lines, as one concept: the `Store` trait's operations on SQLite. Delivery
//! acceptance is in `accept.rs`, what both backends read alike in `../rows.rs`.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use tokio::sync::Notify;

mod accept;

use super::model::*;
use super::rows::{self, delivery_columns, job_columns, worker_actor};
use super::{PREVIOUS_STEP_FAILED, Store, StoreError, StoreOptions, StoreResult, truncate_detail};
use crate::batch::Batcher;
use crate::domain::{Job, JobEvent, JobId, JobState, PauseReason, Transition, WorkerState};

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

impl SqliteStore {
    pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        let connect = SqliteConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid SQLite database_url: {e}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit we answered 2xx for survives a power cut, not just a crash.
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.statement_timeout.max(Duration::from_secs(5)));
        let pool = SqlitePoolOptions::new()
            .max_connections(options.max_connections.clamp(1, 8))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("cannot open SQLite database {url}: {e}"))?;
        Ok(SqliteStore {
            pool,
            wakeup: Arc::new(Notify::new()),
            batcher: OnceLock::new(),
            accept_deadline: options.accept_deadline,
        })
    }

    fn migrator() -> Migrator {
        super::migrator(&[
            (
                20261128000001,
                "initial",
                include_str!("../../../migrations/sqlite/20261128000001_initial.sql"),
            ),
            (
                20261201000001,
                "recorded account",
                include_str!("../../../migrations/sqlite/20261201000001_recorded_account.sql"),
            ),
            (
                20261201000002,
                "unsigned ids and mass approval",
                include_str!(
                    "../../../migrations/sqlite/20261201000002_unsigned_ids_and_mass_approval.sql"
                ),
            ),
            (
                20261201000003,
                "revoked sessions",
                include_str!("../../../migrations/sqlite/20261201000003_revoked_sessions.sql"),
            ),
        ])
    }

    async fn begin_write(&self) -> StoreResult<Tx> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
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
            now,
        )
        .await?;
        if to == JobState::Failed {
            cancel_dependents(&mut tx, &[job.id], now).await?;
        }
        tx.commit().await?;
        if to != JobState::Failed {
            self.wakeup.notify_one();
        }
        Ok(true)
    }
}

fn live_conflict(err: sqlx::Error, id: JobId, action: crate::domain::Action) -> StoreError {
    if let sqlx::Error::Database(db) = &err
        && db.is_unique_violation()
    {
        return StoreError::LiveJobExists { id, action };
    }
    err.into()
}

async fn insert_event(
    tx: &mut Tx,
    job_id: JobId,
    from: Option<JobState>,
    to: JobState,
    actor: &str,
    detail: &str,
    now: i64,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(job_id)
    .bind(now)
    .bind(from.map(JobState::as_str))
    .bind(to.as_str())
    .bind(actor)
    .bind(truncate_detail(detail))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Cancels `targets` (which must be live and not running) with one event each.
async fn cancel_jobs(
    tx: &mut Tx,
    targets: &[(JobId, String)],
    reason: &str,
    actor: &str,
    detail: &str,
    now: i64,
) -> StoreResult<()> {
    for (id, old_state) in targets {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', last_error = ?2, finalized_at = ?3, updated_at = ?3 \
             WHERE id = ?1",
        )
        .bind(id)
        .bind(reason)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        let from: JobState = parse_column(old_state)?;
        insert_event(tx, *id, Some(from), JobState::Cancelled, actor, detail, now).await?;
    }
    Ok(())
}

/// Cancels the live later steps of these jobs' chains, transitively.
async fn cancel_dependents(tx: &mut Tx, ids: &[JobId], now: i64) -> StoreResult<Vec<JobId>> {
    let mut cancelled = Vec::new();
    let mut frontier: Vec<JobId> = ids.to_vec();
    while let Some(parent) = frontier.pop() {
        let children: Vec<(JobId, String)> =
            sqlx::query_as("SELECT id, state FROM jobs WHERE depends_on = ?1")
                .bind(parent)
                .fetch_all(&mut **tx)
                .await?;
        let live: Vec<(JobId, String)> = children
            .iter()
            .filter(|(_, state)| state == "pending" || state == "awaiting_approval")
            .cloned()
            .collect();
        cancel_jobs(
            tx,
            &live,
            PREVIOUS_STEP_FAILED,
            "offboard",
            PREVIOUS_STEP_FAILED,
            now,
        )
        .await?;
        cancelled.extend(live.iter().map(|(id, _)| *id));
        frontier.extend(children.iter().map(|(id, _)| *id));
    }
    Ok(cancelled)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        Self::migrator().run(&self.pool).await.map_err(|e| match e {
            sqlx::migrate::MigrateError::Execute(inner) => StoreError::from(inner),
            other => StoreError::Corrupt(other.to_string()),
        })
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn accept_delivery(&self, delivery: NewDelivery) -> StoreResult<DeliveryReceipt> {
        let receipt = self
            .batcher
            .get_or_init(|| accept::spawn_batcher(self.pool.clone()))
            .submit_by(delivery, tokio::time::Instant::now() + self.accept_deadline)
            .await??;
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
            "  SELECT id FROM jobs j WHERE state = 'pending' AND run_at <= ?4 ",
            "  AND NOT EXISTS (SELECT 1 FROM worker_state WHERE paused) ",
            "  AND (depends_on IS NULL OR EXISTS ( ",
            "       SELECT 1 FROM jobs d WHERE d.id = j.depends_on AND d.state = 'succeeded')) ",
            "  ORDER BY run_at, id LIMIT ?1) ",
            "RETURNING ",
            job_columns!()
        ))
        .bind(i64::from(limit))
        .bind(owner)
        .bind(lease_until)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        jobs.sort_by_key(|job| (job.run_at, job.id));
        let actor = format!("worker:{owner}");
        for job in &jobs {
            let detail = format!("claimed, attempt {}", job.attempts);
            insert_event(
                &mut tx,
                job.id,
                Some(JobState::Pending),
                JobState::Running,
                &actor,
                &detail,
                now,
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
                    now,
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
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let now = now_micros();
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            let updated = sqlx::query(
                "UPDATE jobs SET account_id = ?3, account_type = ?4, updated_at = ?5 \
                 WHERE id = ?1 AND state = 'running' AND claim_seq = ?2",
            )
            .bind(item.job.id)
            .bind(item.job.claim_seq)
            .bind(&item.account_id)
            .bind(&item.account_type)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            results.push(updated.rows_affected() == 1);
        }
        tx.commit().await?;
        Ok(results)
    }

    async fn job(&self, id: JobId) -> StoreResult<Option<Job>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id = ?1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(job_from_row).transpose()
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

    async fn retry_later(
        &self,
        job: &Job,
        run_at: DateTime<Utc>,
        refund_attempt: bool,
        error: Option<&str>,
        detail: &str,
    ) -> StoreResult<bool> {
        let error = error.map(|e| truncate_detail(e).to_owned());
        self.finish_claim(
            job,
            "UPDATE jobs SET state = 'pending', run_at = ?4, \
               attempts = CASE WHEN ?5 THEN max(attempts - 1, 0) ELSE attempts END, \
               last_error = coalesce(?6, last_error), lease_owner = NULL, lease_expires_at = NULL, \
               updated_at = ?3 \
             WHERE id = ?1 AND state = 'running' AND claim_seq = ?2",
            JobState::Pending,
            |q| q.bind(micros(run_at)).bind(refund_attempt).bind(error),
            detail,
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
                "offboard",
                &detail,
                now,
            )
            .await?;
            if exhausted {
                failed.push(*id);
            }
        }
        cancel_dependents(&mut tx, &failed, now).await?;
        tx.commit().await?;
        if !expired.is_empty() {
            self.wakeup.notify_one();
        }
        Ok(expired.into_iter().map(|(id, ..)| id).collect())
    }

    async fn transition(
        &self,
        id: JobId,
        transition: Transition,
        actor: &str,
        detail: &str,
    ) -> StoreResult<Job> {
        let mut tx = self.begin_write().await?;
        let current: Option<(String, String)> =
            sqlx::query_as("SELECT state, action FROM jobs WHERE id = ?1")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let (state, action) = current.ok_or(StoreError::NotFound(id))?;
        let state: JobState = parse_column(&state)?;
        let action: crate::domain::Action = parse_column(&action)?;
        if !transition.allowed_from().contains(&state) {
            return Err(StoreError::InvalidTransition {
                id,
                transition,
                state,
            });
        }
        let now = now_micros();
        let query = match transition {
            Transition::Cancel => sqlx::query(concat!(
                "UPDATE jobs SET state = 'cancelled', last_error = ?3, finalized_at = ?2, updated_at = ?2 ",
                "WHERE id = ?1 RETURNING ",
                job_columns!()
            ))
            .bind(id)
            .bind(now)
            .bind(detail),
            Transition::Approve => sqlx::query(concat!(
                "UPDATE jobs SET state = 'pending', updated_at = ?2 WHERE id = ?1 RETURNING ",
                job_columns!()
            ))
            .bind(id)
            .bind(now),
            Transition::Retry => sqlx::query(concat!(
                "UPDATE jobs SET state = 'pending', attempts = 0, last_error = NULL, outcome = NULL, ",
                "finalized_at = NULL, run_at = ?2, updated_at = ?2 WHERE id = ?1 RETURNING ",
                job_columns!()
            ))
            .bind(id)
            .bind(now),
        };
        let row = query
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| live_conflict(e, id, action))?;
        let job = job_from_row(&row)?;
        insert_event(&mut tx, id, Some(state), job.state, actor, detail, now).await?;
        if job.state == JobState::Cancelled {
            cancel_dependents(&mut tx, &[id], now).await?;
        }
        tx.commit().await?;
        self.wakeup.notify_one();
        Ok(job)
    }

    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>> {
        let mut query = rows::jobs_query::<Sqlite>(filter);
        let rows = query.build().fetch_all(&self.pool).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn events(&self, id: JobId) -> StoreResult<Vec<JobEvent>> {
        let rows = sqlx::query(
            "SELECT at, from_state, to_state, actor, detail FROM job_events WHERE job_id = ?1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(event_from_row).collect()
    }

    async fn list_deliveries(
        &self,
        source: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<Delivery>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            delivery_columns!(),
            " FROM deliveries WHERE (?1 IS NULL OR source = ?1) ORDER BY id DESC LIMIT ?2"
        ))
        .bind(source)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }

    async fn count_done_since(&self, since: DateTime<Utc>) -> StoreResult<u64> {
        let count: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE outcome = 'done' AND finalized_at >= ?1",
        )
        .bind(micros(since))
        .fetch_one(&self.pool)
        .await?;
        Ok(count.max(0) as u64)
    }

    async fn count_by_state(&self) -> StoreResult<Vec<(JobState, u64)>> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|(state, n)| Ok((parse_column(state)?, (*n).max(0) as u64)))
            .collect()
    }

    async fn worker_state(&self) -> StoreResult<WorkerState> {
        let row = sqlx::query("SELECT paused, reason, resumed_at FROM worker_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        worker_state_from_row(&row)
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

    async fn revoke_session(
        &self,
        session_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= ?1")
            .bind(now_micros())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO revoked_sessions (session_sha256, expires_at) VALUES (?1, ?2) \
             ON CONFLICT (session_sha256) DO NOTHING",
        )
        .bind(session_sha256)
        .bind(micros(expires_at))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn is_session_revoked(&self, session_sha256: &str) -> StoreResult<bool> {
        let (revoked,): (bool,) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_sha256 = ?1)",
        )
        .bind(session_sha256)
        .fetch_one(&self.pool)
        .await?;
        Ok(revoked)
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

    fn wakeup(&self) -> Arc<Notify> {
        self.wakeup.clone()
    }
}

fn job_from_row(row: &SqliteRow) -> StoreResult<Job> {
    rows::job_from_row(row, |row, column| from_micros(row.try_get(column)?))
}

fn worker_state_from_row(row: &SqliteRow) -> StoreResult<WorkerState> {
    rows::worker_state_from_row(row, |row, column| {
        row.try_get::<Option<i64>, _>(column)?
            .map(from_micros)
            .transpose()
    })
}

fn event_from_row(row: &SqliteRow) -> StoreResult<JobEvent> {
    rows::event_from_row(row, |row, column| from_micros(row.try_get(column)?))
}

fn delivery_from_row(row: &SqliteRow) -> StoreResult<Delivery> {
    rows::delivery_from_row(row, |row, column| from_micros(row.try_get(column)?))
}
