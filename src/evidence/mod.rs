//! Proof of offboarding (README, "Proof for auditors"), pure in its parts: a person's case
//! computed from what the store records (`case.rs`), read from the store (`people.rs`), the
//! time-to-revoke report over a period (`report.rs`), the audit trail's hash chain
//! (`chain.rs`), keyed pseudonyms (`pseudonym.rs`), where a person is named in free text
//! (`person.rs`) and what an erasure makes of their records (`erasure.rs`). Here, the uses
//! that drive the store: sealing, `evidence verify`, `evidence erase`, and the periodic task
//! `serve` runs with the worker.

pub mod case;
pub mod chain;
pub mod erasure;
pub mod people;
pub mod person;
pub mod pseudonym;
pub mod report;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{ChainSql, Erased, Erasure, Store, StoreResult};
use chain::{Break, ChainCheck, ChainHead};
use pseudonym::Pseudonyms;

/// The detail of the audit event an erasure writes on each of the person's jobs.
pub const PSEUDONYMIZED_DETAIL: &str = "personal data pseudonymized";
/// The actor of the periodic pass's audit events.
pub const PSEUDONYMIZE_AFTER_ACTOR: &str = "offboard:pseudonymize_after";

/// Events sealed per transaction: short enough that the lock is held briefly.
const SEAL_BATCH: u32 = 1000;
/// Events read per page by `verify`: never the whole trail at once.
const VERIFY_PAGE: u32 = 10_000;
/// How often `serve` seals a batch of what was committed since; sooner while a backlog lasts,
/// at the store's pace (`ChainSql::serve_pace`).
const SEAL_EVERY: Duration = Duration::from_secs(1);
/// How often `serve` looks for cases past `pseudonymize_after`.
const PSEUDONYMIZE_EVERY: Duration = Duration::from_secs(600);
/// People pseudonymized per look.
const PSEUDONYMIZE_BATCH: u32 = 100;

/// Seals every event committed so far, a batch per transaction. Returns how many.
pub async fn seal_all(chain: &dyn ChainSql) -> StoreResult<u64> {
    let mut total = 0;
    loop {
        let sealed = chain.seal_events(SEAL_BATCH).await?;
        total += sealed;
        if sealed < u64::from(SEAL_BATCH) {
            return Ok(total);
        }
    }
}

/// An intact chain: how many events it holds, and its head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intact {
    pub events: i64,
    pub head: Option<ChainHead>,
}

/// Seals what is unsealed, then recomputes the whole chain in `chain_seq` order, a page at
/// a time. `Err` inside: the first event that does not match.
pub async fn verify(chain: &dyn ChainSql) -> StoreResult<Result<Intact, Break>> {
    seal_all(chain).await?;
    let mut check = ChainCheck::default();
    loop {
        let page = chain.sealed_events(check.checked(), VERIFY_PAGE).await?;
        for event in &page {
            if let Err(broken) = check.check(event) {
                return Ok(Err(broken));
            }
        }
        if page.len() < VERIFY_PAGE as usize {
            break;
        }
    }
    Ok(Ok(Intact {
        events: check.checked(),
        head: check.head(),
    }))
}

/// `evidence erase`: pseudonymizes one person at once, unless their case is unfinished,
/// and seals the events written on the way. The caller then compacts the store
/// (`ChainSql::compact` with `vacuum`), so that no copy of the email is left in the file.
pub async fn erase(chain: &dyn ChainSql, erasure: Erasure<'_>) -> StoreResult<Erased> {
    seal_all(chain).await?;
    let erased = chain.pseudonymize(erasure).await?;
    if let Erased::Done { .. } = erased {
        seal_all(chain).await?;
    }
    Ok(erased)
}

/// One pass of `pseudonymize_after`: pseudonymizes the people whose jobs are all final and
/// whose newest job was finalized more than `after` ago. Returns how many. Idempotent, and
/// safe on every replica at once: each person is rewritten under the chain's lock, after
/// which they are no longer due.
pub async fn pseudonymize_due(
    chain: &dyn ChainSql,
    pseudonyms: &Pseudonyms,
    after: Duration,
) -> StoreResult<u64> {
    let Ok(after) = chrono::Duration::from_std(after) else {
        return Ok(0);
    };
    let Some(before) = chrono::Utc::now().checked_sub_signed(after) else {
        return Ok(0);
    };
    // No sealing here: an unsealed event is pseudonymized as its job's account will be
    // sealed with (`erasure::Rewrite::event`), and beside `serve` a backlog sealed batch
    // after batch would take SQLite's write lock from webhooks; `serve`'s sealer takes it.
    let mut done = 0;
    loop {
        let due = chain
            .due_for_pseudonymization(before, PSEUDONYMIZE_BATCH)
            .await?;
        let mut progressed = false;
        for email in &due {
            let erasure = Erasure {
                email: email.as_str(),
                pseudonyms,
                actor: PSEUDONYMIZE_AFTER_ACTOR,
                refuse_unfinished: true,
            };
            // Another replica may have taken this person meanwhile: then no job was left.
            if let Erased::Done { jobs: 1.., .. } = chain.pseudonymize(erasure).await? {
                done += 1;
                progressed = true;
            }
        }
        if due.len() < PSEUDONYMIZE_BATCH as usize || !progressed {
            break;
        }
    }
    if done > 0 {
        chain.compact(false).await?;
    }
    Ok(done)
}

/// Seals what the drained worker wrote last, when `serve` stops.
pub async fn seal_at_exit(store: &dyn Store) {
    if let Err(e) = seal_all(store.chain()).await {
        tracing::warn!(error = %e, "cannot seal the audit trail at shutdown; the next start or migrate will");
    }
}

/// What `serve` runs with the worker: sealing a batch every second (at the store's pace
/// while a backlog lasts), and, with a pseudonym key, the `pseudonymize_after` pass every
/// ten minutes. Ends once `shutdown` is cancelled.
pub fn spawn(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    let pseudonyms = config.evidence.pseudonym_key.clone().map(Pseudonyms::new);
    let after = config.evidence.pseudonymize_after;
    tokio::spawn(async move {
        let chain = store.chain();
        let pace = chain.serve_pace();
        let mut pass_tick = tokio::time::interval(PSEUDONYMIZE_EVERY);
        pass_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_seal = SEAL_EVERY;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // The worker's last results are still being written: `serve` seals
                    // once more after it has drained (`seal_at_exit`).
                    return;
                }
                _ = tokio::time::sleep(next_seal) => {
                    let sealed = chain.seal_events(pace.batch).await;
                    next_seal = match &sealed {
                        Ok(n) if *n == u64::from(pace.batch) => pace.backlog_every,
                        Ok(_) | Err(_) => SEAL_EVERY,
                    };
                    // Said once when sealing starts failing and once when it works again,
                    // not every second of an outage.
                    match (sealed, failing) {
                        (Ok(_), true) => {
                            tracing::info!("sealing the audit trail works again");
                            failing = false;
                        }
                        (Err(e), false) => {
                            tracing::warn!(error = %e, "cannot seal the audit trail; trying every second");
                            failing = true;
                        }
                        (Ok(_), false) | (Err(_), true) => {}
                    }
                }
                _ = pass_tick.tick(), if pseudonyms.is_some() => {
                    let Some(pseudonyms) = &pseudonyms else { continue };
                    match pseudonymize_due(chain, pseudonyms, after).await {
                        Ok(0) => tracing::debug!("no case past pseudonymize_after"),
                        Ok(people) => tracing::info!(
                            people,
                            "pseudonymized the cases past pseudonymize_after"
                        ),
                        Err(e) => tracing::warn!(
                            error = %e,
                            "cannot pseudonymize the cases past pseudonymize_after; trying again"
                        ),
                    }
                }
            }
        }
    })
}
