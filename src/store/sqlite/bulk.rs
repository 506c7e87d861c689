//! Recording a bulk request on SQLite (README, "Bulk requests and webhooks"). SQLite has one
//! writer at a time, in this process and in any other on the same file (`offboard jobs
//! import` runs in its own). One transaction of 10,000 jobs holds the write lock for
//! seconds, and every webhook queued behind it would be answered 503. So a bulk request is
//! recorded a chunk of chains at a time, each in its own short transaction, with a pause
//! after each in which other writers take the lock.
//!
//! The pause is sized to SQLite's busy handler, which is how a writer in another process
//! (or another connection of this one) waits for the lock: it sleeps 1, 2, 5, 10, 15, 20,
//! 25 ms and so on between tries, so a writer that started waiting during a chunk tries
//! again at least every 20 ms for its first 50 ms. A pause longer than that is always seen.
//!
//! The delivery's row, with its answer naming every job, is written in the last chunk's
//! transaction. Until then the request is not recorded: if recording stops part-way, the
//! jobs of the chunks already committed stay (each is a job somebody asked for), and the
//! same request again records the rest, each step resolving to the live job the first try
//! created, so nothing is doubled.

use std::time::Duration;

use sqlx::Row;
use sqlx::sqlite::SqlitePool;
use tokio::time::Instant;

use super::accept::{NamedJobs, insert_delivery, record_chain, recorded_before};
use super::{Tx, now_micros};
use crate::domain::NewChain;
use crate::store::model::*;
use crate::store::{StoreError, StoreResult};

/// The most steps in one chunk: about 10 ms of writing on the machine the README's figures
/// come from, so that a webhook waits for at most that and the pause.
pub(super) const CHUNK_STEPS: usize = 100;

/// How long the writer stays away after each chunk (see the module's comment).
const PAUSE: Duration = Duration::from_millis(30);

/// Records `delivery`, whose chains come in `chunks`, by `deadline`.
pub(super) async fn record_in_chunks(
    pool: &SqlitePool,
    delivery: &NewDelivery,
    chunks: &[&[NewChain]],
    deadline: Instant,
) -> StoreResult<DeliveryReceipt> {
    let mut jobs = NamedJobs::default();
    let last = chunks.len() - 1;
    for (i, chains) in chunks.iter().enumerate() {
        if Instant::now() >= deadline {
            // Chunks already committed stay; the same request again finishes it.
            return Err(StoreError::Overdue { in_doubt: i > 0 });
        }
        let mut tx = begin(pool).await?;
        if (i == 0 || i == last)
            && let Some(row) = recorded_before(&mut tx, delivery).await?
        {
            // Recorded before, or by a copy of this request that finished first: its jobs
            // are the ones this one resolved to.
            return duplicate_receipt(row.try_get("status")?, row.try_get("response")?);
        }
        let now = now_micros();
        for chain in *chains {
            record_chain(&mut tx, delivery, chain, now, &mut jobs).await?;
        }
        if i == last {
            let ids: Vec<String> = jobs.list.iter().map(|j| j.id.to_string()).collect();
            let body = delivery.answer(&jobs.list, &[]);
            insert_delivery(
                &mut tx,
                delivery,
                DeliveryStatus::Accepted,
                None,
                &ids,
                &body,
            )
            .await?;
            tx.commit().await?;
            return Ok(DeliveryReceipt {
                duplicate: false,
                status: DeliveryStatus::Accepted,
                body,
            });
        }
        tx.commit().await?;
        tokio::time::sleep(PAUSE).await;
    }
    unreachable!("the last chunk returns")
}

async fn begin(pool: &SqlitePool) -> StoreResult<Tx> {
    Ok(pool.begin_with("BEGIN IMMEDIATE").await?)
}
