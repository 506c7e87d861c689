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
//! The delivery's row, with its answer naming every job, is written in a transaction of its
//! own after the last chunk, the answer serialized before it begins. Until then the request
//! is not recorded: if recording stops part-way, the
//! jobs of the chunks already committed stay (each is a job somebody asked for), and the
//! same request again records the rest, each step resolving to the live job the first try
//! created, so nothing is doubled.

use std::time::Duration;

use sqlx::sqlite::SqlitePool;
use tokio::time::Instant;

use crate::domain::{Job, JobId, NewChain};
use crate::store::accept::{DeliveryRow, Writes, people_named, record_jobs};
use crate::store::model::*;
use crate::store::{StoreError, StoreResult};

/// The most steps in one chunk: a few milliseconds of writing with the set-based statements
/// (`../accept.rs`) on the machine the README's figures come from, well within the 20 ms
/// in which a waiting writer tries again. 100 gave the same webhook latencies and took
/// twice as long; 500 took half as long again and made some webhooks wait 130 ms.
pub(super) const CHUNK_STEPS: usize = 200;

/// How long the writer stays away after each chunk (see the module's comment).
const PAUSE: Duration = Duration::from_millis(30);

/// Records `delivery`, whose chains come in `chunks`, by `deadline`.
pub(super) async fn record_in_chunks(
    pool: &SqlitePool,
    delivery: &NewDelivery,
    chunks: &[&[NewChain]],
    deadline: Instant,
) -> StoreResult<DeliveryReceipt> {
    let mut jobs: Vec<Job> = Vec::new();
    let mut seen: std::collections::HashSet<JobId> = std::collections::HashSet::new();
    for (i, chains) in chunks.iter().enumerate() {
        if Instant::now() >= deadline {
            // Chunks already committed stay; the same request again finishes it.
            return Err(StoreError::Overdue { in_doubt: i > 0 });
        }
        let mut tx = super::begin_write(pool).await?;
        if i == 0
            && let Some((status, response)) = tx.recorded(&[delivery]).await?.pop().flatten()
        {
            // Recorded before: its jobs are the ones this one resolves to.
            return duplicate_receipt(&status, &response);
        }
        let chunk = delivery.with_chains(chains);
        for job in record_jobs(&mut tx, &[&chunk])
            .await?
            .pop()
            .unwrap_or_default()
        {
            if seen.insert(job.id) {
                jobs.push(job);
            }
        }
        super::accept::record_people(&mut tx, &people_named([&chunk])).await?;
        tx.commit().await?;
        tokio::time::sleep(PAUSE).await;
    }
    // The answer names every job: it is written out before the last transaction, which only
    // stores it, so that the write lock is not held while thousands of jobs are serialized;
    // and off the runtime's threads, which answer webhooks meanwhile.
    let asked = delivery.with_chains(&[]);
    let (answer, job_ids, response) = tokio::task::spawn_blocking(move || {
        let answer = asked.answer(&jobs, &[]);
        let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
        let job_ids = serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into());
        let response = serde_json::to_string(&answer).unwrap_or_default();
        (answer, job_ids, response)
    })
    .await
    .map_err(|e| StoreError::Batch(format!("writing out the answer failed: {e}")))?;
    if Instant::now() >= deadline {
        return Err(StoreError::Overdue { in_doubt: true });
    }
    let mut tx = super::begin_write(pool).await?;
    if let Some((status, response)) = tx.recorded(&[delivery]).await?.pop().flatten() {
        // A copy of this request finished first: its jobs are the ones this one resolved to.
        return duplicate_receipt(&status, &response);
    }
    let row = DeliveryRow {
        delivery,
        status: DeliveryStatus::Accepted,
        error: None,
        job_ids,
        response,
    };
    if tx.insert_deliveries(&[row], &[]).await? != 1 {
        return Err(StoreError::Batch(crate::store::accept::RACE.into()));
    }
    tx.commit().await?;
    Ok(DeliveryReceipt {
        duplicate: false,
        status: DeliveryStatus::Accepted,
        answer,
    })
}
