//! Proof of offboarding, the worker's part (README, "Proof for auditors"): once a person's
//! chain has ended live, read the account once more and record what it shows; a while
//! later, read it again.
//!
//! Both are driven by what the store holds, not by memory: a chain end with no verification
//! row is found by the next pass, and a due recheck is leased like a job. A restart loses
//! neither, and the unique verification per job and the recheck lease make each happen once
//! across replicas (two replicas may read the same chain end; only one records it). The
//! reads go through the client's pacing like any other request.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::atlassian::{Client, Verdict};
use crate::config::Config;
use crate::domain::{Action, Job, JobId, ManualSource, NewChain, NewStep, Reversal};
use crate::store::verifications::NewVerification;
use crate::store::{JobFilter, Recheck, Store, StoreError, Verification, VerifiedState};

/// Chain ends older than this when first seen are not verified: a store that predates
/// verification is not read back wholesale at the first start.
const VERIFY_WITHIN: chrono::TimeDelta = chrono::TimeDelta::days(7);
/// The most chain ends, and rechecks, one pass reads.
const PER_PASS: u32 = 50;
/// How long a recheck is held by the replica reading it.
const RECHECK_LEASE: Duration = Duration::from_secs(300);

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub verified: usize,
    pub failed: usize,
    pub rechecked: usize,
    pub reactivated: usize,
    /// Every chain end it found was recorded, and it found fewer than it could take: the
    /// next pass need not look further back than this one's start.
    pub caught_up: bool,
}

/// How far back a pass looks for chain ends: a step's `finalized_at` is the database's
/// clock inside its transaction, which may commit a little later.
const COMMIT_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(1);

/// The actions whose steps are verified: every one that takes something away. A hand-over
/// takes nothing from the account, and reads its items back itself.
fn verified_actions() -> Vec<&'static str> {
    Action::ALL
        .into_iter()
        .filter(|a| !matches!(a.spec().reversal, Reversal::Undo) && a.handover().is_none())
        .map(Action::as_str)
        .collect()
}

/// Verifies the chain ends finalized since `since` (at most [`VERIFY_WITHIN`] before
/// `now`; `None`: that far back), and rechecks what is due at `now`.
pub async fn pass(
    store: &dyn Store,
    client: &Client,
    config: &Config,
    owner: &str,
    now: DateTime<Utc>,
    since: Option<DateTime<Utc>>,
) -> Result<Pass, StoreError> {
    let mut done = Pass::default();
    let actions = verified_actions();
    let oldest = now - VERIFY_WITHIN;
    let since = since.map_or(oldest, |since| since.max(oldest));
    let ends = store
        .verifications()
        .unverified_chain_ends(since, &actions, PER_PASS)
        .await?;
    done.caught_up = ends.len() < PER_PASS as usize;
    for job in ends {
        let Some(verdict) = read(client, &job).await else {
            done.caught_up = false;
            continue;
        };
        let state = match verdict {
            Verdict::Holds(_) => VerifiedState::Verified,
            Verdict::Contradicts(_) | Verdict::CannotTell(_) => VerifiedState::VerificationFailed,
        };
        let seen = seen(&verdict);
        let recheck_at = match (state, config.evidence.recheck_after) {
            (VerifiedState::Verified, Some(after)) => {
                Some(now + chrono::Duration::from_std(after).unwrap_or(chrono::TimeDelta::MAX))
            }
            _ => None,
        };
        let new = NewVerification {
            job: &job,
            state,
            seen: &seen,
            recheck_at,
        };
        if !store.verifications().record_verification(&new).await? {
            continue;
        }
        match state {
            VerifiedState::Verified => done.verified += 1,
            VerifiedState::VerificationFailed => {
                done.failed += 1;
                crate::metrics::verification_failed();
                tracing::warn!(job_id = %job.id, action = %job.action, %seen, "verification failed: the account does not show what its chain did");
            }
        }
        // The person's case says how long removing access took (README, "A person's case").
        if let Some(took) = crate::evidence::people::time_to_revoke_of(store, &job.email).await? {
            crate::metrics::time_to_revoke(took.as_seconds_f64().max(0.0));
        }
    }
    let due = store
        .verifications()
        .claim_rechecks(owner, now, RECHECK_LEASE, PER_PASS)
        .await?;
    for verification in due {
        let Some(job) = store.job(verification.job_id).await? else {
            continue;
        };
        // A read that fails leaves the lease to expire: the next pass after it tries again.
        let Some(verdict) = read(client, &job).await else {
            continue;
        };
        let recheck = match verdict {
            Verdict::Holds(_) => Recheck::Holds,
            Verdict::Contradicts(_) => Recheck::Reactivated,
            Verdict::CannotTell(_) => Recheck::CannotTell,
        };
        let seen = seen(&verdict);
        if !store
            .verifications()
            .finish_recheck(&verification, owner, recheck, &seen)
            .await?
        {
            continue;
        }
        done.rechecked += 1;
        if recheck == Recheck::Reactivated {
            done.reactivated += 1;
            crate::metrics::reactivated();
            tracing::warn!(job_id = %job.id, action = %job.action, %seen, "recheck: the account is active again");
            if config.evidence.reenqueue_reactivated {
                reenqueue(store, config, &verification, &job, now).await?;
            }
        }
    }
    Ok(done)
}

/// What a read saw, as recorded.
fn seen(verdict: &Verdict) -> String {
    match verdict {
        Verdict::Holds(seen) | Verdict::Contradicts(seen) => seen.clone(),
        Verdict::CannotTell(seen) => format!("cannot tell: {seen}"),
    }
}

/// Reads `job`'s account; `None` when the read failed and should be tried again later.
async fn read(client: &Client, job: &Job) -> Option<Verdict> {
    let Some(account_id) = job.account_id.as_ref() else {
        return Some(Verdict::CannotTell(
            "no account id was recorded for the job".into(),
        ));
    };
    let Ok(mutation) = super::execute::mutation_for(job, account_id.as_str()) else {
        return Some(Verdict::CannotTell("the job lacks its parameter".into()));
    };
    match client.verify(&mutation).await {
        Ok(Some(verdict)) => Some(verdict),
        // Only actions that take something away are selected; never reached.
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(job_id = %job.id, error = %e, "verification read failed; retrying on a later pass");
            None
        }
    }
}

/// `end` and the earlier steps of its chain, first step first.
async fn chain_of(store: &dyn Store, end: &Job) -> Result<Vec<Job>, StoreError> {
    let jobs = store
        .list_jobs(&JobFilter {
            email: Some(end.email.to_string()),
            limit: 1000,
            ..JobFilter::default()
        })
        .await?;
    let mut chain = vec![end.clone()];
    let mut next: Option<JobId> = end.depends_on;
    while let Some(id) = next {
        let Some(step) = jobs.iter().find(|j| j.id == id) else {
            break;
        };
        chain.push(step.clone());
        next = step.depends_on;
    }
    chain.reverse();
    Ok(chain)
}

/// Enqueues the chain of `end` again, awaiting approval: the person's access is back.
async fn reenqueue(
    store: &dyn Store,
    config: &Config,
    verification: &Verification,
    end: &Job,
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let chain = chain_of(store, end).await?;
    let new = NewChain {
        email: end.email.clone(),
        account_id: end.account_id.clone(),
        account_type: None,
        rule: "reactivated".into(),
        approval: true,
        steps: chain
            .iter()
            .map(|job| NewStep {
                action: job.action,
                params: job.params.clone(),
                run_at: now,
                // Someone who has access again should lose it at once, once approved.
                lane: crate::domain::Lane::Urgent,
            })
            .collect(),
    };
    // One key per verification: a second pass over the same recheck replays, never doubles.
    let key = format!("reactivated-{}", verification.id);
    crate::manual::enqueue(
        store,
        config,
        ManualSource::Recheck,
        &key,
        key.as_bytes(),
        vec![new],
    )
    .await?;
    Ok(())
}

/// Runs a pass every `[evidence] verify_every` until `shutdown`.
pub(super) async fn run(
    store: Arc<dyn Store>,
    client: Client,
    config: Arc<Config>,
    owner: String,
    shutdown: tokio_util::sync::CancellationToken,
) {
    // The first pass after a start looks back the whole window; later ones only as far as
    // the last pass that caught up, so that a pass costs what finished since.
    let mut since = None;
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(config.evidence.verify_every) => {}
        }
        let now = Utc::now();
        match pass(store.as_ref(), &client, &config, &owner, now, since).await {
            Ok(done) => {
                if done.caught_up {
                    since = Some(now - COMMIT_MARGIN);
                }
                if done.verified + done.failed + done.rechecked > 0 {
                    tracing::info!(?done, "verification pass");
                }
            }
            Err(e) => tracing::warn!(error = %e, "verification pass failed; trying again"),
        }
    }
}
