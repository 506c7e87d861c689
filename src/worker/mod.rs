//! The worker: claims due jobs under a lease, runs each in its own task (at most
//! `concurrency` at once), and records what happened. It wakes on enqueue (Postgres `LISTEN`
//! or the in-process signal) and polls as a fallback, rescues jobs whose worker died, honours
//! the shared pause flag and the blast-radius limit, and on shutdown stops claiming and lets
//! in-flight jobs finish for a bounded time.

mod account_reads;
mod backoff;
mod blast_radius;
mod execute;
mod handover;
pub mod verification;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Notify, Semaphore};
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::atlassian::{Account, Client};
use crate::batch::Batcher;
use crate::config::Config;
use crate::domain::{Job, JobState, Outcome};
use crate::store::{AccountRecord, Completion, Store, StoreError};
use account_reads::SiteAccountReads;
use blast_radius::{BlastRadius, Reservation};
use execute::{Guards, Lookups, Step};

use backoff::full_jitter;

/// How often an idle worker looks for due jobs without a wake-up: a scheduled job starts
/// within this long of its `run_at`.
const POLL_INTERVAL: Duration = Duration::from_millis(500);
/// How often expired leases are looked for.
const RESCUE_INTERVAL: Duration = Duration::from_secs(5);
/// How long in-flight jobs may take to finish after shutdown; after that they are abandoned
/// and their leases expire, so another worker runs them again.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Results waiting for the batch writer; tasks wait when it is full.
const COMPLETION_QUEUE: usize = 1024;
/// The most results one batch writes.
const MAX_COMPLETION_BATCH: usize = 128;
/// Store errors are retried with backoff up to this delay, so work resumes within seconds of
/// the database coming back.
const MAX_STORE_BACKOFF: Duration = Duration::from_secs(5);

/// Starts the worker with the process's Atlassian client (`None`: no `[atlassian]` section,
/// or a client that could not be built); the handle ends once it has drained after
/// `shutdown`.
pub fn spawn(
    config: Arc<Config>,
    store: Arc<dyn Store>,
    client: Option<Client>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let Some(client) = client else {
            if config.atlassian.is_none() {
                tracing::warn!("no [atlassian] section: the worker is idle and jobs stay pending");
            } else {
                tracing::error!("no usable Atlassian client: the worker is idle");
            }
            shutdown.cancelled().await;
            return;
        };
        tokio::spawn(verification::run(
            store.clone(),
            client.clone(),
            config.clone(),
            worker_name(),
            shutdown.clone(),
        ));
        let completions = complete_in_batches(store.clone());
        let account_records = record_accounts_in_batches(store.clone());
        let worker = Worker {
            slot_freed: Arc::new(Notify::new()),
            completions,
            account_records,
            site_accounts: SiteAccountReads::spawn(client.clone(), store.clone()),
            claim_batch: (config.worker.concurrency / 4).max(1),
            owner: worker_name(),
            config: config.clone(),
            store,
            client,
            blast_radius: BlastRadius::new(config.safety.max_actions_per_hour),
        };
        Arc::new(worker).run(shutdown).await;
    })
}

/// A name that tells operators which process holds a lease.
fn worker_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "offboard".into());
    let suffix: u16 = rand::random();
    format!("{host}-{}-{suffix:04x}", std::process::id())
}

/// One of the worker's `concurrency` places for a running job; freeing it wakes the claim loop.
struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        // The permit goes back first, so the woken loop sees the free slot.
        drop(self.permit.take());
        self.freed.notify_one();
    }
}

struct Worker {
    /// Rung whenever a slot is freed.
    slot_freed: Arc<Notify>,
    /// Successful results go to one writer that records them in batches.
    completions: Batcher<Completion, Result<bool, String>>,
    /// So do the accounts jobs resolved, each before its job's mutating call.
    account_records: Batcher<AccountRecord, Result<bool, String>>,
    /// Customer accounts read by id go to one reader that reads them in bulk.
    site_accounts: SiteAccountReads,
    /// While jobs are running, claim only once this many slots are free: one claim
    /// statement per few jobs instead of one per job.
    claim_batch: usize,
    owner: String,
    config: Arc<Config>,
    store: Arc<dyn Store>,
    client: Client,
    blast_radius: BlastRadius,
}

impl Worker {
    async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let concurrency = self.config.worker.concurrency;
        let slots = Arc::new(Semaphore::new(concurrency));
        let wakeup = self.store.wakeup();
        let mut tasks = JoinSet::new();
        let mut store_backoff = Duration::from_millis(100);
        let mut next_rescue = tokio::time::Instant::now();
        tracing::info!(owner = %self.owner, concurrency, dry_run = self.config.dry_run, "worker started");
        while !shutdown.is_cancelled() {
            while tasks.try_join_next().is_some() {}
            if slots.available_permits() < self.claim_batch {
                // Some slots are taken, so one will be freed.
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = self.slot_freed.notified() => {}
                }
                continue;
            }
            if tokio::time::Instant::now() >= next_rescue {
                next_rescue = tokio::time::Instant::now() + RESCUE_INTERVAL;
                match self.store.rescue_expired().await {
                    Ok(ids) if !ids.is_empty() => {
                        tracing::warn!(jobs = ?ids, "rescued jobs whose worker lease expired");
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "lease rescue failed"),
                }
            }
            let claimed = match self.claim(&slots).await {
                Ok(claimed) => {
                    store_backoff = Duration::from_millis(100);
                    claimed
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?store_backoff, "cannot claim jobs: store unavailable");
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(store_backoff) => {}
                    }
                    store_backoff = (store_backoff * 2).min(MAX_STORE_BACKOFF);
                    continue;
                }
            };
            let claimed_any = !claimed.is_empty();
            for (job, permit) in claimed {
                let worker = self.clone();
                let slot = Slot {
                    permit: Some(permit),
                    freed: self.slot_freed.clone(),
                };
                tasks.spawn(async move { worker.run_job(job, slot).await });
            }
            // With free slots left and nothing claimed, wait for a reason to look again.
            if !claimed_any || slots.available_permits() == 0 {
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = wakeup.notified() => {}
                    () = tokio::time::sleep(POLL_INTERVAL) => {}
                    () = self.slot_freed.notified(), if slots.available_permits() == 0 => {}
                }
            }
        }
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "draining in-flight jobs");
        }
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                abandoned = tasks.len(),
                "in-flight jobs did not finish in time; their leases will expire and they will run again"
            );
            tasks.abort_all();
        }
        tracing::info!(owner = %self.owner, "worker stopped");
    }

    /// Claims as many due jobs as there are free slots; the store claims nothing while the
    /// worker is paused.
    async fn claim(
        &self,
        slots: &Arc<Semaphore>,
    ) -> Result<Vec<(Job, tokio::sync::OwnedSemaphorePermit)>, StoreError> {
        let free = slots.available_permits();
        if free == 0 {
            return Ok(Vec::new());
        }
        let jobs = self
            .store
            .claim_due(
                &self.owner,
                u32::try_from(free).unwrap_or(u32::MAX),
                self.config.worker.lease,
            )
            .await?;
        Ok(jobs
            .into_iter()
            .filter_map(|job| {
                slots
                    .clone()
                    .try_acquire_owned()
                    .ok()
                    .map(|permit| (job, permit))
            })
            .collect())
    }

    #[tracing::instrument(skip_all, fields(job_id = %job.id, action = %job.action, attempt = job.attempts, lane = %job.lane))]
    async fn run_job(&self, job: Job, slot: Slot) {
        let due = job.run_at.max(job.created_at);
        let waited = (Utc::now() - due).to_std().unwrap_or_default();
        crate::metrics::queue_wait(job.lane, waited);
        // The job's requests take their tokens in its lane (README, "Lanes").
        let (step, reservation) = crate::atlassian::in_lane(job.lane, self.execute(&job)).await;
        tracing::info!(step = ?step, "job step finished");
        // A success is written by the batch writer: the slot goes to the next job meanwhile,
        // so Atlassian calls and database commits overlap. Other steps keep the slot until
        // written, so that e.g. a 401's pause is in the store before anything else is claimed.
        let slot = (!matches!(step, Step::Succeeded { .. })).then_some(slot);
        match reservation {
            // Only once the result is in the store does `count_done_since` see the call.
            Some(reservation) => reservation.settle(self.record(&job, step)).await,
            None => self.record(&job, step).await,
        }
        drop(slot);
    }

    /// The next step of the job, and the blast-radius reservation of its mutating call, if
    /// one was made: it must be held until the step is recorded.
    async fn execute(&self, job: &Job) -> (Step, Option<Reservation<'_>>) {
        let guards = Guards {
            safety: &self.config.safety,
            dry_run: self.config.dry_run,
        };
        if let Some(step) = self.wait_for_the_original(job).await {
            return (step, None);
        }
        let earlier = match self.earlier_step(job).await {
            Ok(earlier) => earlier,
            Err(step) => return (step, None),
        };
        if let Some(kind) = job.action.handover() {
            return (self.hand_over(job, kind, earlier.as_ref()).await, None);
        }
        let lookups = Lookups {
            client: &self.client,
            site_accounts: &self.site_accounts,
        };
        let target = match execute::plan(&lookups, &guards, job, earlier.as_ref()).await {
            Ok(target) => target,
            Err(step) => return (step, None),
        };
        // The chain's successor goes along with its account, so a hand-over after this step
        // hands over to the same person.
        let successor = earlier
            .as_ref()
            .and_then(|e| e.successor_account_id.as_deref());
        if let Some(account) = &target.record
            && let Err(step) = self.record_account(job, account, successor).await
        {
            return (step, None);
        }
        if guards.dry_run {
            return (execute::dry_run(&target), None);
        }
        if let Err(step) = execute::check_owned_content(&self.client, job, &target).await {
            return (step, None);
        }
        let reservation = match self.blast_radius.reserve(self.store.as_ref()).await {
            Ok(Some(reservation)) => reservation,
            Ok(None) => {
                let step = Step::Snooze {
                    wait: Some(Duration::ZERO),
                    detail: "blast radius reached: the worker paused before this call".into(),
                };
                return (step, None);
            }
            Err(e) => {
                let step = Step::Transient {
                    detail: format!("cannot check the blast radius: {e}"),
                };
                return (step, None);
            }
        };
        (
            execute::apply(&self.client, &target).await,
            Some(reservation),
        )
    }

    /// An inverse gives back only what its original took: it waits while the original runs,
    /// and ends without a call unless the original ended `done` (README, "Undo on rehire").
    async fn wait_for_the_original(&self, job: &Job) -> Option<Step> {
        let id = job
            .param(crate::domain::undo::UNDOES)?
            .parse::<crate::domain::JobId>()
            .ok()?;
        match self.store.job(id).await {
            Ok(original) => execute::give_back_once_done(job, original.as_ref()),
            Err(e) => Some(Step::Transient {
                detail: format!("cannot read the step this one gives back (job {id}): {e}"),
            }),
        }
    }

    /// The step this job depends on, when the job has no account of its own yet: a later
    /// step acts on the account the earlier one recorded.
    async fn earlier_step(&self, job: &Job) -> Result<Option<Job>, Step> {
        let Some(id) = job.depends_on.filter(|_| job.account_type.is_none()) else {
            return Ok(None);
        };
        self.store.job(id).await.map_err(|e| Step::Transient {
            detail: format!("cannot read the earlier step (job {id}) of this chain: {e}"),
        })
    }

    /// Records the resolved account on the job before any mutating call: if the process
    /// dies after the call, the re-run acts on the same account instead of searching by
    /// email, which may no longer find it.
    async fn record_account(
        &self,
        job: &Job,
        account: &Account,
        successor: Option<&str>,
    ) -> Result<(), Step> {
        let record = AccountRecord {
            job: job.clone(),
            account_id: account.account_id.clone(),
            account_type: account.account_type.clone(),
            successor_account_id: successor.map(str::to_owned),
        };
        let written = match self.account_records.submit(record).await {
            Ok(written) => written,
            Err(_) => Err("the account writer stopped".to_owned()),
        };
        match written {
            Ok(true) => {
                tracing::info!(account_id = %account.account_id, "account resolved and recorded");
                Ok(())
            }
            // The write of this step then finds the claim gone too, and changes nothing.
            Ok(false) => Err(Step::Transient {
                detail: "the lease was lost before the account could be recorded".into(),
            }),
            Err(e) => Err(Step::Transient {
                detail: format!("cannot record the account before calling Atlassian: {e}"),
            }),
        }
    }

    /// Writes the step to the store, retrying while the store is unavailable: the result
    /// of a call Atlassian already executed must not be lost to a database outage. If the
    /// process dies first, the lease expires and the job runs again (every action is
    /// idempotent); a write that arrives after that finds its claim gone and changes nothing.
    async fn record(&self, job: &Job, step: Step) {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.write_step(job, &step).await {
                Ok(true) => return,
                Ok(false) => {
                    tracing::warn!(
                        "the job's lease was lost before its result was written; the newer state stands"
                    );
                    return;
                }
                Err(e) => {
                    tracing::error!(error = %e, retry_in = ?delay, "cannot record the job's result; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(MAX_STORE_BACKOFF);
                }
            }
        }
    }

    /// Hands the result to the batch writer and waits until it is in the store.
    async fn complete(
        &self,
        job: &Job,
        outcome: Outcome,
        detail: &str,
    ) -> Result<bool, StoreError> {
        let completion = Completion {
            job: job.clone(),
            outcome,
            detail: detail.to_owned(),
        };
        self.completions
            .submit(completion)
            .await
            .map_err(|_| StoreError::Batch("the result writer stopped".into()))?
            .map_err(StoreError::Batch)
    }

    async fn fail(&self, job: &Job, error: &str, detail: &str) -> Result<bool, StoreError> {
        let written = self.store.fail(job, error, detail).await?;
        if written {
            crate::metrics::job_finished(job.action.as_str(), JobState::Failed, error_label(error));
        }
        Ok(written)
    }

    async fn write_step(&self, job: &Job, step: &Step) -> Result<bool, StoreError> {
        let store = &self.store;
        let worker = &self.config.worker;
        let action = job.action.as_str();
        match step {
            Step::Succeeded { outcome, detail } => {
                let written = self.complete(job, *outcome, detail).await?;
                if written {
                    crate::metrics::job_finished(action, JobState::Succeeded, outcome.as_str());
                }
                Ok(written)
            }
            Step::Failed { error, detail } => self.fail(job, error, detail).await,
            Step::Snooze { wait, detail } => {
                let wait = wait.unwrap_or_else(|| {
                    full_jitter(job.attempts, worker.backoff_base, worker.backoff_max)
                });
                let run_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                store.retry_later(job, run_at, true, None, detail).await
            }
            Step::Transient { detail } => {
                if job.attempts >= job.max_attempts {
                    return self.fail(job, "max_attempts", detail).await;
                }
                let wait = full_jitter(job.attempts, worker.backoff_base, worker.backoff_max);
                let run_at = Utc::now() + chrono::Duration::from_std(wait).unwrap_or_default();
                store
                    .retry_later(job, run_at, false, Some(detail), detail)
                    .await
            }
            Step::Pause { reason, detail } => {
                tracing::error!(
                    %reason,
                    %detail,
                    "pausing the worker until an operator fixes this and resumes it"
                );
                store.pause(*reason).await?;
                store
                    .retry_later(
                        job,
                        Utc::now(),
                        true,
                        None,
                        &format!("{detail}; worker paused ({reason})"),
                    )
                    .await
            }
        }
    }
}

/// An error code as a metric label. Codes are ours and few, but some carry a detail after
/// `:`: a status (`api_error:404`) is kept, counts (`owns_content:filters=2,dashboards=0`) or
/// a name (`missing_param:group_id`) are not, so that the label's values stay few.
fn error_label(error: &str) -> &str {
    match error.split_once(':') {
        Some((_, status)) if status.bytes().all(|b| b.is_ascii_digit()) => error,
        Some((code, _)) => code,
        None => error,
    }
}

/// A writer of per-job rows, batched: whatever arrives while the previous batch is being
/// committed goes into the next one (`crate::batch`), so concurrent jobs share one commit.
/// Each job learns whether its claim still held, or the batch's error.
fn write_in_batches<T, F, Fut>(store: Arc<dyn Store>, write: F) -> Batcher<T, Result<bool, String>>
where
    T: Send + 'static,
    F: Fn(Arc<dyn Store>, Vec<T>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Vec<bool>, StoreError>> + Send + 'static,
{
    Batcher::spawn(
        COMPLETION_QUEUE,
        MAX_COMPLETION_BATCH,
        move |items: Vec<T>| {
            let count = items.len();
            let written = write(store.clone(), items);
            async move {
                match written.await {
                    Ok(written) => written.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e.to_string()); count],
                }
            }
        },
    )
}

/// The writer of successful results.
fn complete_in_batches(store: Arc<dyn Store>) -> Batcher<Completion, Result<bool, String>> {
    write_in_batches(store, |store, items: Vec<Completion>| async move {
        store.complete_many(&items).await
    })
}

/// The writer of resolved accounts, each before its job's mutating call.
fn record_accounts_in_batches(
    store: Arc<dyn Store>,
) -> Batcher<AccountRecord, Result<bool, String>> {
    write_in_batches(store, |store, items: Vec<AccountRecord>| async move {
        store.record_accounts(&items).await
    })
}

#[cfg(test)]
mod tests {
    use super::error_label;

    #[test]
    fn error_labels_keep_a_status_and_drop_counts_and_names() {
        assert_eq!(error_label("api_error:404"), "api_error:404");
        assert_eq!(
            error_label("owns_content:filters=2,dashboards=0"),
            "owns_content"
        );
        assert_eq!(error_label("missing_param:group_id"), "missing_param");
        assert_eq!(error_label("not_found"), "not_found");
    }
}
