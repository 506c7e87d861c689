//! Recording deliveries: one algorithm for both stores (README, "How it is built"). Every
//! decision is made here, in Rust; each backend states only the statements that truly differ
//! between the dialects ([`Writes`]: arrays against JSON, `FOR UPDATE` and advisory locks
//! against an immediate transaction that holds the lock already).
//!
//! For a batch of deliveries, in the caller's transaction:
//! - the dedupe lookup, for all of them at once (`Dedupe`);
//! - for a delivery with a cancel rule: the person's live jobs cancelled, then the later steps
//!   of their chains ([`cancel_with_dependents`], which the worker's failures use too); and an
//!   undo planned from the jobs this transaction sees;
//! - the jobs, one set-based `INSERT … ON CONFLICT DO NOTHING RETURNING` per wave of steps,
//!   then one read of the live jobs that blocked an insert;
//! - the deliveries, each inserted with its answer;
//! - once for the whole batch, the people it named (`people`, for their cases).
//!
//! A batch comes out exactly as its deliveries would one after the other. Waves keep rule
//! order: a step waits for the step before it in its chain, and for any earlier step (in this
//! or an earlier delivery of the batch) that asks for the same live job, so that it resolves to
//! that job as it would have in turn. A delivery with a cancel rule or an undo, and a copy of a
//! delivery earlier in the batch, start a segment of their own, recorded after the ones before
//! it.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use chrono::{DateTime, SubsecRound, Utc};

use super::model::*;
use super::{PREVIOUS_STEP_FAILED, SYSTEM_ACTOR, StoreError, StoreResult};
use crate::domain::{Action, Job, JobId, JobState, Lane, NewChain, NewStep};

/// The statements acceptance needs, as each dialect writes them. Nothing here decides: the
/// states, texts and keys arrive from the algorithm.
#[async_trait]
pub(super) trait Writes: Send {
    /// For each delivery, the `(status, response)` it was recorded with before, if any: the
    /// same key, else (an unsigned id) the newest copy of its body since `replay_since`.
    async fn recorded(
        &mut self,
        deliveries: &[&NewDelivery],
    ) -> StoreResult<Vec<Option<(String, String)>>>;
    /// Holds these `(source, body_sha256)` for the rest of the transaction, so that copies of
    /// one unsigned body are recorded one after the other. Sorted by the caller.
    async fn lock_bodies(&mut self, bodies: &[(&str, &str)]) -> StoreResult<()>;
    /// Holds these people for the rest of the transaction, and every job of theirs: what an
    /// undo is planned from is what it cancels. Sorted by the caller.
    async fn lock_people(&mut self, emails: &[&str]) -> StoreResult<Vec<Job>>;
    /// The jobs a cancel rule takes out (`Cancellable`), held for the rest of the
    /// transaction.
    async fn cancellable(&mut self, of: Cancellable<'_>) -> StoreResult<Vec<(JobId, String)>>;
    /// The jobs that depend on any of `ids`, with their states; held likewise.
    async fn children_of(&mut self, ids: &[JobId]) -> StoreResult<Vec<(JobId, String)>>;
    /// Marks these jobs cancelled with `last_error`.
    async fn set_cancelled(&mut self, ids: &[JobId], last_error: &str) -> StoreResult<()>;
    /// Inserts the jobs no live job of the same key blocks; the ones inserted.
    async fn insert_jobs(&mut self, rows: &[JobRow<'_>]) -> StoreResult<Vec<Job>>;
    /// The live jobs of these keys (`JobState::is_live`).
    async fn live_jobs(&mut self, keys: &[JobKey<'_>], live: &[&str]) -> StoreResult<Vec<Job>>;
    async fn insert_events(&mut self, events: &[EventRow<'_>]) -> StoreResult<()>;
    /// Inserts the deliveries whose key is not taken; how many were inserted. With them, the
    /// people they named (`people` of README, "A person's case"): each person's row added,
    /// or its `first_seen` and `effective_at` moved earlier where a row given is earlier.
    async fn insert_deliveries(
        &mut self,
        rows: &[DeliveryRow<'_>],
        people: &[PersonRow<'_>],
    ) -> StoreResult<u64>;
}

/// A person a delivery named (README, "A person's case").
pub(super) struct PersonRow<'a> {
    pub email: &'a str,
    pub first_seen: DateTime<Utc>,
    pub effective_at: DateTime<Utc>,
}

/// A person's jobs in `states`, except those whose params carry `spare_param`.
pub(super) struct Cancellable<'a> {
    pub email: &'a str,
    pub states: &'a [&'a str],
    pub spare_param: &'a str,
}

/// One job to insert.
pub(super) struct JobRow<'a> {
    pub action: Action,
    pub params: String,
    pub target: String,
    pub state: JobState,
    pub email: &'a str,
    pub account_id: Option<&'a str>,
    pub account_type: Option<&'a str>,
    pub depends_on: Option<JobId>,
    pub run_at: DateTime<Utc>,
    pub lane: Lane,
    pub max_attempts: i32,
    pub source: &'a str,
    pub rule: &'a str,
    pub delivery_id: &'a str,
}

/// The key of a person's one live job of an action (README, "One live job per (action,
/// email, target)").
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct JobKey<'a> {
    pub action: Action,
    pub email: &'a str,
    pub target: String,
}

impl JobKey<'_> {
    fn of(job: &Job) -> JobKey<'_> {
        JobKey {
            action: job.action,
            email: &job.email,
            target: job.key_target(),
        }
    }
}

/// One event to append.
pub(super) struct EventRow<'a> {
    pub job_id: JobId,
    pub from: Option<JobState>,
    pub to: JobState,
    pub actor: &'a str,
    pub detail: &'a str,
}

/// One delivery to insert, with its answer.
pub(super) struct DeliveryRow<'a> {
    pub delivery: &'a NewDelivery,
    pub status: DeliveryStatus,
    pub error: Option<&'a str>,
    pub job_ids: String,
    pub response: String,
}

/// Why a batch could not be recorded as one: a copy of one of its deliveries, or a live job
/// it resolved to, changed under it in another transaction. Roll back, and record each
/// delivery on its own (Postgres only: SQLite's immediate transaction holds the lock).
pub(super) const RACE: &str = "a delivery of the batch was recorded concurrently";

/// Records `deliveries` inside the caller's transaction; a receipt for each, in order.
pub(super) async fn accept<W: Writes>(
    tx: &mut W,
    deliveries: &[&NewDelivery],
) -> StoreResult<Vec<DeliveryReceipt>> {
    let mut receipts = Vec::with_capacity(deliveries.len());
    for segment in segments(deliveries) {
        receipts.extend(accept_segment(tx, segment).await?);
    }
    Ok(receipts)
}

/// The people these newly recorded deliveries planned jobs for, each once and sorted by
/// email (so that concurrent transactions lock their rows in one order), with when each was
/// first named and the earliest time planned for them. A repeated delivery names nobody
/// anew, so it is not given.
pub(super) fn people_named<'a>(
    new: impl IntoIterator<Item = &'a NewDelivery>,
) -> Vec<PersonRow<'a>> {
    let mut people: std::collections::BTreeMap<&str, PersonRow> = Default::default();
    for delivery in new {
        for chain in delivery.content.all_chains() {
            let Some(effective_at) = chain.steps.iter().map(|s| s.run_at).min() else {
                continue;
            };
            let named = PersonRow {
                email: chain.email.as_str(),
                first_seen: delivery.received_at,
                effective_at,
            };
            people
                .entry(named.email)
                .and_modify(|p| {
                    p.first_seen = p.first_seen.min(named.first_seen);
                    p.effective_at = p.effective_at.min(named.effective_at);
                })
                .or_insert(named);
        }
    }
    people.into_values().collect()
}

/// Consecutive runs of deliveries that can be recorded together (see the module's comment).
fn segments<'a, 'b>(deliveries: &'b [&'a NewDelivery]) -> Vec<&'b [&'a NewDelivery]> {
    let alone = |d: &NewDelivery| match &d.content {
        DeliveryContent::Accepted { cancels, undo, .. } => !cancels.is_empty() || undo.is_some(),
        DeliveryContent::Unmappable { .. } => false,
    };
    let mut segments = Vec::new();
    let mut start = 0;
    let mut keys = HashSet::new();
    let mut bodies = HashSet::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        let copy = !keys.insert((&delivery.source, &delivery.delivery_id))
            || (delivery.replay_since().is_some()
                && !bodies.insert((&delivery.source, &delivery.body_sha256)));
        if i > start && (copy || alone(delivery) || alone(deliveries[i - 1])) {
            segments.push(&deliveries[start..i]);
            start = i;
            keys.clear();
            bodies.clear();
            keys.insert((&delivery.source, &delivery.delivery_id));
            bodies.insert((&delivery.source, &delivery.body_sha256));
        }
    }
    if start < deliveries.len() {
        segments.push(&deliveries[start..]);
    }
    segments
}

async fn accept_segment<W: Writes>(
    tx: &mut W,
    deliveries: &[&NewDelivery],
) -> StoreResult<Vec<DeliveryReceipt>> {
    let mut bodies: Vec<(&str, &str)> = deliveries
        .iter()
        .filter(|d| d.replay_since().is_some())
        .map(|d| (d.source.as_str(), d.body_sha256.as_str()))
        .collect();
    bodies.sort_unstable();
    bodies.dedup();
    if !bodies.is_empty() {
        tx.lock_bodies(&bodies).await?;
    }
    let before = tx.recorded(deliveries).await?;
    let mut receipts: Vec<Option<DeliveryReceipt>> = Vec::with_capacity(deliveries.len());
    // The new ones, with their undo planned where they ask for one.
    let mut planned: Vec<(usize, Option<NewDelivery>)> = Vec::new();
    for (i, (delivery, recorded)) in deliveries.iter().zip(before).enumerate() {
        match recorded {
            Some((status, response)) => receipts.push(Some(duplicate_receipt(&status, &response)?)),
            None => {
                receipts.push(None);
                planned.push((i, with_undo_planned(tx, delivery).await?));
            }
        }
    }
    let new: Vec<&NewDelivery> = planned
        .iter()
        .map(|(i, planned)| planned.as_ref().unwrap_or(deliveries[*i]))
        .collect();
    let new_at: Vec<usize> = planned.iter().map(|(i, _)| *i).collect();
    let mut cancelled: Vec<Vec<JobId>> = Vec::with_capacity(new.len());
    for delivery in &new {
        cancelled.push(cancel_for_rules(tx, delivery).await?);
    }
    let named = record_jobs(tx, &new).await?;
    let (rows, answers) = delivery_rows(&new, &named, &cancelled);
    // Recorded with the deliveries, after every job insert, so that concurrent transactions
    // lock people's rows in one order.
    let people = people_named(new.iter().copied());
    if !rows.is_empty() && tx.insert_deliveries(&rows, &people).await? != rows.len() as u64 {
        return Err(StoreError::Batch(RACE.into()));
    }
    for (i, receipt) in new_at.into_iter().zip(answers) {
        receipts[i] = Some(receipt);
    }
    Ok(receipts
        .into_iter()
        .map(|r| r.expect("every delivery answered"))
        .collect())
}

/// The rows of these new deliveries, each with its answer naming `named` and `cancelled`,
/// and the receipts of those answers.
fn delivery_rows<'a>(
    new: &[&'a NewDelivery],
    named: &[Vec<Job>],
    cancelled: &[Vec<JobId>],
) -> (Vec<DeliveryRow<'a>>, Vec<DeliveryReceipt>) {
    let mut rows = Vec::with_capacity(new.len());
    let mut receipts = Vec::with_capacity(new.len());
    for ((&delivery, jobs), cancelled) in new.iter().zip(named).zip(cancelled) {
        let (status, error) = match &delivery.content {
            DeliveryContent::Unmappable { error } => {
                (DeliveryStatus::Unmappable, Some(error.as_str()))
            }
            DeliveryContent::Accepted { .. } => (DeliveryStatus::Accepted, None),
        };
        let answer = delivery.answer(jobs, cancelled);
        let ids: Vec<String> = jobs.iter().map(|j| j.id.to_string()).collect();
        rows.push(DeliveryRow {
            delivery,
            status,
            error,
            job_ids: serde_json::to_string(&ids).unwrap_or_else(|_| "[]".into()),
            response: serde_json::to_string(&answer).unwrap_or_default(),
        });
        receipts.push(DeliveryReceipt {
            duplicate: false,
            status,
            answer,
        });
    }
    (rows, receipts)
}

/// A batch planned whole as new (`AllNew::numbered`), for a store that writes it in one
/// statement (Postgres, where round trips are what a batch costs). Its jobs carry ids the
/// store took beforehand, so every answer is written with its delivery. The store writes it
/// only if what the plan assumed still holds when it does (no copy of a delivery recorded,
/// no live job of a key), and otherwise fails the statement, so that the batch is recorded
/// by `accept` after all.
pub(super) struct Fresh<'a> {
    /// In key order, so that concurrent writers lock alike.
    pub jobs: Vec<(JobId, JobRow<'a>)>,
    /// Every job's `created_at` and `updated_at`.
    pub created_at: DateTime<Utc>,
    pub events: Vec<CreationEvent>,
    pub deliveries: Vec<DeliveryRow<'a>>,
    pub people: Vec<PersonRow<'a>>,
    pub receipts: Vec<DeliveryReceipt>,
}

/// The event a job is created with.
pub(super) struct CreationEvent {
    pub job_id: JobId,
    pub to: JobState,
    pub actor: String,
    pub detail: String,
}

/// A batch that may be written as new (`all_new`), its steps laid out, waiting for the
/// ids its jobs are numbered with (`numbered`).
pub(super) struct AllNew<'a, 'b> {
    deliveries: &'b [&'a NewDelivery],
    requests: Vec<Request<'a>>,
}

/// The batch, when it may be written as new; `None` where it needs what only `accept`
/// does: a dedupe lookup beyond the stored key (an unsigned id's replay window), a cancel
/// rule or an undo, or two deliveries or two steps of one key (the later resolves to the
/// earlier).
pub(super) fn all_new<'a, 'b>(deliveries: &'b [&'a NewDelivery]) -> Option<AllNew<'a, 'b>> {
    let mut keys = HashSet::new();
    for delivery in deliveries {
        let plain = match &delivery.content {
            DeliveryContent::Accepted { cancels, undo, .. } => cancels.is_empty() && undo.is_none(),
            DeliveryContent::Unmappable { .. } => true,
        };
        if !plain
            || delivery.replay_since().is_some()
            || !keys.insert((&delivery.source, &delivery.delivery_id))
        {
            return None;
        }
    }
    let requests = requests(deliveries);
    let mut steps = HashSet::new();
    requests
        .iter()
        .all(|r| steps.insert(key_of(r)))
        .then_some(AllNew {
            deliveries,
            requests,
        })
}

impl<'a> AllNew<'a, '_> {
    /// How many job ids `numbered` takes: one per step.
    pub(super) fn steps(&self) -> usize {
        self.requests.len()
    }

    /// The batch planned as new, exactly as `accept` would record it were none of it
    /// recorded before and no live job in the way, its jobs numbered from `ids` (`steps` of
    /// them) and created `now`.
    pub(super) fn numbered(self, ids: &[JobId], now: DateTime<Utc>) -> Fresh<'a> {
        debug_assert_eq!(ids.len(), self.requests.len(), "one id per step");
        let AllNew {
            deliveries,
            requests,
        } = self;
        // As Postgres keeps a time (sqlx binds whole microseconds), so that an answer shows
        // what a later read of its job shows.
        let created_at = now.trunc_subsecs(6);
        let mut jobs = Vec::with_capacity(requests.len());
        let mut events = Vec::with_capacity(requests.len());
        let mut named: Vec<Vec<Job>> = deliveries.iter().map(|_| Vec::new()).collect();
        for (r, &id) in requests.iter().zip(ids) {
            let delivery = deliveries[r.delivery];
            let row = job_row(r, delivery, r.previous.map(|p| ids[p]));
            named[r.delivery].push(Job {
                id,
                action: row.action,
                params: r.step.params.clone(),
                state: row.state,
                email: r.chain.email.clone(),
                account_id: r.chain.account_id.clone(),
                depends_on: row.depends_on,
                run_at: row.run_at.trunc_subsecs(6),
                lane: row.lane,
                attempts: 0,
                max_attempts: row.max_attempts,
                last_error: None,
                outcome: None,
                source: Some(row.source.to_owned()),
                rule: Some(row.rule.to_owned()),
                delivery_id: Some(row.delivery_id.to_owned()),
                created_at,
                updated_at: created_at,
                claim_seq: 0,
                lease_owner: None,
                account_type: r.chain.account_type.clone(),
                successor_account_id: None,
                handover: None,
            });
            events.push(CreationEvent {
                job_id: id,
                to: row.state,
                actor: delivery.actor(),
                detail: r.chain.creation_detail(delivery),
            });
            jobs.push((id, row));
        }
        jobs.sort_by(|(_, a), (_, b)| a.key().cmp_key(&b.key()));
        let none: Vec<Vec<JobId>> = deliveries.iter().map(|_| Vec::new()).collect();
        let (rows, receipts) = delivery_rows(deliveries, &named, &none);
        Fresh {
            jobs,
            created_at,
            events,
            deliveries: rows,
            people: people_named(deliveries.iter().copied()),
            receipts,
        }
    }
}

/// The delivery with the undo it asks for planned from the people's jobs as this transaction
/// sees them (README, "Undo on rehire"), those people held until it ends; `None` when it
/// asks for none.
async fn with_undo_planned<W: Writes>(
    tx: &mut W,
    delivery: &NewDelivery,
) -> StoreResult<Option<NewDelivery>> {
    let emails = delivery.undo_emails();
    if emails.is_empty() {
        return Ok(None);
    }
    let jobs = tx.lock_people(&emails).await?;
    Ok(Some(delivery.with_undo_planned(&jobs)))
}

/// Runs the delivery's cancel rules: each person's cancellable jobs, except an undo's
/// inverses, then the later steps of their chains. The ids cancelled, in order.
async fn cancel_for_rules<W: Writes>(
    tx: &mut W,
    delivery: &NewDelivery,
) -> StoreResult<Vec<JobId>> {
    let DeliveryContent::Accepted { cancels, .. } = &delivery.content else {
        return Ok(Vec::new());
    };
    let cancellable = super::rows::cancellable_state_names();
    let actor = delivery.actor();
    let mut cancelled = Vec::new();
    for cancel in cancels {
        let targets = tx
            .cancellable(Cancellable {
                email: cancel.email.as_str(),
                states: &cancellable,
                spare_param: crate::domain::undo::UNDOES,
            })
            .await?;
        let mut direct = cancel_jobs(
            tx,
            &targets,
            &cancel.last_error(),
            &actor,
            &cancel.detail(delivery),
        )
        .await?;
        direct.sort_unstable();
        let mut dependents = cancel_dependents(tx, &direct).await?;
        dependents.sort_unstable();
        cancelled.extend(direct);
        cancelled.extend(dependents);
    }
    Ok(cancelled)
}

/// Cancels `targets` (each live and not running, held by this transaction) with one event
/// each; their ids.
async fn cancel_jobs<W: Writes>(
    tx: &mut W,
    targets: &[(JobId, String)],
    reason: &str,
    actor: &str,
    detail: &str,
) -> StoreResult<Vec<JobId>> {
    if targets.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<JobId> = targets.iter().map(|(id, _)| *id).collect();
    tx.set_cancelled(&ids, reason).await?;
    let detail = super::truncate_detail(detail);
    let mut events = Vec::with_capacity(targets.len());
    for (id, from) in targets {
        events.push(EventRow {
            job_id: *id,
            from: Some(parse_column(from)?),
            to: JobState::Cancelled,
            actor,
            detail,
        });
    }
    tx.insert_events(&events).await?;
    Ok(ids)
}

/// Cancels the live later steps of these jobs' chains, transitively, with one event each:
/// the one cascade, for a cancel rule, a failed step, an expired lease and an operator's
/// cancel alike. The ids cancelled.
pub(super) async fn cancel_dependents<W: Writes>(
    tx: &mut W,
    ids: &[JobId],
) -> StoreResult<Vec<JobId>> {
    let cancellable = super::rows::cancellable_state_names();
    let mut cancelled = Vec::new();
    let mut frontier: Vec<JobId> = ids.to_vec();
    while !frontier.is_empty() {
        let children = tx.children_of(&frontier).await?;
        let live: Vec<(JobId, String)> = children
            .iter()
            .filter(|(_, state)| cancellable.contains(&state.as_str()))
            .cloned()
            .collect();
        cancelled.extend(
            cancel_jobs(
                tx,
                &live,
                PREVIOUS_STEP_FAILED,
                SYSTEM_ACTOR,
                PREVIOUS_STEP_FAILED,
            )
            .await?,
        );
        frontier = children.into_iter().map(|(id, _)| id).collect();
    }
    Ok(cancelled)
}

/// One step a delivery asks for, in rule order.
struct Request<'a> {
    delivery: usize,
    chain: &'a NewChain,
    step: &'a NewStep,
    /// The request of the step before it in its chain.
    previous: Option<usize>,
    target: String,
    wave: usize,
}

/// How many times a wave tries a step whose live job finished between its insert and its
/// read (another transaction's doing, on Postgres).
const ROUNDS: usize = 5;

/// Creates (or finds the live job of) every step of these deliveries; for each delivery,
/// the jobs it names, each once, in the order its rules asked for them.
pub(super) async fn record_jobs<W: Writes>(
    tx: &mut W,
    deliveries: &[&NewDelivery],
) -> StoreResult<Vec<Vec<Job>>> {
    let requests = requests(deliveries);
    let waves = requests.iter().map(|r| r.wave + 1).max().unwrap_or(0);
    let mut resolved: Vec<Option<Job>> = requests.iter().map(|_| None).collect();
    let live = super::rows::live_state_names();
    for wave in 0..waves {
        let mut pending: Vec<usize> = (0..requests.len())
            .filter(|&i| requests[i].wave == wave)
            .collect();
        for _ in 0..ROUNDS {
            if pending.is_empty() {
                break;
            }
            insert_wave(tx, deliveries, &requests, &mut resolved, &pending).await?;
            let blocked: Vec<usize> = pending
                .iter()
                .copied()
                .filter(|&i| resolved[i].is_none())
                .collect();
            if !blocked.is_empty() {
                let keys: Vec<JobKey> = blocked.iter().map(|&i| key_of(&requests[i])).collect();
                let found = tx.live_jobs(&keys, &live).await?;
                let by_key: HashMap<JobKey, &Job> =
                    found.iter().map(|j| (JobKey::of(j), j)).collect();
                for &i in &blocked {
                    resolved[i] = by_key.get(&key_of(&requests[i])).map(|j| (*j).clone());
                }
            }
            pending.retain(|&i| resolved[i].is_none());
        }
        if !pending.is_empty() {
            return Err(StoreError::Batch(RACE.into()));
        }
    }
    let mut named: Vec<Vec<Job>> = deliveries.iter().map(|_| Vec::new()).collect();
    let mut seen: Vec<HashSet<JobId>> = deliveries.iter().map(|_| HashSet::new()).collect();
    for (request, job) in requests.iter().zip(resolved) {
        let job = job.expect("every wave resolved");
        if seen[request.delivery].insert(job.id) {
            named[request.delivery].push(job);
        }
    }
    Ok(named)
}

fn key_of<'a>(request: &'a Request<'a>) -> JobKey<'a> {
    JobKey {
        action: request.step.action,
        email: request.chain.email.as_str(),
        target: request.target.clone(),
    }
}

/// Every step, in rule order, with its wave: after the step before it in its chain, and
/// after every earlier step with the same key.
fn requests<'a>(deliveries: &[&'a NewDelivery]) -> Vec<Request<'a>> {
    let mut requests: Vec<Request> = Vec::new();
    let mut last_of_key: HashMap<(Action, &str, String), usize> = HashMap::new();
    for (d, delivery) in deliveries.iter().enumerate() {
        for chain in delivery.content.all_chains() {
            let mut previous: Option<usize> = None;
            for step in &chain.steps {
                let target = step.key_target();
                let key = (step.action, chain.email.as_str(), target.clone());
                let after_previous = previous.map_or(0, |p| requests[p].wave + 1);
                let after_same = last_of_key.get(&key).map_or(0, |&s| requests[s].wave + 1);
                let index = requests.len();
                requests.push(Request {
                    delivery: d,
                    chain,
                    step,
                    previous,
                    target,
                    wave: after_previous.max(after_same),
                });
                last_of_key.insert(key, index);
                previous = Some(index);
            }
        }
    }
    requests
}

/// Inserts the wave's unresolved steps (in key order, so that concurrent batches lock
/// alike) with their creation events; marks the ones inserted resolved.
async fn insert_wave<W: Writes>(
    tx: &mut W,
    deliveries: &[&NewDelivery],
    requests: &[Request<'_>],
    resolved: &mut [Option<Job>],
    pending: &[usize],
) -> StoreResult<()> {
    let mut order: Vec<usize> = pending.to_vec();
    order.sort_by(|&a, &b| key_of(&requests[a]).cmp_key(&key_of(&requests[b])));
    let rows: Vec<JobRow> = order
        .iter()
        .map(|&i| {
            let r = &requests[i];
            let depends_on = r.previous.and_then(|p| resolved[p].as_ref()).map(|j| j.id);
            job_row(r, deliveries[r.delivery], depends_on)
        })
        .collect();
    let created = tx.insert_jobs(&rows).await?;
    if created.is_empty() {
        return Ok(());
    }
    let by_key: HashMap<JobKey, &Job> = created.iter().map(|j| (JobKey::of(j), j)).collect();
    let mut details = Vec::new();
    let mut made = Vec::new();
    for &i in &order {
        if let Some(job) = by_key.get(&key_of(&requests[i])) {
            let delivery = deliveries[requests[i].delivery];
            details.push((
                job.id,
                job.state,
                delivery.actor(),
                requests[i].chain.creation_detail(delivery),
            ));
            made.push((i, (*job).clone()));
        }
    }
    let events: Vec<EventRow> = details
        .iter()
        .map(|(id, state, actor, detail)| EventRow {
            job_id: *id,
            from: None,
            to: *state,
            actor,
            detail,
        })
        .collect();
    tx.insert_events(&events).await?;
    for (i, job) in made {
        resolved[i] = Some(job);
    }
    Ok(())
}

/// The row of a requested step, after `depends_on`.
fn job_row<'a>(
    r: &Request<'a>,
    delivery: &'a NewDelivery,
    depends_on: Option<JobId>,
) -> JobRow<'a> {
    JobRow {
        action: r.step.action,
        params: r.step.params_json(),
        target: r.target.clone(),
        state: r.chain.initial_state(),
        email: r.chain.email.as_str(),
        account_id: r.chain.account_id.as_deref(),
        account_type: r.chain.account_type.as_deref(),
        depends_on,
        run_at: r.step.run_at,
        lane: r.step.lane,
        max_attempts: delivery.max_attempts,
        source: &delivery.source,
        rule: &r.chain.rule,
        delivery_id: &delivery.delivery_id,
    }
}

impl JobRow<'_> {
    fn key(&self) -> JobKey<'_> {
        JobKey {
            action: self.action,
            email: self.email,
            target: self.target.clone(),
        }
    }
}

impl JobKey<'_> {
    fn cmp_key(&self, other: &JobKey) -> std::cmp::Ordering {
        (self.action.as_str(), self.email, &self.target).cmp(&(
            other.action.as_str(),
            other.email,
            &other.target,
        ))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Map;

    use super::*;
    use crate::domain::{Email, NewCancel};

    fn chain(email: &str, actions: &[Action]) -> NewChain {
        NewChain {
            email: Email::parse(email).unwrap(),
            account_id: None,
            account_type: None,
            rule: "leaver".into(),
            approval: false,
            steps: actions
                .iter()
                .map(|&action| NewStep {
                    action,
                    params: Map::new(),
                    run_at: Utc::now(),
                    lane: Lane::Urgent,
                })
                .collect(),
        }
    }

    fn delivery(id: &str, chains: Vec<NewChain>) -> NewDelivery {
        NewDelivery::signed("hr", id, chains)
    }

    const TWO: [Action; 2] = [Action::SuspendAccess, Action::DeactivateAccount];

    #[test]
    fn a_batch_of_new_deliveries_is_planned_whole_with_the_ids_given() {
        let a = delivery("a", vec![chain("a@example.com", &TWO)]);
        let b = delivery("b", vec![chain("b@example.com", &TWO[..1])]);
        let batch = [&a, &b];
        let all_new = all_new(&batch).expect("all new");
        assert_eq!(all_new.steps(), 3);
        let ids = [JobId(7), JobId(8), JobId(9)];
        let fresh = all_new.numbered(&ids, Utc::now());
        let answered: Vec<Vec<(JobId, Option<JobId>)>> = fresh
            .receipts
            .iter()
            .map(|r| {
                r.answer
                    .jobs()
                    .iter()
                    .map(|j| (j.id, j.depends_on))
                    .collect()
            })
            .collect();
        // Numbered in rule order; the second step waits for the first.
        assert_eq!(
            answered,
            [
                vec![(JobId(7), None), (JobId(8), Some(JobId(7)))],
                vec![(JobId(9), None)]
            ]
        );
        assert_eq!(fresh.events.len(), 3);
        assert_eq!(fresh.deliveries.len(), 2);
        assert_eq!(fresh.people.len(), 2);
    }

    #[test]
    fn what_needs_the_transaction_is_not_planned_whole() {
        let plain = delivery("a", vec![chain("a@example.com", &TWO)]);
        let copy = delivery("a", vec![chain("c@example.com", &TWO)]);
        assert!(
            all_new(&[&plain, &copy]).is_none(),
            "two deliveries of one key"
        );
        let same_person = delivery("b", vec![chain("a@example.com", &TWO[..1])]);
        assert!(
            all_new(&[&plain, &same_person]).is_none(),
            "two steps of one key"
        );
        let unsigned = NewDelivery {
            dedupe: Dedupe::UnsignedId {
                replay_since: Utc::now(),
            },
            ..delivery("u", vec![chain("u@example.com", &TWO)])
        };
        assert!(all_new(&[&unsigned]).is_none(), "a replay window");
        let mut cancelling = delivery("c", Vec::new());
        if let DeliveryContent::Accepted { cancels, .. } = &mut cancelling.content {
            cancels.push(NewCancel {
                email: Email::parse("a@example.com").unwrap(),
                rule: "rehired".into(),
            });
        }
        assert!(all_new(&[&cancelling]).is_none(), "a cancel rule");
        let unmappable = NewDelivery {
            content: DeliveryContent::Unmappable {
                error: "no rule".into(),
            },
            ..delivery("x", Vec::new())
        };
        assert_eq!(all_new(&[&plain, &unmappable]).map(|b| b.steps()), Some(2));
    }
}
