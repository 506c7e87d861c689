//! Accepting deliveries on SQLite: the writer that gathers them, and the statements of
//! `../accept.rs` written for SQLite (rows bound as one JSON array and read with `json_each`,
//! but deliveries a row at a time; nothing to lock, since the immediate transaction holds the
//! database's write lock).

use async_trait::async_trait;
use serde_json::json;
use sqlx::sqlite::SqlitePool;
use sqlx::{Row, Sqlite, Transaction};

use super::{job_from_row, micros, now_micros};
use crate::batch::Batcher;
use crate::domain::{Job, JobId};
use crate::store::accept::{
    self, Cancellable, DeliveryRow, EventRow, JobKey, JobRow, PersonRow, Writes,
};
use crate::store::model::*;
use crate::store::rows::job_columns;
use crate::store::{StoreError, StoreResult};

/// The most deliveries recorded in one transaction.
const MAX_BATCH: usize = 64;

/// SQLite has one writer at a time and pays a synced commit per transaction, so deliveries
/// that arrive together are recorded in one `BEGIN IMMEDIATE` transaction.
pub(super) fn spawn_batcher(
    pool: SqlitePool,
) -> Batcher<NewDelivery, StoreResult<DeliveryReceipt>> {
    Batcher::spawn(MAX_BATCH, MAX_BATCH, move |batch: Vec<NewDelivery>| {
        let pool = pool.clone();
        async move {
            let deliveries: Vec<&NewDelivery> = batch.iter().collect();
            match accept_together(&pool, &deliveries).await {
                Ok(receipts) => receipts.into_iter().map(Ok).collect(),
                // One delivery the store refused fails only itself: the others are recorded
                // alone. (Not when the transaction could not start or commit: then nothing
                // was recorded and another try would wait as long again.)
                Err(Together::Within(e)) if batch.len() > 1 => {
                    tracing::warn!(error = %e, deliveries = batch.len(), "a delivery batch failed; recording its deliveries one by one");
                    let mut receipts = Vec::with_capacity(batch.len());
                    for delivery in &deliveries {
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
    deliveries: &[&NewDelivery],
) -> Result<Vec<DeliveryReceipt>, Together> {
    let transaction = |e: sqlx::Error| Together::Transaction(e.into());
    let mut tx = pool
        .begin_with("BEGIN IMMEDIATE")
        .await
        .map_err(transaction)?;
    let receipts = accept::accept(&mut tx, deliveries)
        .await
        .map_err(Together::Within)?;
    tx.commit().await.map_err(transaction)?;
    Ok(receipts)
}

/// Rows as one JSON array, for `json_each`.
fn rows_json(rows: impl Iterator<Item = serde_json::Value>) -> String {
    serde_json::Value::Array(rows.collect()).to_string()
}

#[async_trait]
impl Writes for Transaction<'_, Sqlite> {
    async fn recorded(
        &mut self,
        deliveries: &[&NewDelivery],
    ) -> StoreResult<Vec<Option<(String, String)>>> {
        let mut found = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let same_key = sqlx::query(
                // `id + 0`: ordered by `id`, SQLite would walk the source's deliveries in id
                // order instead of looking the key up in its unique index.
                "SELECT status, response FROM deliveries WHERE source = ?1 AND delivery_id = ?2 \
                 AND (?3 = '' OR body_sha256 = ?3) ORDER BY id + 0 LIMIT 1",
            )
            .bind(&delivery.source)
            .bind(&delivery.delivery_id)
            .bind(delivery.key_body_sha256())
            .fetch_optional(&mut **self)
            .await?;
            let row = match (same_key, delivery.replay_since()) {
                (Some(row), _) => Some(row),
                (None, None) => None,
                (None, Some(since)) => {
                    sqlx::query(
                        "SELECT status, response FROM deliveries WHERE source = ?1 \
                         AND body_sha256 = ?2 AND received_at >= ?3 \
                         ORDER BY received_at DESC, id DESC LIMIT 1",
                    )
                    .bind(&delivery.source)
                    .bind(&delivery.body_sha256)
                    .bind(micros(since))
                    .fetch_optional(&mut **self)
                    .await?
                }
            };
            found.push(match row {
                Some(row) => Some((row.try_get("status")?, row.try_get("response")?)),
                None => None,
            });
        }
        Ok(found)
    }

    // Beside `recorded`, out of the trait's order: on SQLite both go a delivery at a time.
    async fn insert_deliveries(
        &mut self,
        rows: &[DeliveryRow<'_>],
        people: &[PersonRow<'_>],
    ) -> StoreResult<u64> {
        // In-process: a second statement costs no round trip.
        if !people.is_empty() {
            record_people(self, people).await?;
        }
        // A row at a time, its answer bound as it is: a bulk request's answer names every
        // job (megabytes), and written into one JSON array it would be escaped, then parsed
        // again by `json_each`, while this transaction holds the write lock that webhooks
        // wait for (README, "Bulk requests and webhooks").
        let mut inserted = 0;
        for r in rows {
            inserted += sqlx::query(
                "INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, \
                 key_body_sha256, status, error, job_ids, response, approval_required) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) ON CONFLICT DO NOTHING",
            )
            .bind(&r.delivery.source)
            .bind(&r.delivery.delivery_id)
            .bind(micros(r.delivery.received_at))
            .bind(&r.delivery.body_sha256)
            .bind(r.delivery.key_body_sha256())
            .bind(r.status.as_str())
            .bind(r.error)
            .bind(&r.job_ids)
            .bind(&r.response)
            .bind(r.delivery.approval_required())
            .execute(&mut **self)
            .await?
            .rows_affected();
        }
        Ok(inserted)
    }

    async fn lock_bodies(&mut self, _bodies: &[(&str, &str)]) -> StoreResult<()> {
        Ok(())
    }

    async fn lock_people(&mut self, emails: &[&str]) -> StoreResult<Vec<Job>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE email IN (SELECT value FROM json_each(?1)) ORDER BY id"
        ))
        .bind(serde_json::to_string(emails).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&mut **self)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn cancellable(&mut self, of: Cancellable<'_>) -> StoreResult<Vec<(JobId, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, state FROM jobs WHERE email = ?1 \
             AND state IN (SELECT value FROM json_each(?2)) \
             AND json_type(params, '$.' || ?3) IS NULL ORDER BY id",
        )
        .bind(of.email)
        .bind(serde_json::to_string(of.states).unwrap_or_else(|_| "[]".into()))
        .bind(of.spare_param)
        .fetch_all(&mut **self)
        .await?)
    }

    async fn children_of(&mut self, ids: &[JobId]) -> StoreResult<Vec<(JobId, String)>> {
        Ok(sqlx::query_as(
            "SELECT id, state FROM jobs WHERE depends_on IN (SELECT value FROM json_each(?1)) \
             ORDER BY id",
        )
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&mut **self)
        .await?)
    }

    async fn set_cancelled(&mut self, ids: &[JobId], last_error: &str) -> StoreResult<()> {
        sqlx::query(
            "UPDATE jobs SET state = 'cancelled', last_error = ?2, finalized_at = ?3, \
             updated_at = ?3 WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(ids).unwrap_or_else(|_| "[]".into()))
        .bind(last_error)
        .bind(now_micros())
        .execute(&mut **self)
        .await?;
        Ok(())
    }

    async fn insert_jobs(&mut self, rows: &[JobRow<'_>]) -> StoreResult<Vec<Job>> {
        let rows = rows_json(rows.iter().map(|r| {
            json!([
                r.action.as_str(),
                r.params,
                r.target,
                r.state.as_str(),
                r.email,
                r.account_id,
                r.account_type,
                r.depends_on,
                micros(r.run_at),
                r.max_attempts,
                r.source,
                r.rule,
                r.delivery_id,
                r.lane.as_str(),
            ])
        }));
        // `WHERE true` tells SQLite's parser that ON CONFLICT belongs to the INSERT.
        let created = sqlx::query(concat!(
            "INSERT INTO jobs (action, params, target, state, email, account_id, account_type, \
             depends_on, run_at, max_attempts, source, rule, delivery_id, lane, created_at, \
             updated_at) \
             SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, \
                 value ->> 6, value ->> 7, value ->> 8, value ->> 9, value ->> 10, value ->> 11, \
                 value ->> 12, value ->> 13, ?2, ?2 \
             FROM json_each(?1) WHERE true ORDER BY key \
             ON CONFLICT DO NOTHING RETURNING ",
            job_columns!()
        ))
        .bind(rows)
        .bind(now_micros())
        .fetch_all(&mut **self)
        .await?;
        created.iter().map(job_from_row).collect()
    }

    async fn live_jobs(&mut self, keys: &[JobKey<'_>], live: &[&str]) -> StoreResult<Vec<Job>> {
        let keys = rows_json(
            keys.iter()
                .map(|k| json!([k.action.as_str(), k.email, k.target])),
        );
        // Key by key, each looked up by the person's email: asked as a set (`IN`), SQLite
        // would scan every job in a live state.
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE id IN ( \
               SELECT j.id FROM json_each(?1) k CROSS JOIN jobs j ON j.action = k.value ->> 0 \
                 AND j.email = k.value ->> 1 AND j.target = k.value ->> 2 \
               WHERE j.state IN (SELECT value FROM json_each(?2)))"
        ))
        .bind(keys)
        .bind(serde_json::to_string(live).unwrap_or_else(|_| "[]".into()))
        .fetch_all(&mut **self)
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    async fn insert_events(&mut self, events: &[EventRow<'_>]) -> StoreResult<()> {
        let rows = rows_json(events.iter().map(|e| {
            json!([
                e.job_id,
                e.from.map(|s| s.as_str()),
                e.to.as_str(),
                e.actor,
                e.detail
            ])
        }));
        sqlx::query(
            "INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
             SELECT value ->> 0, ?2, value ->> 1, value ->> 2, value ->> 3, value ->> 4 \
             FROM json_each(?1) ORDER BY key",
        )
        .bind(rows)
        .bind(now_micros())
        .execute(&mut **self)
        .await?;
        Ok(())
    }
}

/// Adds these people's rows, or moves an existing row's times earlier (`accept::people_named`).
pub(super) async fn record_people(
    tx: &mut Transaction<'_, Sqlite>,
    people: &[PersonRow<'_>],
) -> StoreResult<()> {
    let rows = rows_json(
        people
            .iter()
            .map(|p| json!([p.email, micros(p.first_seen), micros(p.effective_at)])),
    );
    sqlx::query(
        "INSERT INTO people (email, first_seen, effective_at) \
         SELECT value ->> 0, value ->> 1, value ->> 2 FROM json_each(?1) WHERE true \
         ON CONFLICT (email) DO UPDATE SET \
             first_seen = min(first_seen, excluded.first_seen), \
             effective_at = min(effective_at, excluded.effective_at)",
    )
    .bind(rows)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
