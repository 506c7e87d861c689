//! Accepting deliveries on Postgres: the batches, the connections and the statements of
//! `../accept.rs` written for Postgres (arrays bound whole and `unnest`ed, rows held with
//! `FOR UPDATE`, advisory locks for what has no row yet).
//!
//! Most of what a delivery costs is per round trip and per commit, not per row. So
//! deliveries that arrive together are gathered into one batch; each waits for its batch to
//! commit before it is answered. A batch of new deliveries naming only new jobs is written in
//! one statement (`accept::all_new`, `write_fresh`); any other, or one that statement refused,
//! is recorded by the one algorithm in one transaction. A batch that raced another
//! transaction is recorded again one delivery at a time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeDelta, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Acquire, Postgres, Row, Transaction};
use tokio::sync::Mutex;
use tokio::time::Instant;

use super::job_from_row;
use crate::batch::Batcher;
use crate::domain::{Job, JobId};
use crate::store::accept::{
    self, Cancellable, DeliveryRow, EventRow, JobKey, JobRow, PersonRow, Writes,
};
use crate::store::model::*;
use crate::store::rows::{job_columns, live_states};
use crate::store::{StoreError, StoreOptions, StoreResult};

/// How long accepting a delivery may take (`StoreOptions::accept_deadline` and
/// `accept_acquire_timeout`).
#[derive(Clone, Copy, Debug)]
pub(super) struct Limits {
    pub deadline: Duration,
    pub acquire_timeout: Duration,
}

impl From<&StoreOptions> for Limits {
    fn from(options: &StoreOptions) -> Self {
        Limits {
            deadline: options.accept_deadline,
            acquire_timeout: options.accept_acquire_timeout,
        }
    }
}

/// A connection within `timeout`, else `Unavailable`: nothing was sent to the database.
/// The pool's own acquire timeout is longer, for the worker; a sender waiting for its
/// answer is better served by a fast 503 it retries.
async fn connection(pool: &PgPool, timeout: Duration) -> StoreResult<PoolConnection<Postgres>> {
    match tokio::time::timeout(timeout, pool.acquire()).await {
        Ok(connection) => Ok(connection?),
        Err(_) => Err(StoreError::Unavailable(sqlx::Error::PoolTimedOut)),
    }
}

/// The most deliveries in one batch.
const MAX_BATCH: usize = 64;

/// Gathers deliveries into batches (`crate::batch`): whatever arrived while the previous
/// batch was being committed goes into the next. One writer makes bigger batches than
/// several overlapping ones, and measured faster: 4,500/s with two writers, 5,000/s with one.
/// It has a thread of its own: every webhook waits on it, and as a task it waited behind
/// them to be polled after each statement (`ingest_bench`: 72-75% of the ceiling as a task,
/// 78-85% on its own thread, alternating in one sitting).
pub(super) type AcceptBatcher = Batcher<NewDelivery, StoreResult<DeliveryReceipt>>;

pub(super) fn spawn_batcher(pool: PgPool, limits: Limits) -> AcceptBatcher {
    let writer = Arc::new(Mutex::new(Writer::default()));
    Batcher::spawn_on_thread("offboard-accept", MAX_BATCH, MAX_BATCH, move |batch| {
        let (pool, writer) = (pool.clone(), writer.clone());
        async move {
            let mut writer = writer.lock().await;
            write_batch(&pool, &mut writer, limits.acquire_timeout, batch).await
        }
    })
}

/// What the batch writer keeps from one batch to the next.
#[derive(Default)]
struct Writer {
    ids: JobIds,
    /// The connection of the last batch, while batches follow each other: one connection
    /// keeps its prepared statements and their plans (a fresh connection plans each of the
    /// first five executions anew), and is not acquired from the pool every batch.
    held: Option<(PoolConnection<Postgres>, Instant)>,
}

/// How long the writer keeps its connection between batches; an idle writer gives it back
/// to the pool, which looks after idle connections.
const HOLD_CONNECTION: Duration = Duration::from_secs(1);

/// Job ids taken from the sequence ahead of the batches that number their jobs with them
/// (`accept::all_new`). A busy writer takes up to `TAKE_IDS` more than it needs, one round trip
/// for many batches; an idle one takes only what it needs, so that a quiet store's job ids
/// do not jump by hundreds.
#[derive(Default)]
struct JobIds {
    ids: VecDeque<JobId>,
    taken_at: Option<Instant>,
    /// How many more than needed the next take asks for.
    ahead: usize,
    /// The database's clock less this process's, as of the last take: the jobs and events
    /// of a batch written in one statement are timed by the database's clock, as those
    /// written in a transaction are (`now()`), though the time is chosen here.
    clock_offset: TimeDelta,
}

/// The most ids taken ahead.
const TAKE_IDS: usize = 256;

/// How long ids are kept. A job numbered with an id taken earlier sorts before the jobs
/// other writers created meanwhile, as one whose transaction ran that long would; kept
/// briefly, ids follow creation as closely as the sequence itself does.
const KEEP_IDS: Duration = Duration::from_millis(250);

impl JobIds {
    /// How many ids to take from the sequence, at `now`, before `n` can be handed out (what
    /// is missing, and what is taken ahead).
    fn shortfall(&mut self, n: usize, now: Instant) -> usize {
        if self
            .taken_at
            .is_none_or(|at| now.duration_since(at) > KEEP_IDS)
        {
            // Idle since the last take: what is left goes unused.
            self.ids.clear();
            self.ahead = 0;
        }
        if self.ids.len() >= n {
            return 0;
        }
        let take = n - self.ids.len() + self.ahead;
        self.ahead = (self.ahead * 2).max(n).min(TAKE_IDS);
        take
    }

    /// `n` ids, in ascending order, and the time now by the database's clock.
    async fn take(
        &mut self,
        conn: &mut PgConnection,
        n: usize,
    ) -> Result<(Vec<JobId>, DateTime<Utc>), sqlx::Error> {
        let now = Instant::now();
        let take = self.shortfall(n, now);
        if take > 0 {
            // One row, the ids in an array: a row each cost more to decode than to make. The
            // sequence is looked up once (an uncorrelated subquery), not for each id:
            // `pg_get_serial_sequence` reads the catalogue on every call.
            let (more, database_now): (Vec<JobId>, DateTime<Utc>) = sqlx::query_as(
                "SELECT array_agg(id ORDER BY id), clock_timestamp() FROM ( \
                     SELECT nextval((SELECT pg_get_serial_sequence('jobs', 'id'))::regclass) \
                     FROM generate_series(1, $1)) AS taken (id)",
            )
            .bind(take as i64)
            .fetch_one(&mut *conn)
            .await?;
            self.clock_offset = database_now - Utc::now();
            self.ids.extend(more);
            self.taken_at = Some(now);
        }
        Ok((
            self.ids.drain(..n).collect(),
            Utc::now() + self.clock_offset,
        ))
    }
}

/// Accepts one delivery that does not go into a batch, by `deadline`.
pub(super) async fn accept_alone(
    pool: &PgPool,
    limits: Limits,
    delivery: &NewDelivery,
    deadline: Instant,
) -> StoreResult<DeliveryReceipt> {
    let mut conn = connection(pool, limits.acquire_timeout).await?;
    match tokio::time::timeout_at(deadline, accept_one(&mut conn, delivery)).await {
        Ok(receipt) => receipt,
        Err(_) => {
            // Cut off mid-statement: the connection's state is unknown.
            conn.close_on_drop();
            Err(StoreError::Overdue { in_doubt: true })
        }
    }
}

/// Writes one batch; an answer per delivery, in order.
async fn write_batch(
    pool: &PgPool,
    writer: &mut Writer,
    acquire_timeout: Duration,
    batch: Vec<NewDelivery>,
) -> Vec<StoreResult<DeliveryReceipt>> {
    let held = writer
        .held
        .take()
        .filter(|(_, since)| since.elapsed() < HOLD_CONNECTION);
    let conn = match held {
        Some((conn, _)) => Ok(conn),
        None => connection(pool, acquire_timeout).await,
    };
    let mut conn = match conn {
        Ok(conn) => conn,
        // No database to talk to: nothing was accepted, each sender gets a 503 and retries.
        Err(e) => {
            let message = e.to_string();
            return batch
                .iter()
                .map(|_| Err(StoreError::Batch(message.clone())))
                .collect();
        }
    };
    let deliveries: Vec<&NewDelivery> = batch.iter().collect();
    let together = match as_fresh(&mut conn, &mut writer.ids, &deliveries).await {
        Ok(Some(receipts)) => Ok(receipts),
        Ok(None) => in_transaction(&mut conn, &deliveries).await,
        Err(e) => Err(e),
    };
    if together.is_ok() {
        writer.held = Some((conn, Instant::now()));
    } else {
        // What follows takes connections of its own, and the pool may have only this one;
        // and after an error the connection's state is not known.
        drop(conn);
    }
    match together {
        Ok(receipts) => receipts.into_iter().map(Ok).collect(),
        // The database answered but refused the batch (a race with a copy or a finishing
        // job, a deadlock with another writer): each delivery on its own sorts it out.
        Err(e) if retry_alone(&e) && (batch.len() > 1 || is_race(&e)) => {
            if !is_race(&e) {
                tracing::warn!(error = %e, deliveries = batch.len(), "a delivery batch failed; accepting its deliveries one by one");
            }
            let mut alone = tokio::task::JoinSet::new();
            let batch: Vec<NewDelivery> = batch;
            for (i, delivery) in batch.into_iter().enumerate() {
                let pool = pool.clone();
                alone.spawn(async move {
                    let answer = match connection(&pool, acquire_timeout).await {
                        Ok(mut conn) => accept_one(&mut conn, &delivery).await,
                        Err(e) => Err(e),
                    };
                    (i, answer)
                });
            }
            let mut answers = alone.join_all().await;
            answers.sort_by_key(|(i, _)| *i);
            answers.into_iter().map(|(_, answer)| answer).collect()
        }
        // The connection failed, or the server is going away: the batch did not commit (or,
        // if the connection broke just after the commit, the sender's retry replays its
        // answer). A 503 either way, and no retry one by one, which would only wait for
        // connections that are not coming.
        Err(e) => {
            let message = e.to_string();
            batch
                .iter()
                .map(|_| Err(StoreError::Batch(message.clone())))
                .collect()
        }
    }
}

/// Records the batch in one statement as new (`accept::all_new`) where it may be; `None`
/// where it may not, or where the statement found what the plan assumed absent (a copy of
/// a delivery, a live job of a key): `accept` then records it.
async fn as_fresh(
    conn: &mut PgConnection,
    ids: &mut JobIds,
    deliveries: &[&NewDelivery],
) -> StoreResult<Option<Vec<DeliveryReceipt>>> {
    let Some(batch) = accept::all_new(deliveries) else {
        return Ok(None);
    };
    let (ids, now) = ids.take(conn, batch.steps()).await?;
    let fresh = batch.numbered(&ids, now);
    match write_fresh(conn, &fresh).await {
        Ok(()) => Ok(Some(fresh.receipts)),
        Err(sqlx::Error::Database(e)) if !server_gave_up(e.as_ref()) => {
            tracing::debug!(code = ?e.code(), "a delivery batch is not all new; recording it in a transaction");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Writes a batch planned as new in one statement, which is one transaction: its jobs,
/// their creation events, the people, and the deliveries with their answers. It fails,
/// writing nothing, where a live job holds a job's key or a delivery's key is taken (the
/// unique indexes), and where any delivery of the source was recorded under the same id
/// (the `repeat` column: the dedupe lookup of a signed id matches a copy stored under any
/// key).
async fn write_fresh(
    conn: &mut PgConnection,
    fresh: &accept::Fresh<'_>,
) -> Result<(), sqlx::Error> {
    let job_ids: Vec<JobId> = fresh.jobs.iter().map(|(id, _)| *id).collect();
    let jobs = JobArrays::of(fresh.jobs.iter().map(|(_, row)| row));
    let events = &fresh.events;
    let event_jobs: Vec<JobId> = events.iter().map(|e| e.job_id).collect();
    let event_states: Vec<&str> = events.iter().map(|e| e.to.as_str()).collect();
    let actors: Vec<&str> = events.iter().map(|e| e.actor.as_str()).collect();
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();

    let people = PersonArrays::of(&fresh.people);
    let deliveries = DeliveryArrays::of(&fresh.deliveries);

    // Data-modifying CTEs all run, and the statement is one transaction: it commits whole
    // or not at all. A taken key fails it with a unique violation; a copy recorded under
    // another key fails it with the cast of `repeat`, which is evaluated (and fails) only
    // for a delivery that has such a copy. `repeat` is a scalar subquery ordered as the
    // dedupe key is: an index probe per delivery whatever the planner knows of the table.
    // (An EXISTS was planned on a new store as one hashed scan of every delivery per batch,
    // and the plan was kept for the life of the connection; without the order, a plan made
    // without statistics could walk every delivery of the source in `deliveries_source_body_idx`.)
    let query = sqlx::query(
        "WITH new_jobs AS ( \
             INSERT INTO jobs (id, action, params, target, state, email, account_id, \
             account_type, depends_on, run_at, max_attempts, source, rule, delivery_id, lane, \
             created_at, updated_at) \
             SELECT u.id, u.action, u.params, u.target, u.state, u.email, u.account_id, \
                 u.account_type, u.depends_on, u.run_at, u.max_attempts, u.source, u.rule, \
                 u.delivery_id, u.lane, $16, $16 \
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[], \
                 $6::text[], $7::text[], $8::text[], $9::int8[], $10::timestamptz[], \
                 $11::int4[], $12::text[], $13::text[], $14::text[], $15::text[]) \
                 WITH ORDINALITY AS u (id, action, params, target, state, email, account_id, \
                 account_type, depends_on, run_at, max_attempts, source, rule, delivery_id, \
                 lane, n) \
             ORDER BY u.n), \
         creation_events AS ( \
             INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
             SELECT u.job_id, $16, NULL, u.to_state, u.actor, u.detail \
             FROM unnest($17::int8[], $18::text[], $19::text[], $20::text[]) \
                 WITH ORDINALITY AS u (job_id, to_state, actor, detail, n) \
             ORDER BY u.n), \
         people_named AS ( \
             INSERT INTO people (email, first_seen, effective_at) \
             SELECT * FROM unnest($21::text[], $22::timestamptz[], $23::timestamptz[]) \
             ON CONFLICT (email) DO UPDATE SET \
                 first_seen = least(people.first_seen, excluded.first_seen), \
                 effective_at = least(people.effective_at, excluded.effective_at)), \
         new_deliveries AS ( \
             SELECT u.*, ( \
                     SELECT ('recorded before: ' || d.delivery_id)::int FROM deliveries d \
                     WHERE d.source = u.source AND d.delivery_id = u.delivery_id \
                     ORDER BY d.source, d.delivery_id, d.key_body_sha256 LIMIT 1) AS repeat \
             FROM unnest($24::text[], $25::text[], $26::timestamptz[], $27::text[], \
                 $28::text[], $29::text[], $30::text[], $31::text[], $32::text[], \
                 $33::text[]) AS u (source, delivery_id, received_at, body_sha256, \
                 key_body_sha256, status, error, job_ids, response, approval_required)) \
         INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, \
             key_body_sha256, status, error, job_ids, response, approval_required) \
         SELECT source, delivery_id, received_at, body_sha256, key_body_sha256, status, \
             error, job_ids, response, approval_required \
         FROM new_deliveries WHERE repeat IS NULL",
    )
    .bind(&job_ids);
    let query = jobs
        .bind(query)
        .bind(fresh.created_at)
        .bind(&event_jobs)
        .bind(&event_states)
        .bind(&actors)
        .bind(&details);
    deliveries
        .bind(people.bind(query))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Whether recording a batch's deliveries one by one may succeed where the batch failed.
fn retry_alone(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(e)) => !server_gave_up(e.as_ref()),
        other => is_race(other),
    }
}

fn is_race(error: &StoreError) -> bool {
    matches!(error, StoreError::Batch(message) if message == accept::RACE)
}

/// Accepts one delivery, recording it again if a concurrent copy raced it (the next try
/// replays that copy's answer).
async fn accept_one(
    conn: &mut PgConnection,
    delivery: &NewDelivery,
) -> StoreResult<DeliveryReceipt> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match in_transaction(conn, &[delivery]).await {
            Err(e) if is_race(&e) && attempt < 3 => {}
            other => return other.map(|mut r| r.pop().expect("one receipt per delivery")),
        }
    }
}

/// The one algorithm, in one transaction; the answers leave only once it committed.
async fn in_transaction(
    conn: &mut PgConnection,
    deliveries: &[&NewDelivery],
) -> StoreResult<Vec<DeliveryReceipt>> {
    let mut tx = conn.begin().await?;
    let receipts = accept::accept(&mut tx, deliveries).await?;
    tx.commit().await?;
    Ok(receipts)
}

/// Whether an error the server sent means it cannot take writes now: it is shutting down or
/// refusing connections (SQLSTATE class 57, which includes a statement cancelled by
/// `statement_timeout`) or lost the connection (class 08).
fn server_gave_up(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("57") || code.starts_with("08"))
}

#[async_trait]
impl Writes for Transaction<'_, Postgres> {
    async fn recorded(
        &mut self,
        deliveries: &[&NewDelivery],
    ) -> StoreResult<Vec<Option<(String, String)>>> {
        let n = deliveries.len();
        let sources: Vec<&str> = deliveries.iter().map(|d| d.source.as_str()).collect();
        let ids: Vec<&str> = deliveries.iter().map(|d| d.delivery_id.as_str()).collect();
        let bodies: Vec<&str> = deliveries.iter().map(|d| d.body_sha256.as_str()).collect();
        let keys: Vec<&str> = deliveries.iter().map(|d| d.key_body_sha256()).collect();
        let since: Vec<Option<DateTime<Utc>>> =
            deliveries.iter().map(|d| d.replay_since()).collect();
        // LATERAL with LIMIT 1: one index probe per delivery. The copies of an id are read
        // in the dedupe key's order, which only that index gives, before the oldest is taken:
        // ordered by id alone, a plan made without statistics walked every delivery of the
        // source backwards through `deliveries_source_id_idx`.
        let rows = sqlx::query(
            "SELECT i.k, d.status, d.response \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) \
                 WITH ORDINALITY AS i (source, delivery_id, body_sha256, key_body_sha256, since, k) \
             CROSS JOIN LATERAL ( \
                 SELECT m.status, m.response FROM ( \
                     (SELECT c.status, c.response, 1 AS rank FROM ( \
                          SELECT d.id, d.status, d.response FROM deliveries d \
                          WHERE d.source = i.source AND d.delivery_id = i.delivery_id \
                            AND (i.key_body_sha256 = '' OR d.body_sha256 = i.key_body_sha256) \
                          ORDER BY d.source, d.delivery_id, d.key_body_sha256) c \
                      ORDER BY c.id LIMIT 1) \
                     UNION ALL \
                     (SELECT d.status, d.response, 2 FROM deliveries d \
                      WHERE i.since IS NOT NULL AND d.source = i.source \
                        AND d.body_sha256 = i.body_sha256 AND d.received_at >= i.since \
                      ORDER BY d.received_at DESC, d.id DESC LIMIT 1) \
                 ) m ORDER BY m.rank LIMIT 1 \
             ) d",
        )
        .bind(&sources)
        .bind(&ids)
        .bind(&bodies)
        .bind(&keys)
        .bind(&since)
        .fetch_all(&mut **self)
        .await?;
        let mut found = vec![None; n];
        for row in &rows {
            let k: i64 = row.try_get("k")?;
            if let Some(slot) = usize::try_from(k - 1).ok().and_then(|i| found.get_mut(i)) {
                *slot = Some((row.try_get("status")?, row.try_get("response")?));
            }
        }
        Ok(found)
    }

    async fn lock_bodies(&mut self, bodies: &[(&str, &str)]) -> StoreResult<()> {
        let (sources, hashes): (Vec<&str>, Vec<&str>) = bodies.iter().copied().unzip();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(offboard_body_lock(s, b)) \
             FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u (s, b, n) ORDER BY n",
        )
        .bind(&sources)
        .bind(&hashes)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn lock_people(&mut self, emails: &[&str]) -> StoreResult<Vec<Job>> {
        sqlx::query(
            "SELECT pg_advisory_xact_lock(hashtextextended('offboard person ' || e, 0)) \
             FROM unnest($1::text[]) WITH ORDINALITY AS u (e, n) ORDER BY n",
        )
        .bind(emails)
        .execute(&mut **self)
        .await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE email = ANY($1) ORDER BY id FOR UPDATE"
        ))
        .bind(emails)
        .fetch_all(&mut **self)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn cancellable(&mut self, of: Cancellable<'_>) -> StoreResult<Vec<(JobId, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, state FROM jobs WHERE email = $1 AND state = ANY($2) \
             AND NOT (params::jsonb ? $3) ORDER BY id FOR UPDATE",
        )
        .bind(of.email)
        .bind(of.states)
        .bind(of.spare_param)
        .fetch_all(&mut **self)
        .await?)
    }

    async fn children_of(&mut self, ids: &[JobId]) -> StoreResult<Vec<(JobId, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, state FROM jobs WHERE depends_on = ANY($1) ORDER BY id FOR UPDATE",
        )
        .bind(ids)
        .fetch_all(&mut **self)
        .await?)
    }

    async fn set_cancelled(&mut self, ids: &[JobId], last_error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', last_error = $2, finalized_at = now(), \
             updated_at = now() WHERE id = ANY($1)",
        )
        .bind(ids)
        .bind(last_error)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn insert_jobs(&mut self, rows: &[JobRow<'_>]) -> StoreResult<Vec<Job>> {
        let jobs = JobArrays::of(rows.iter());
        // The arbiter repeats the predicate of the unique index on the live key; the rows
        // arrive in key order, so that concurrent batches lock alike.
        let query = sqlx::query(concat!(
            "INSERT INTO jobs (action, params, target, state, email, account_id, account_type, \
             depends_on, run_at, max_attempts, source, rule, delivery_id, lane, created_at, \
             updated_at) \
             SELECT u.action, u.params, u.target, u.state, u.email, u.account_id, u.account_type, \
                 u.depends_on, u.run_at, u.max_attempts, u.source, u.rule, u.delivery_id, u.lane, \
                 now(), now() \
             FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
                 $7::text[], $8::int8[], $9::timestamptz[], $10::int4[], $11::text[], $12::text[], \
                 $13::text[], $14::text[]) WITH ORDINALITY AS u (action, params, target, state, email, \
                 account_id, account_type, depends_on, run_at, max_attempts, source, rule, \
                 delivery_id, lane, n) \
             ORDER BY u.n \
             ON CONFLICT (action, email, target) WHERE state IN (",
            live_states!(),
            ") DO NOTHING RETURNING ",
            job_columns!()
        ));
        let rows = jobs.bind(query).fetch_all(&mut **self).await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn live_jobs(&mut self, keys: &[JobKey<'_>], live: &[&str]) -> StoreResult<Vec<Job>> {
        let actions: Vec<&str> = keys.iter().map(|k| k.action.as_str()).collect();
        let emails: Vec<&str> = keys.iter().map(|k| k.email).collect();
        let targets: Vec<&str> = keys.iter().map(|k| k.target.as_str()).collect();
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE (action, email, target) IN ( \
               SELECT * FROM unnest($1::text[], $2::text[], $3::text[])) \
             AND state = ANY($4)"
        ))
        .bind(&actions)
        .bind(&emails)
        .bind(&targets)
        .bind(live)
        .fetch_all(&mut **self)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn insert_events(&mut self, events: &[EventRow<'_>]) -> StoreResult<()> {
        let ids: Vec<JobId> = events.iter().map(|e| e.job_id).collect();
        let from: Vec<Option<&str>> = events.iter().map(|e| e.from.map(|s| s.as_str())).collect();
        let to: Vec<&str> = events.iter().map(|e| e.to.as_str()).collect();
        let actors: Vec<&str> = events.iter().map(|e| e.actor).collect();
        let details: Vec<&str> = events.iter().map(|e| e.detail).collect();
        sqlx::query(
            "INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
             SELECT u.job_id, now(), u.from_state, u.to_state, u.actor, u.detail \
             FROM unnest($1::int8[], $2::text[], $3::text[], $4::text[], $5::text[]) \
                 WITH ORDINALITY AS u (job_id, from_state, to_state, actor, detail, n) \
             ORDER BY u.n",
        )
        .bind(&ids)
        .bind(&from)
        .bind(&to)
        .bind(&actors)
        .bind(&details)
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn insert_deliveries(
        &mut self,
        rows: &[DeliveryRow<'_>],
        people: &[PersonRow<'_>],
    ) -> StoreResult<u64> {
        let deliveries = DeliveryArrays::of(rows);
        let people = PersonArrays::of(people);
        // The people ride along in a data-modifying CTE: one round trip fewer per batch,
        // where round trips are what a batch costs. The count is the deliveries'.
        let query = sqlx::query(
            "WITH people_named AS ( \
                 INSERT INTO people (email, first_seen, effective_at) \
                 SELECT * FROM unnest($11::text[], $12::timestamptz[], $13::timestamptz[]) \
                 ON CONFLICT (email) DO UPDATE SET \
                     first_seen = least(people.first_seen, excluded.first_seen), \
                     effective_at = least(people.effective_at, excluded.effective_at)) \
             INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, \
             key_body_sha256, status, error, job_ids, response, approval_required) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], \
             $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[]) \
             ON CONFLICT (source, delivery_id, key_body_sha256) DO NOTHING",
        );
        let inserted = people
            .bind(deliveries.bind(query))
            .execute(&mut **self)
            .await?;
        Ok(inserted.rows_affected())
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Job rows as the arrays the statements `unnest`, bound in this order: action, params,
/// target, state, email, account_id, account_type, depends_on, run_at, max_attempts, source,
/// rule, delivery_id, lane.
struct JobArrays<'r> {
    action: Vec<&'r str>,
    params: Vec<&'r str>,
    target: Vec<&'r str>,
    state: Vec<&'r str>,
    email: Vec<&'r str>,
    account_id: Vec<Option<&'r str>>,
    account_type: Vec<Option<&'r str>>,
    depends_on: Vec<Option<JobId>>,
    run_at: Vec<DateTime<Utc>>,
    max_attempts: Vec<i32>,
    source: Vec<&'r str>,
    rule: Vec<&'r str>,
    delivery_id: Vec<&'r str>,
    lane: Vec<&'r str>,
}

impl<'r> JobArrays<'r> {
    fn of<'a: 'r>(rows: impl Iterator<Item = &'r JobRow<'a>> + Clone) -> Self {
        let column = |f: fn(&'r JobRow<'a>) -> &'r str| rows.clone().map(f).collect();
        JobArrays {
            action: column(|r| r.action.as_str()),
            params: column(|r| r.params.as_str()),
            target: column(|r| r.target.as_str()),
            state: column(|r| r.state.as_str()),
            email: column(|r| r.email),
            account_id: rows.clone().map(|r| r.account_id).collect(),
            account_type: rows.clone().map(|r| r.account_type).collect(),
            depends_on: rows.clone().map(|r| r.depends_on).collect(),
            run_at: rows.clone().map(|r| r.run_at).collect(),
            max_attempts: rows.clone().map(|r| r.max_attempts).collect(),
            source: column(|r| r.source),
            rule: column(|r| r.rule),
            delivery_id: column(|r| r.delivery_id),
            lane: column(|r| r.lane.as_str()),
        }
    }

    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.action)
            .bind(&self.params)
            .bind(&self.target)
            .bind(&self.state)
            .bind(&self.email)
            .bind(&self.account_id)
            .bind(&self.account_type)
            .bind(&self.depends_on)
            .bind(&self.run_at)
            .bind(&self.max_attempts)
            .bind(&self.source)
            .bind(&self.rule)
            .bind(&self.delivery_id)
            .bind(&self.lane)
    }
}

/// Delivery rows as arrays, bound in this order: source, delivery_id, received_at,
/// body_sha256, key_body_sha256, status, error, job_ids, response, approval_required.
struct DeliveryArrays<'r> {
    source: Vec<&'r str>,
    delivery_id: Vec<&'r str>,
    received_at: Vec<DateTime<Utc>>,
    body_sha256: Vec<&'r str>,
    key_body_sha256: Vec<&'r str>,
    status: Vec<&'r str>,
    error: Vec<Option<&'r str>>,
    job_ids: Vec<&'r str>,
    response: Vec<&'r str>,
    approval_required: Vec<Option<&'r str>>,
}

impl<'r> DeliveryArrays<'r> {
    fn of(rows: &'r [DeliveryRow<'_>]) -> Self {
        DeliveryArrays {
            source: rows.iter().map(|r| r.delivery.source.as_str()).collect(),
            delivery_id: rows
                .iter()
                .map(|r| r.delivery.delivery_id.as_str())
                .collect(),
            received_at: rows.iter().map(|r| r.delivery.received_at).collect(),
            body_sha256: rows
                .iter()
                .map(|r| r.delivery.body_sha256.as_str())
                .collect(),
            key_body_sha256: rows.iter().map(|r| r.delivery.key_body_sha256()).collect(),
            status: rows.iter().map(|r| r.status.as_str()).collect(),
            error: rows.iter().map(|r| r.error).collect(),
            job_ids: rows.iter().map(|r| r.job_ids.as_str()).collect(),
            response: rows.iter().map(|r| r.response.as_str()).collect(),
            approval_required: rows
                .iter()
                .map(|r| r.delivery.approval_required())
                .collect(),
        }
    }

    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.source)
            .bind(&self.delivery_id)
            .bind(&self.received_at)
            .bind(&self.body_sha256)
            .bind(&self.key_body_sha256)
            .bind(&self.status)
            .bind(&self.error)
            .bind(&self.job_ids)
            .bind(&self.response)
            .bind(&self.approval_required)
    }
}

/// People as arrays, bound in this order: email, first_seen, effective_at.
struct PersonArrays<'r> {
    email: Vec<&'r str>,
    first_seen: Vec<DateTime<Utc>>,
    effective_at: Vec<DateTime<Utc>>,
}

impl<'r> PersonArrays<'r> {
    fn of(people: &'r [PersonRow<'_>]) -> Self {
        PersonArrays {
            email: people.iter().map(|p| p.email).collect(),
            first_seen: people.iter().map(|p| p.first_seen).collect(),
            effective_at: people.iter().map(|p| p.effective_at).collect(),
        }
    }

    fn bind<'q>(&'q self, query: Query<'q>) -> Query<'q> {
        query
            .bind(&self.email)
            .bind(&self.first_seen)
            .bind(&self.effective_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_writer_takes_only_the_ids_it_needs() {
        let mut taken = JobIds::default();
        let start = Instant::now();
        assert_eq!(taken.shortfall(3, start), 3);
        taken.taken_at = Some(start);
        // A second later: idle, exactly what is needed again.
        assert_eq!(taken.shortfall(2, start + Duration::from_secs(1)), 2);
    }

    #[test]
    fn a_busy_writer_takes_ever_more_ahead_up_to_the_limit() {
        let mut taken = JobIds::default();
        let mut now = Instant::now();
        let mut takes = Vec::new();
        let mut next = 1;
        for _ in 0..40 {
            let take = taken.shortfall(16, now);
            if take > 0 {
                taken.ids.extend((next..next + take as i64).map(JobId));
                next += take as i64;
                taken.taken_at = Some(now);
                takes.push(take);
            }
            let batch: Vec<JobId> = taken.ids.drain(..16).collect();
            assert!(batch.windows(2).all(|w| w[0] < w[1]), "{batch:?}");
            now += Duration::from_millis(2);
        }
        assert_eq!(takes[0], 16);
        assert!(takes.iter().all(|&t| t <= 16 + TAKE_IDS), "{takes:?}");
        assert!(takes.len() < 10, "one take serves many batches: {takes:?}");
        // Left unused past `KEEP_IDS`: discarded, and the next take is exact again.
        assert_eq!(taken.shortfall(16, now + KEEP_IDS * 2), 16);
        assert!(taken.ids.is_empty());
    }
}
