//! Accepting deliveries on Postgres.
//!
//! Ingestion is bound by the database's CPU, and most of what a delivery costs there is per
//! statement and per commit, not per row. So deliveries of the common shape (accepted, no
//! cancellation, see `batchable`) that arrive together are gathered into one batch and
//! written by one set-based call, `offboard_accept_batch`, in one transaction. Each waits
//! for its batch to commit before it is answered, as before. Everything else, and every
//! delivery of a batch that hit a race, goes through `offboard_accept_delivery` alone.
//!
//! Both functions were written in `migrations/postgres/20261128000002_accept_in_one_call.sql`;
//! their current versions are in `20261207000001_target_in_live_key.sql`. They decide
//! nothing Rust decides: the actor, the states, each job's initial state and each job's
//! target (`NewStep::key_target`) are bound here, and they return the jobs a delivery names;
//! the answer is built here, with the job's one JSON shape, and stored before the
//! transaction commits.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};
use sqlx::{Acquire, Postgres, Row, Transaction};
use tokio::time::Instant;

use super::job_from_row;
use crate::batch::Batcher;
use crate::domain::{Job, JobId, NewCancel, NewChain};
use crate::store::model::*;
use crate::store::rows::{cancellable_state_names, job_columns, live_state_names};
use crate::store::{PREVIOUS_STEP_FAILED, SYSTEM_ACTOR, StoreError, StoreOptions, StoreResult};

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

/// Whether the batch path can take this delivery. The batch inserts all first steps, then
/// all second steps, and so on; one delivery asking twice for the same live job (action,
/// person and target) could then come out differently than rule by rule, so it goes alone.
pub(super) fn batchable(delivery: &NewDelivery) -> bool {
    match &delivery.content {
        DeliveryContent::Accepted {
            cancels,
            chains,
            undo,
            ..
        } => {
            let mut asked = HashSet::new();
            // The batch takes neither an undo nor an account recorded beforehand.
            cancels.is_empty()
                && undo.is_none()
                && chains.iter().all(|chain| {
                    chain.account_type.is_none()
                        && chain.steps.iter().all(|step| {
                            asked.insert((step.action, chain.email.as_str(), step.key_target()))
                        })
                })
        }
        DeliveryContent::Unmappable { .. } => false,
    }
}

/// Gathers deliveries into batches (`crate::batch`): whatever arrived while the previous
/// batch was being committed goes into the next. One writer makes bigger batches than
/// several overlapping ones, and measured faster: 4,500/s with two writers, 5,000/s with one.
pub(super) type AcceptBatcher = Batcher<NewDelivery, StoreResult<DeliveryReceipt>>;

pub(super) fn spawn_batcher(pool: PgPool, limits: Limits) -> AcceptBatcher {
    Batcher::spawn(MAX_BATCH, MAX_BATCH, move |batch| {
        let pool = pool.clone();
        async move { write_batch(&pool, limits.acquire_timeout, batch).await }
    })
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

/// Accepts a bulk request by `deadline`, as a batch of its own when it can go in one (one
/// set-based call), else alone.
pub(super) async fn accept_bulk(
    pool: &PgPool,
    limits: Limits,
    delivery: NewDelivery,
    deadline: Instant,
) -> StoreResult<DeliveryReceipt> {
    if !batchable(&delivery) {
        return accept_alone(pool, limits, &delivery, deadline).await;
    }
    match tokio::time::timeout_at(
        deadline,
        write_batch(pool, limits.acquire_timeout, vec![delivery]),
    )
    .await
    {
        Ok(mut answers) => answers.pop().expect("one answer per delivery"),
        Err(_) => Err(StoreError::Overdue { in_doubt: true }),
    }
}

/// Writes one batch; an answer per delivery, in order.
async fn write_batch(
    pool: &PgPool,
    acquire_timeout: Duration,
    batch: Vec<NewDelivery>,
) -> Vec<StoreResult<DeliveryReceipt>> {
    let mut conn = match connection(pool, acquire_timeout).await {
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
    // A copy of a delivery already in the batch is accepted after it, so it replays its answer:
    // the same id, or for an unsigned id the same body. A delivery that merely shares an id
    // goes after it too, which keeps (source, delivery_id) unique within the batch, as the
    // function joins on it.
    let mut ids = HashSet::new();
    let mut bodies = HashSet::new();
    let (members, copies): (Vec<usize>, Vec<usize>) = (0..batch.len()).partition(|&i| {
        let delivery = &batch[i];
        ids.insert((&delivery.source, &delivery.delivery_id))
            && (delivery.replay_since().is_none()
                || bodies.insert((&delivery.source, &delivery.body_sha256)))
    });
    let mut answers: Vec<Option<StoreResult<DeliveryReceipt>>> =
        batch.iter().map(|_| None).collect();
    let deliveries: Vec<&NewDelivery> = members.iter().map(|&i| &batch[i]).collect();
    let called = call_batch(&mut conn, &deliveries).await;
    // What follows takes connections of its own, and the pool may have only this one.
    drop(conn);
    match called {
        Ok(receipts) => {
            for (&i, receipt) in members.iter().zip(receipts) {
                answers[i] = Some(receipt);
            }
        }
        // The database answered but refused the batch (a race with a copy or a finishing
        // job, a deadlock with another writer): each delivery on its own sorts it out.
        Err(sqlx::Error::Database(e)) if !server_gave_up(e.as_ref()) => {
            if !matches!(e.code().as_deref(), Some("OBDUP" | "OBRTY")) {
                tracing::warn!(error = %e, deliveries = members.len(), "a delivery batch failed; accepting its deliveries one by one");
            }
            let mut alone = tokio::task::JoinSet::new();
            for &i in &members {
                let (pool, delivery) = (pool.clone(), batch[i].clone());
                alone.spawn(
                    async move { (i, accept_pooled(&pool, acquire_timeout, &delivery).await) },
                );
            }
            for (i, answer) in alone.join_all().await {
                answers[i] = Some(answer);
            }
        }
        // The connection failed, or the server is going away: the batch did not commit (or,
        // if the connection broke just after the commit, the sender's retry replays its
        // answer). A 503 either way, and no retry one by one, which would only wait for
        // connections that are not coming.
        Err(e) => {
            let message = e.to_string();
            for &i in &members {
                answers[i] = Some(Err(StoreError::Batch(message.clone())));
            }
        }
    }
    for &i in &copies {
        answers[i] = Some(accept_pooled(pool, acquire_timeout, &batch[i]).await);
    }
    answers
        .into_iter()
        .map(|a| a.expect("every delivery of the batch was answered"))
        .collect()
}

/// One call of `offboard_accept_batch` for these deliveries (each `batchable`, no two with
/// the same key); a receipt per delivery, in order.
async fn call_batch(
    conn: &mut PgConnection,
    deliveries: &[&NewDelivery],
) -> Result<Vec<StoreResult<DeliveryReceipt>>, sqlx::Error> {
    let n = deliveries.len();
    let mut d_source = Vec::with_capacity(n);
    let mut d_delivery_id = Vec::with_capacity(n);
    let mut d_received_at: Vec<DateTime<Utc>> = Vec::with_capacity(n);
    let mut d_body_sha256 = Vec::with_capacity(n);
    let mut d_key_body_sha256 = Vec::with_capacity(n);
    let mut d_replay_since: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(n);
    let mut d_approval_required = Vec::with_capacity(n);
    let mut d_actor = Vec::with_capacity(n);
    let mut j_delivery: Vec<i32> = Vec::new();
    let mut j_previous: Vec<Option<i32>> = Vec::new();
    let mut j_action = Vec::new();
    let mut j_params = Vec::new();
    let mut j_target = Vec::new();
    let mut j_state = Vec::new();
    let mut j_email = Vec::new();
    let mut j_account_id: Vec<Option<&str>> = Vec::new();
    let mut j_run_at: Vec<DateTime<Utc>> = Vec::new();
    let mut j_max_attempts = Vec::new();
    let mut j_rule = Vec::new();
    let mut j_detail = Vec::new();
    for (index, delivery) in deliveries.iter().enumerate() {
        let DeliveryContent::Accepted { chains, .. } = &delivery.content else {
            unreachable!("only batchable deliveries are batched");
        };
        d_source.push(delivery.source.as_str());
        d_delivery_id.push(delivery.delivery_id.as_str());
        d_received_at.push(delivery.received_at);
        d_body_sha256.push(delivery.body_sha256.as_str());
        d_key_body_sha256.push(delivery.key_body_sha256());
        d_replay_since.push(delivery.replay_since());
        d_approval_required.push(delivery.approval_required());
        d_actor.push(delivery.actor());
        for chain in chains {
            let mut previous = None;
            for step in &chain.steps {
                let this = position(j_action.len());
                j_delivery.push(position(index));
                j_previous.push(previous);
                previous = Some(this);
                j_action.push(step.action.as_str());
                j_params.push(step.params_json());
                j_target.push(step.key_target());
                j_state.push(chain.initial_state().as_str());
                j_email.push(chain.email.as_str());
                j_account_id.push(chain.account_id.as_deref());
                j_run_at.push(step.run_at);
                j_max_attempts.push(delivery.max_attempts);
                j_rule.push(chain.rule.as_str());
                j_detail.push(chain.creation_detail(delivery));
            }
        }
    }
    let mut tx = conn.begin().await?;
    let rows = sqlx::query(
        "SELECT k, duplicate, status, response, job_ids FROM offboard_accept_batch( \
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, \
         $21)",
    )
    .bind(&d_source)
    .bind(&d_delivery_id)
    .bind(&d_received_at)
    .bind(&d_body_sha256)
    .bind(&d_key_body_sha256)
    .bind(&d_replay_since)
    .bind(&d_approval_required)
    .bind(&d_actor)
    .bind(&j_delivery)
    .bind(&j_previous)
    .bind(&j_action)
    .bind(&j_params)
    .bind(&j_target)
    .bind(&j_state)
    .bind(&j_email)
    .bind(&j_account_id)
    .bind(&j_run_at)
    .bind(&j_max_attempts)
    .bind(&j_rule)
    .bind(&j_detail)
    .bind(live_state_names())
    .fetch_all(&mut *tx)
    .await?;
    let mut receipts: Vec<Option<StoreResult<DeliveryReceipt>>> = (0..n).map(|_| None).collect();
    let mut recorded: Vec<(usize, Vec<JobId>)> = Vec::new();
    for row in &rows {
        let k: i32 = row.try_get("k")?;
        let Some(index) = usize::try_from(k - 1).ok().filter(|&i| i < n) else {
            continue;
        };
        if row.try_get("duplicate")? {
            receipts[index] = Some(duplicate_receipt(
                row.try_get("status")?,
                row.try_get("response")?,
            ));
        } else {
            recorded.push((index, row.try_get("job_ids")?));
        }
    }
    let new: Vec<(&NewDelivery, Vec<JobId>, Vec<JobId>)> = recorded
        .iter()
        .map(|(index, ids)| (deliveries[*index], ids.clone(), Vec::new()))
        .collect();
    let answers = answer_and_store(&mut tx, &new).await.map_err(as_sqlx)?;
    // Committed, the answers may leave: no answer leaves before the batch is durable.
    tx.commit().await?;
    for ((index, _), body) in recorded.iter().zip(answers) {
        receipts[*index] = Some(Ok(DeliveryReceipt {
            duplicate: false,
            status: DeliveryStatus::Accepted,
            body,
        }));
    }
    Ok(receipts
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(StoreError::Corrupt(
                    "accepting a batch returned no answer for a delivery".into(),
                ))
            })
        })
        .collect())
}

/// A store error met while answering inside a batch's transaction, as the batch's error.
fn as_sqlx(error: StoreError) -> sqlx::Error {
    match error {
        StoreError::Database(e) | StoreError::Unavailable(e) => e,
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// Builds the answers of newly recorded deliveries, each from the jobs it names (in order)
/// and the jobs it cancelled, and stores them on their delivery rows, inside `tx`.
async fn answer_and_store(
    tx: &mut Transaction<'_, Postgres>,
    new: &[(&NewDelivery, Vec<JobId>, Vec<JobId>)],
) -> StoreResult<Vec<serde_json::Value>> {
    let ids: Vec<JobId> = new
        .iter()
        .flat_map(|(_, ids, _)| ids.iter().copied())
        .collect();
    let rows = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE id = ANY($1)"
    ))
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let mut jobs: HashMap<JobId, Job> = HashMap::with_capacity(rows.len());
    for row in &rows {
        let job = job_from_row(row)?;
        jobs.insert(job.id, job);
    }
    let mut answers = Vec::with_capacity(new.len());
    let (mut sources, mut delivery_ids, mut keys, mut responses) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (delivery, ids, cancelled) in new {
        let named: Vec<Job> = ids.iter().filter_map(|id| jobs.get(id).cloned()).collect();
        if named.len() != ids.len() {
            return Err(StoreError::Corrupt(
                "a job of the delivery could not be read back".into(),
            ));
        }
        let answer = delivery.answer(&named, cancelled);
        sources.push(delivery.source.as_str());
        delivery_ids.push(delivery.delivery_id.as_str());
        keys.push(delivery.key_body_sha256());
        responses.push(answer.to_string());
        answers.push(answer);
    }
    sqlx::query(
        "UPDATE deliveries SET response = u.response \
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
           AS u (source, delivery_id, key_body_sha256, response) \
         WHERE deliveries.source = u.source AND deliveries.delivery_id = u.delivery_id \
           AND deliveries.key_body_sha256 = u.key_body_sha256",
    )
    .bind(&sources)
    .bind(&delivery_ids)
    .bind(&keys)
    .bind(&responses)
    .execute(&mut **tx)
    .await?;
    Ok(answers)
}

/// The 1-based position SQL arrays use for this 0-based index (batches are small).
fn position(index: usize) -> i32 {
    i32::try_from(index + 1).unwrap_or(i32::MAX)
}

/// Whether an error the server sent means it cannot take writes now: it is shutting down or
/// refusing connections (SQLSTATE class 57, which includes a statement cancelled by
/// `statement_timeout`) or lost the connection (class 08).
fn server_gave_up(error: &dyn sqlx::error::DatabaseError) -> bool {
    error
        .code()
        .is_some_and(|code| code.starts_with("57") || code.starts_with("08"))
}

/// `accept_one` on a connection from the pool, waiting for one only as long as the
/// request path does.
async fn accept_pooled(
    pool: &PgPool,
    acquire_timeout: Duration,
    delivery: &NewDelivery,
) -> StoreResult<DeliveryReceipt> {
    accept_one(&mut *connection(pool, acquire_timeout).await?, delivery).await
}

/// Accepts one delivery with `offboard_accept_delivery`, whatever its shape.
async fn accept_one(
    conn: &mut PgConnection,
    delivery: &NewDelivery,
) -> StoreResult<DeliveryReceipt> {
    // A concurrent copy of this delivery that commits first makes the call roll back
    // (OBDUP); the next call replays that copy's answer.
    let mut attempt = 0;
    loop {
        attempt += 1;
        match accept_in_transaction(conn, delivery).await {
            Err(StoreError::Database(sqlx::Error::Database(e)))
                if e.code().as_deref() == Some("OBDUP") && attempt < 3 => {}
            other => return other,
        }
    }
}

/// One call of `offboard_accept_delivery`, and the answer stored, in one transaction. The
/// answer leaves only once the transaction committed.
async fn accept_in_transaction(
    conn: &mut PgConnection,
    delivery: &NewDelivery,
) -> StoreResult<DeliveryReceipt> {
    let mut tx = conn.begin().await?;
    // The undo is planned from the jobs this transaction sees, each person locked first, so
    // that a second rehire of the same person waits and then sees the first one's inverses.
    let emails = delivery.undo_emails();
    let planned;
    let delivery = if emails.is_empty() {
        delivery
    } else {
        planned = delivery.with_undo_planned(&lock_and_read_people(&mut tx, &emails).await?);
        &planned
    };
    let error = match &delivery.content {
        DeliveryContent::Unmappable { error } => Some(error.as_str()),
        DeliveryContent::Accepted { .. } => None,
    };
    let cancels = match &delivery.content {
        DeliveryContent::Unmappable { .. } => &[][..],
        DeliveryContent::Accepted { cancels, .. } => &cancels[..],
    };
    let chains: Vec<serde_json::Value> = delivery
        .content
        .all_chains()
        .map(|c| chain_json(c, delivery))
        .collect();
    let cancels: Vec<serde_json::Value> =
        cancels.iter().map(|c| cancel_json(c, delivery)).collect();
    let row = sqlx::query(
        "SELECT duplicate, status, response, job_ids, cancelled FROM offboard_accept_delivery( \
         $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
    )
    .bind(&delivery.source)
    .bind(&delivery.delivery_id)
    .bind(delivery.received_at)
    .bind(&delivery.body_sha256)
    .bind(delivery.key_body_sha256())
    .bind(delivery.replay_since())
    .bind(error)
    .bind(sqlx::types::Json(&chains))
    .bind(sqlx::types::Json(&cancels))
    .bind(delivery.approval_required())
    .bind(delivery.actor())
    .bind(live_state_names())
    .bind(cancellable_state_names())
    .bind(PREVIOUS_STEP_FAILED)
    .bind(SYSTEM_ACTOR)
    .fetch_one(&mut *tx)
    .await?;
    let status: &str = row.try_get("status")?;
    if row.try_get("duplicate")? {
        let receipt = duplicate_receipt(status, row.try_get("response")?);
        tx.commit().await?;
        return receipt;
    }
    let status: DeliveryStatus = parse_column(status)?;
    let new = [(delivery, row.try_get("job_ids")?, row.try_get("cancelled")?)];
    let body = answer_and_store(&mut tx, &new)
        .await?
        .pop()
        .expect("one answer per delivery");
    tx.commit().await?;
    Ok(DeliveryReceipt {
        duplicate: false,
        status,
        body,
    })
}

/// Locks each of these people for the rest of `tx` (in the order given, sorted by the
/// caller), then reads every job of theirs, locked too: a job the worker finishes meanwhile
/// finishes after this transaction, so what the undo was planned from is what it cancels or
/// gives back (the claim skips locked rows; a completion waits).
async fn lock_and_read_people(
    tx: &mut Transaction<'_, Postgres>,
    emails: &[&str],
) -> StoreResult<Vec<Job>> {
    for email in emails {
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('offboard person ' || $1, 0))")
            .bind(email)
            .execute(&mut **tx)
            .await?;
    }
    let rows = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE email = ANY($1) ORDER BY id FOR UPDATE"
    ))
    .bind(emails)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(job_from_row).collect()
}

/// One chain as `offboard_accept_delivery` takes it; details are decided (and truncated) here.
fn chain_json(chain: &NewChain, delivery: &NewDelivery) -> serde_json::Value {
    let steps: Vec<serde_json::Value> = chain
        .steps
        .iter()
        .map(|step| {
            serde_json::json!({
                "action": step.action.as_str(),
                "params": step.params,
                "target": step.key_target(),
                "run_at": step.run_at.to_rfc3339_opts(SecondsFormat::Micros, true),
            })
        })
        .collect();
    serde_json::json!({
        "email": chain.email.as_str(),
        "account_id": chain.account_id,
        "account_type": chain.account_type,
        "rule": chain.rule,
        "state": chain.initial_state().as_str(),
        "max_attempts": delivery.max_attempts,
        "detail": chain.creation_detail(delivery),
        "steps": steps,
    })
}

/// One cancellation as `offboard_accept_delivery` takes it.
fn cancel_json(cancel: &NewCancel, delivery: &NewDelivery) -> serde_json::Value {
    serde_json::json!({
        "email": cancel.email.as_str(),
        "last_error": cancel.last_error(),
        "detail": cancel.detail(delivery),
        "spare_param": crate::domain::undo::UNDOES,
    })
}
