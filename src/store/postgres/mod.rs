//! The production store. The database clock (`now()`) is the one clock for leases and
//! timestamps, so replicas with skewed clocks still agree on who holds a job.
//!
//! The `Store` trait's operations on Postgres. Delivery acceptance is in `accept.rs`,
//! wake-ups in `notifier.rs`, what both backends read alike in `../rows.rs`.

mod accept;
mod budget;
mod notifier;

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, Row, Transaction};
use tokio::sync::Notify;

use super::model::*;
use super::rows::{CLAIMED_ATTEMPT, due_jobs, job_columns, owner_actor, worker_actor};
use super::{SYSTEM_ACTOR, Store, StoreOptions, StoreResult, truncate_detail};
use crate::domain::{Job, JobEvent, JobId, JobState, Lane, PauseReason, WorkerState};
use accept::AcceptBatcher;
use notifier::Notifier;

/// The channel replicas `LISTEN` on; a payload-free `NOTIFY` means "jobs may be due".
const WAKEUP_CHANNEL: &str = "offboard_jobs";

pub struct PostgresStore {
    pool: PgPool,
    wakeup: Arc<Notify>,
    listener: OnceLock<()>,
    notifier: OnceLock<Notifier>,
    batcher: OnceLock<AcceptBatcher>,
    accept: accept::Limits,
}

impl PostgresStore {
    pub async fn connect(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        let statement_timeout = format!("{}ms", options.statement_timeout.as_millis());
        let connect = PgConnectOptions::from_str(url)
            .map_err(|e| anyhow::anyhow!("invalid Postgres database_url: {e}"))?
            .application_name("offboard")
            .options([("statement_timeout", statement_timeout.as_str())]);
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            // A ping before every checkout would double the round trips of every statement; a
            // connection that broke meanwhile fails its statement once and is discarded.
            .test_before_acquire(false)
            .connect_with(connect)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to Postgres: {e}"))?;
        Ok(PostgresStore {
            pool,
            wakeup: Arc::new(Notify::new()),
            listener: OnceLock::new(),
            notifier: OnceLock::new(),
            batcher: OnceLock::new(),
            accept: accept::Limits::from(options),
        })
    }

    fn spawn_listener(&self) {
        let pool = self.pool.clone();
        let wakeup = self.wakeup.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            loop {
                match listen(&pool, &wakeup).await {
                    Ok(()) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "job wake-up listener lost its connection; polling until it is back");
                        // Polling covers the gap; a spurious wake-up is harmless.
                        wakeup.notify_one();
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(10));
                    }
                }
            }
        });
    }
}

async fn listen(pool: &PgPool, wakeup: &Notify) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(WAKEUP_CHANNEL).await?;
    loop {
        // `try_recv` returns None after a reconnect, when notifications may have been missed.
        if listener.try_recv().await?.is_none() {
            tracing::info!("job wake-up listener reconnected");
        }
        wakeup.notify_one();
    }
}

type Db = Postgres;
const BACKEND: super::Backend = super::Backend::Postgres;
/// Times are `timestamptz`; writes take the database's own clock (`now()`).
type StoredTime = DateTime<Utc>;
fn stored(at: DateTime<Utc>) -> StoredTime {
    at
}
fn loaded(at: StoredTime) -> StoreResult<DateTime<Utc>> {
    Ok(at)
}

macro_rules! now_sql {
    () => {
        "now()"
    };
}
macro_rules! for_update {
    () => {
        " FOR UPDATE"
    };
}
super::same_sql::same_sql!();
super::verifications::verifications_sql!();
super::chain::chain_sql!();
super::case_sql::case_sql!();

/// Cancels the live later steps of these jobs' chains, transitively (the one cascade,
/// `../accept.rs`).
async fn cancel_dependents(
    tx: &mut Transaction<'_, Postgres>,
    ids: &[JobId],
) -> StoreResult<Vec<JobId>> {
    super::accept::cancel_dependents(tx, ids).await
}

#[async_trait]
impl Store for PostgresStore {
    fn fleet_budget(&self) -> Option<Arc<dyn crate::atlassian::FleetBudget>> {
        Some(Arc::new(budget::PgBudget {
            pool: self.pool.clone(),
        }))
    }

    fn accept_deadline(&self) -> Duration {
        self.accept.deadline
    }

    async fn accept_delivery_within(
        &self,
        delivery: NewDelivery,
        within: Duration,
    ) -> StoreResult<DeliveryReceipt> {
        let deadline = tokio::time::Instant::now() + within;
        // A bulk request is written on a connection of its own, never in the batches that
        // webhooks wait for (README, "Bulk requests and webhooks").
        let receipt = if delivery.is_bulk() {
            accept::accept_alone(&self.pool, self.accept, &delivery, deadline).await?
        } else {
            self.batcher
                .get_or_init(|| accept::spawn_batcher(self.pool.clone(), self.accept))
                .submit_by(delivery, deadline)
                .await??
        };
        if receipt.may_have_made_jobs_due() {
            self.announce();
        }
        Ok(receipt)
    }

    async fn claim_due(&self, owner: &str, limit: u32, lease: Duration) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(concat!(
            // The lanes' due jobs are read first; the lock rechecks `state` on the row as it
            // is once locked, so a job another replica claimed meanwhile is skipped.
            "WITH due AS ( ",
            "SELECT id FROM jobs WHERE state = 'pending' AND id IN (",
            due_jobs!("now()", "$1", "$6", "$7", "$8"),
            ") FOR UPDATE SKIP LOCKED ",
            "), claimed AS ( ",
            "  UPDATE jobs SET state = 'running', attempts = attempts + 1, claim_seq = claim_seq + 1, ",
            "    lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3), updated_at = now() ",
            "  FROM due WHERE jobs.id = due.id RETURNING jobs.* ",
            "), events AS ( ",
            "  INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) ",
            "  SELECT id, now(), 'pending', 'running', $4, $5 || attempts FROM claimed ",
            ") SELECT ", job_columns!(), " FROM claimed"
        ))
        .bind(i64::from(limit))
        .bind(owner)
        .bind(lease.as_secs_f64())
        .bind(owner_actor(owner))
        .bind(CLAIMED_ATTEMPT)
        .bind(Lane::BY_PRIORITY[0].as_str())
        .bind(Lane::BY_PRIORITY[1].as_str())
        .bind(Lane::BY_PRIORITY[2].as_str())
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = rows
            .iter()
            .map(job_from_row)
            .collect::<StoreResult<Vec<_>>>()?;
        // Urgent first (`Lane`'s order is `Lane::BY_PRIORITY`), then oldest first.
        jobs.sort_by_key(|job| (job.lane, job.run_at, job.id));
        Ok(jobs)
    }

    async fn complete_many(&self, items: &[Completion]) -> StoreResult<Vec<bool>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<JobId> = items.iter().map(|i| i.job.id).collect();
        let claims: Vec<i64> = items.iter().map(|i| i.job.claim_seq).collect();
        let outcomes: Vec<&str> = items.iter().map(|i| i.outcome.as_str()).collect();
        let actors: Vec<String> = items.iter().map(|i| worker_actor(&i.job)).collect();
        let details: Vec<&str> = items.iter().map(|i| truncate_detail(&i.detail)).collect();
        let done: Vec<JobId> = sqlx::query_scalar(
            "WITH input AS ( \
               SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
                 AS i (id, claim_seq, outcome, actor, detail) \
             ), done AS ( \
               UPDATE jobs SET state = 'succeeded', outcome = input.outcome, finalized_at = now(), \
                 updated_at = now(), lease_owner = NULL, lease_expires_at = NULL \
               FROM input \
               WHERE jobs.id = input.id AND jobs.state = 'running' AND jobs.claim_seq = input.claim_seq \
               RETURNING jobs.id, input.actor, input.detail \
             ), events AS ( \
               INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
               SELECT id, now(), 'running', 'succeeded', actor, detail FROM done \
             ) SELECT id FROM done",
        )
        .bind(&ids)
        .bind(&claims)
        .bind(&outcomes)
        .bind(&actors)
        .bind(&details)
        .fetch_all(&self.pool)
        .await?;
        if !done.is_empty() {
            // Later steps of these chains may have become claimable. Only this process is
            // woken, since it is the one with free slots; a NOTIFY for every batch would
            // wake every replica for every completion, and other replicas poll.
            self.wakeup.notify_one();
        }
        Ok(ids.iter().map(|id| done.contains(id)).collect())
    }

    async fn record_accounts(&self, items: &[AccountRecord]) -> StoreResult<Vec<bool>> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<JobId> = items.iter().map(|i| i.job.id).collect();
        let claims: Vec<i64> = items.iter().map(|i| i.job.claim_seq).collect();
        let accounts: Vec<&str> = items.iter().map(|i| i.account_id.as_str()).collect();
        let types: Vec<&str> = items.iter().map(|i| i.account_type.as_str()).collect();
        let successors: Vec<Option<&str>> = items
            .iter()
            .map(|i| i.successor_account_id.as_deref())
            .collect();
        let recorded: Vec<JobId> = sqlx::query_scalar(
            "UPDATE jobs SET account_id = input.account_id, account_type = input.account_type, \
               successor_account_id = coalesce(input.successor, jobs.successor_account_id), \
               updated_at = now() \
             FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[]) \
               AS input (id, claim_seq, account_id, account_type, successor) \
             WHERE jobs.id = input.id AND jobs.state = 'running' AND jobs.claim_seq = input.claim_seq \
             RETURNING jobs.id",
        )
        .bind(&ids)
        .bind(&claims)
        .bind(&accounts)
        .bind(&types)
        .bind(&successors)
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().map(|id| recorded.contains(id)).collect())
    }

    async fn fail(&self, job: &Job, error: &str, detail: &str) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'failed', last_error = $3, finalized_at = now(), updated_at = now(), \
               lease_owner = NULL, lease_expires_at = NULL \
             WHERE id = $1 AND state = 'running' AND claim_seq = $2 RETURNING id",
        )
        .bind(job.id)
        .bind(job.claim_seq)
        .bind(truncate_detail(error))
        .fetch_optional(&mut *tx)
        .await?;
        if row.is_none() {
            return Ok(false);
        }
        insert_event(
            &mut tx,
            job.id,
            Some(JobState::Running),
            JobState::Failed,
            &worker_actor(job),
            detail,
        )
        .await?;
        cancel_dependents(&mut tx, &[job.id]).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn put_back(&self, job: &Job, back: PutBack<'_>) -> StoreResult<bool> {
        let row = sqlx::query(
            "WITH moved AS ( \
               UPDATE jobs SET state = 'pending', run_at = $3, \
                 attempts = CASE WHEN $4 THEN greatest(attempts - 1, 0) ELSE attempts END, \
                 last_error = coalesce($5, last_error), lease_owner = NULL, lease_expires_at = NULL, \
                 updated_at = now() \
               WHERE id = $1 AND state = 'running' AND claim_seq = $2 RETURNING id \
             ) \
             INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
             SELECT id, now(), 'running', 'pending', $6, $7 FROM moved RETURNING job_id",
        )
        .bind(job.id)
        .bind(job.claim_seq)
        .bind(back.run_at)
        .bind(back.refund_attempt)
        .bind(back.error.map(truncate_detail))
        .bind(worker_actor(job))
        .bind(truncate_detail(back.detail))
        .fetch_optional(&self.pool)
        .await?;
        if row.is_some() && back.run_at <= Utc::now() {
            self.wakeup.notify_one();
        }
        Ok(row.is_some())
    }

    async fn rescue_expired(&self) -> StoreResult<Vec<JobId>> {
        let mut tx = self.pool.begin().await?;
        use super::lease_rescue::{AFTER_OWNER, AGAIN, BEFORE_OWNER, EXHAUSTED};
        let rows = sqlx::query(
            "WITH expired AS ( \
               SELECT id, lease_owner FROM jobs WHERE state = 'running' AND lease_expires_at < now() \
               FOR UPDATE SKIP LOCKED \
             ), rescued AS ( \
               UPDATE jobs SET \
                 state = CASE WHEN attempts >= max_attempts THEN $1 ELSE $2 END, \
                 last_error = CASE WHEN attempts >= max_attempts THEN $3 ELSE $4 END, \
                 finalized_at = CASE WHEN attempts >= max_attempts THEN now() END, \
                 run_at = now(), lease_owner = NULL, lease_expires_at = NULL, updated_at = now() \
               FROM expired WHERE jobs.id = expired.id \
               RETURNING jobs.id, jobs.state, expired.lease_owner AS old_owner \
             ), events AS ( \
               INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
               SELECT id, now(), 'running', state, $7, \
                 $5 || coalesce(old_owner, '?') || $6 FROM rescued \
             ) SELECT id, state FROM rescued",
        )
        .bind(EXHAUSTED.0.as_str())
        .bind(AGAIN.0.as_str())
        .bind(EXHAUSTED.1)
        .bind(AGAIN.1)
        .bind(BEFORE_OWNER)
        .bind(AFTER_OWNER)
        .bind(SYSTEM_ACTOR)
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        let mut failed = Vec::new();
        for row in &rows {
            let id: JobId = row.try_get("id")?;
            if row.try_get::<&str, _>("state")? == EXHAUSTED.0.as_str() {
                failed.push(id);
            }
            ids.push(id);
        }
        if !failed.is_empty() {
            cancel_dependents(&mut tx, &failed).await?;
        }
        tx.commit().await?;
        if !ids.is_empty() {
            self.announce();
        }
        Ok(ids)
    }

    async fn pause(&self, reason: PauseReason) -> StoreResult<WorkerState> {
        let row = sqlx::query(
            "UPDATE worker_state SET paused = true, reason = coalesce(reason, $1), updated_at = now() \
             WHERE id = 1 RETURNING paused, reason, resumed_at",
        )
        .bind(reason.as_str())
        .fetch_one(&self.pool)
        .await?;
        worker_state_from_row(&row)
    }

    async fn resume(&self) -> StoreResult<WorkerState> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE worker_state SET paused = false, reason = NULL, resumed_at = now(), updated_at = now() \
             WHERE id = 1 RETURNING paused, reason, resumed_at",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        self.announce();
        worker_state_from_row(&row)
    }

    /// After a commit that may have made jobs due: wakes this process's worker at once and,
    /// through `NOTIFY`, those of every other replica shortly after.
    fn announce(&self) {
        self.wakeup.notify_one();
        self.notifier
            .get_or_init(|| Notifier::spawn(&self.pool.connect_options(), WAKEUP_CHANNEL))
            .announce();
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
        self.listener.get_or_init(|| self.spawn_listener());
        self.wakeup.clone()
    }
}
