//! Recording a delivery on SQLite: the duplicate check, its cancellations, its chains (or
//! the live jobs they resolve to) and the delivery with its answer, in the writer's
//! transaction; deliveries that arrive together share one transaction (`crate::batch`).

use std::collections::HashSet;

use sqlx::Row;
use sqlx::sqlite::{SqlitePool, SqliteRow};

use super::{Tx, cancel_dependents, cancel_jobs, insert_event, job_from_row, micros, now_micros};
use crate::batch::Batcher;
use crate::domain::{Job, JobId, NewCancel, NewChain, NewStep};
use crate::store::model::*;
use crate::store::rows::{cancellable_states, job_columns, live_states};
use crate::store::{StoreError, StoreResult};

async fn cancel_for_email(
    tx: &mut Tx,
    cancel: &NewCancel,
    delivery: &NewDelivery,
    now: i64,
) -> StoreResult<Vec<JobId>> {
    let targets: Vec<(JobId, String)> = sqlx::query_as(concat!(
        "SELECT id, state FROM jobs WHERE email = ?1 AND state IN (",
        cancellable_states!(),
        ") AND json_type(params, ?2) IS NULL ORDER BY id"
    ))
    .bind(cancel.email.as_str())
    // An undo's inverse jobs are never cancelled by a cancel rule.
    .bind(format!("$.{}", crate::domain::undo::UNDOES))
    .fetch_all(&mut **tx)
    .await?;
    cancel_jobs(
        tx,
        &targets,
        &cancel.last_error(),
        &delivery.actor(),
        &cancel.detail(delivery),
        now,
    )
    .await?;
    let mut ids: Vec<JobId> = targets.iter().map(|(id, _)| *id).collect();
    let dependents = cancel_dependents(tx, &ids).await?;
    ids.extend(dependents);
    Ok(ids)
}

/// The step's new job, or the live job of its (action, email, target) that blocked it.
async fn insert_or_existing_job(
    tx: &mut Tx,
    delivery: &NewDelivery,
    chain: &NewChain,
    step: &NewStep,
    depends_on: Option<JobId>,
    now: i64,
) -> StoreResult<Job> {
    let state = chain.initial_state();
    let target = step.key_target();
    // The immediate transaction holds the write lock, so the live job cannot change between
    // the conflict and the lookup.
    let inserted = sqlx::query(concat!(
        "INSERT INTO jobs (action, params, state, email, account_id, depends_on, run_at, max_attempts, ",
        "source, rule, delivery_id, created_at, updated_at, account_type, target) ",
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, ?13, ?14) ",
        "ON CONFLICT DO NOTHING RETURNING ",
        job_columns!()
    ))
    .bind(step.action.as_str())
    .bind(step.params_json())
    .bind(state.as_str())
    .bind(chain.email.as_str())
    .bind(&chain.account_id)
    .bind(depends_on)
    .bind(micros(step.run_at))
    .bind(delivery.max_attempts)
    .bind(&delivery.source)
    .bind(&chain.rule)
    .bind(&delivery.delivery_id)
    .bind(now)
    .bind(&chain.account_type)
    .bind(&target)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(row) = inserted {
        let job = job_from_row(&row)?;
        insert_event(
            tx,
            job.id,
            None,
            state,
            &delivery.actor(),
            &chain.creation_detail(delivery),
        )
        .await?;
        return Ok(job);
    }
    let row = sqlx::query(concat!(
        "SELECT ",
        job_columns!(),
        " FROM jobs WHERE action = ?1 AND email = ?2 AND target = ?3 ",
        "AND state IN (",
        live_states!(),
        ")"
    ))
    .bind(step.action.as_str())
    .bind(chain.email.as_str())
    .bind(&target)
    .fetch_one(&mut **tx)
    .await?;
    job_from_row(&row)
}

/// The most deliveries recorded in one transaction.
const MAX_BATCH: usize = 64;

/// SQLite has one writer at a time and pays a synced commit per transaction, so deliveries
/// that arrive together are recorded in one `BEGIN IMMEDIATE` transaction, each exactly as
/// it would be alone (a later one sees the earlier ones, so copies and shared people come
/// out the same).
pub(super) fn spawn_batcher(
    pool: SqlitePool,
) -> Batcher<NewDelivery, StoreResult<DeliveryReceipt>> {
    Batcher::spawn(MAX_BATCH, MAX_BATCH, move |batch: Vec<NewDelivery>| {
        let pool = pool.clone();
        async move {
            match accept_together(&pool, &batch).await {
                Ok(receipts) => receipts.into_iter().map(Ok).collect(),
                // One delivery the store refused fails only itself: the others are recorded
                // alone. (Not when the transaction could not start or commit: then nothing
                // was recorded and another try would wait as long again.)
                Err(Together::Within(e)) if batch.len() > 1 => {
                    tracing::warn!(error = %e, deliveries = batch.len(), "a delivery batch failed; recording its deliveries one by one");
                    let mut receipts = Vec::with_capacity(batch.len());
                    for delivery in &batch {
                        let alone = accept_together(&pool, std::slice::from_ref(delivery)).await;
                        receipts.push(match alone {
                            Ok(mut one) => Ok(one.pop().expect("one receipt per delivery")),
                            Err(Together::Within(e) | Together::Transaction(e)) => Err(e),
                        });
                    }
                    receipts
                }
                Err(Together::Within(e) | Together::Transaction(e)) => {
                    let message = e.to_string();
                    batch
                        .iter()
                        .map(|_| Err(StoreError::Batch(message.clone())))
                        .collect()
                }
            }
        }
    })
}

/// Why recording deliveries together failed.
enum Together {
    /// Beginning or committing the transaction: nothing was recorded.
    Transaction(StoreError),
    /// Recording one of the deliveries.
    Within(StoreError),
}

/// Records these deliveries in one transaction; a receipt for each, in order.
async fn accept_together(
    pool: &SqlitePool,
    deliveries: &[NewDelivery],
) -> Result<Vec<DeliveryReceipt>, Together> {
    let transaction = |e: sqlx::Error| Together::Transaction(e.into());
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(transaction)?;
    let now = now_micros();
    let mut receipts = Vec::with_capacity(deliveries.len());
    for delivery in deliveries {
        receipts.push(
            accept_in(&mut tx, delivery, now)
                .await
                .map_err(Together::Within)?,
        );
    }
    tx.commit().await.map_err(transaction)?;
    Ok(receipts)
}

/// The delivery as recorded before, if it is a repeat (`Dedupe`): the same key, else, for
/// an unsigned id, the newest copy of its body within the replay window. The immediate
/// transaction holds the write lock, so no copy can be recorded between this and the insert.
pub(super) async fn recorded_before(
    tx: &mut Tx,
    delivery: &NewDelivery,
) -> StoreResult<Option<SqliteRow>> {
    let same_key = sqlx::query(
        "SELECT status, response FROM deliveries WHERE source = ?1 AND delivery_id = ?2 \
         AND (?3 = '' OR body_sha256 = ?3) ORDER BY id LIMIT 1",
    )
    .bind(&delivery.source)
    .bind(&delivery.delivery_id)
    .bind(delivery.key_body_sha256())
    .fetch_optional(&mut **tx)
    .await?;
    let Some(since) = delivery.replay_since().filter(|_| same_key.is_none()) else {
        return Ok(same_key);
    };
    Ok(sqlx::query(
        "SELECT status, response FROM deliveries WHERE source = ?1 AND body_sha256 = ?2 \
         AND received_at >= ?3 ORDER BY received_at DESC, id DESC LIMIT 1",
    )
    .bind(&delivery.source)
    .bind(&delivery.body_sha256)
    .bind(micros(since))
    .fetch_optional(&mut **tx)
    .await?)
}

/// Every job of these people, as `tx` sees them.
async fn jobs_of(tx: &mut Tx, emails: &[&str]) -> StoreResult<Vec<Job>> {
    let mut jobs = Vec::new();
    for email in emails {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE email = ?1"
        ))
        .bind(email)
        .fetch_all(&mut **tx)
        .await?;
        for row in &rows {
            jobs.push(job_from_row(row)?);
        }
    }
    Ok(jobs)
}

/// Records one delivery and its jobs inside `tx`, or finds it already recorded.
async fn accept_in(tx: &mut Tx, delivery: &NewDelivery, now: i64) -> StoreResult<DeliveryReceipt> {
    if let Some(row) = recorded_before(tx, delivery).await? {
        return duplicate_receipt(row.try_get("status")?, row.try_get("response")?);
    }
    // The undo is planned from the jobs this transaction sees: it holds the write lock, so
    // no other delivery's inverses can be recorded between the read and the writes.
    let emails = delivery.undo_emails();
    let planned;
    let delivery = if emails.is_empty() {
        delivery
    } else {
        planned = delivery.with_undo_planned(&jobs_of(tx, &emails).await?);
        &planned
    };
    let (status, error, body, job_ids) = match &delivery.content {
        DeliveryContent::Unmappable { error } => (
            DeliveryStatus::Unmappable,
            Some(error.as_str()),
            unmappable_body(error),
            Vec::new(),
        ),
        DeliveryContent::Accepted { cancels, .. } => {
            let mut cancelled = Vec::new();
            for cancel in cancels {
                cancelled.extend(cancel_for_email(tx, cancel, delivery, now).await?);
            }
            let mut jobs = NamedJobs::default();
            for chain in delivery.content.all_chains() {
                record_chain(tx, delivery, chain, now, &mut jobs).await?;
            }
            let jobs = jobs.list;
            let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
            let body = delivery.answer(&jobs, &cancelled);
            (DeliveryStatus::Accepted, None, body, ids)
        }
    };
    insert_delivery(tx, delivery, status, error, &job_ids, &body).await?;
    Ok(DeliveryReceipt {
        duplicate: false,
        status,
        body,
    })
}

/// The jobs a delivery names, each once, in the order first named.
#[derive(Default)]
pub(super) struct NamedJobs {
    pub list: Vec<Job>,
    seen: HashSet<JobId>,
}

/// Records one chain's steps (or finds the live jobs they resolve to) inside `tx`.
pub(super) async fn record_chain(
    tx: &mut Tx,
    delivery: &NewDelivery,
    chain: &NewChain,
    now: i64,
    jobs: &mut NamedJobs,
) -> StoreResult<()> {
    let mut previous = None;
    for step in &chain.steps {
        let job = insert_or_existing_job(tx, delivery, chain, step, previous, now).await?;
        previous = Some(job.id);
        if jobs.seen.insert(job.id) {
            jobs.list.push(job);
        }
    }
    Ok(())
}

/// The delivery's own row, with its answer.
pub(super) async fn insert_delivery(
    tx: &mut Tx,
    delivery: &NewDelivery,
    status: DeliveryStatus,
    error: Option<&str>,
    job_ids: &[String],
    body: &serde_json::Value,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256, \
         status, error, job_ids, response, approval_required) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )
    .bind(&delivery.source)
    .bind(&delivery.delivery_id)
    .bind(micros(delivery.received_at))
    .bind(&delivery.body_sha256)
    .bind(delivery.key_body_sha256())
    .bind(status.as_str())
    .bind(error)
    .bind(serde_json::to_string(job_ids).unwrap_or_else(|_| "[]".into()))
    .bind(body.to_string())
    .bind(delivery.approval_required())
    .execute(&mut **tx)
    .await?;
    Ok(())
}
