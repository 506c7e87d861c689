//! Rows of the store as the rest of offboard sees them, shaped like the JSON of the API.

use std::collections::HashSet;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

pub use crate::domain::Refusal;
use crate::domain::{
    Action, Answer, DeliveryAnswer, Job, JobId, JobState, ManualSource, NewCancel, NewChain,
    Outcome, Safety, id_as_string, time_as_rfc3339, undo::Undo,
};

/// A claimed job that succeeded, to be recorded.
#[derive(Clone, Debug)]
pub struct Completion {
    pub job: Job,
    pub outcome: Outcome,
    pub detail: String,
}

/// The account a claimed job resolved, to be recorded before its mutating call.
#[derive(Clone, Debug)]
pub struct AccountRecord {
    pub job: Job,
    pub account_id: String,
    pub account_type: String,
    /// A hand-over's successor, recorded with the account; `None` keeps what the job has.
    pub successor_account_id: Option<String>,
}

/// Filters of `jobs list` and `GET /api/v1/jobs`.
#[derive(Clone, Debug, Default)]
pub struct JobFilter {
    pub state: Option<JobState>,
    /// Matched case-insensitively.
    pub email: Option<String>,
    pub action: Option<Action>,
    /// Only jobs with a smaller id (the next page of a newest-first listing).
    pub before: Option<JobId>,
    pub limit: u32,
}

/// More steps than this make a delivery a bulk request (`NewDelivery::is_bulk`): no rule
/// maps a webhook to that many, and a request of that many takes long enough to write that
/// a webhook waiting behind it would notice.
pub(crate) const BULK_STEPS: usize = 100;

/// A verified delivery, mapped by the rules, ready to be recorded.
#[derive(Clone, Debug)]
pub struct NewDelivery {
    pub source: String,
    /// The sender's id as the API shows it (or the body's hash where there is none).
    pub delivery_id: String,
    pub body_sha256: String,
    /// How to tell whether it was recorded before.
    pub dedupe: Dedupe,
    pub received_at: DateTime<Utc>,
    /// The `max_attempts` of every job it creates.
    pub max_attempts: i32,
    pub content: DeliveryContent,
}

/// How a delivery is told apart from those recorded before it (README, "Repeated deliveries"). Decided by
/// the receiver from where the id came from; both stores apply it as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dedupe {
    /// The sender signs the delivery id: the id alone names the delivery, and the same id
    /// with another body is still a repeat.
    SignedId,
    /// Anybody could have written the id. The same id is a repeat only with the same body
    /// (another body is a new delivery, so a genuine one that reuses an id is not dropped),
    /// and a body accepted from the source at or after `replay_since` is a repeat whatever
    /// its id (so a captured body sent again under a fresh id creates nothing).
    UnsignedId { replay_since: DateTime<Utc> },
}

impl NewDelivery {
    /// A delivery with a signed id, received now, asking for `chains` and nothing else (no
    /// cancel, refusal, approval or undo), its jobs tried three times: what benchmarks and
    /// tests hand the store directly. A field set otherwise is set with `..`.
    pub fn signed(source: &str, delivery_id: &str, chains: Vec<NewChain>) -> NewDelivery {
        NewDelivery {
            source: source.to_owned(),
            delivery_id: delivery_id.to_owned(),
            body_sha256: "0".repeat(64),
            dedupe: Dedupe::SignedId,
            received_at: Utc::now(),
            max_attempts: 3,
            content: DeliveryContent::Accepted {
                cancels: Vec::new(),
                chains,
                refused: Vec::new(),
                approval_required: None,
                undo: None,
            },
        }
    }

    /// The body part of the stored dedupe key `(source, delivery_id, key_body_sha256)`:
    /// empty where the id alone is the key.
    pub(crate) fn key_body_sha256(&self) -> &str {
        match self.dedupe {
            Dedupe::SignedId => "",
            Dedupe::UnsignedId { .. } => &self.body_sha256,
        }
    }

    /// Since when an accepted copy of the body makes this delivery a repeat.
    pub(crate) fn replay_since(&self) -> Option<DateTime<Utc>> {
        match self.dedupe {
            Dedupe::SignedId => None,
            Dedupe::UnsignedId { replay_since } => Some(replay_since),
        }
    }

    /// The actor of the events this delivery writes: `source:<name>` for a webhook, the
    /// manual source itself (`api`, `cli`, `console`) for jobs enqueued by hand.
    pub(crate) fn actor(&self) -> String {
        match ManualSource::named(&self.source) {
            Some(manual) => manual.as_str().to_owned(),
            None => format!("source:{}", self.source),
        }
    }

    /// This delivery's answer once recorded: the jobs it names and the jobs it cancelled.
    pub(crate) fn answer(&self, jobs: &[Job], cancelled: &[JobId]) -> Answer {
        match &self.content {
            DeliveryContent::Unmappable { error } => Answer::unmappable(error),
            DeliveryContent::Accepted {
                refused,
                approval_required,
                undo,
                ..
            } => {
                let is_undo = |job: &&Job| {
                    undo.as_ref().is_some_and(|undo| {
                        undo.chains.iter().any(|chain| {
                            chain.email == job.email
                                && chain.steps.iter().any(|step| {
                                    step.action == job.action
                                        && step.key_target() == job.key_target()
                                })
                        })
                    })
                };
                let (given_back, jobs): (Vec<&Job>, Vec<&Job>) = jobs.iter().partition(is_undo);
                Answer::Accepted(DeliveryAnswer {
                    delivery_id: self.delivery_id.clone(),
                    duplicate: false,
                    jobs: jobs.into_iter().cloned().collect(),
                    cancelled: cancelled.iter().map(|id| id.to_string()).collect(),
                    refused: refused.clone(),
                    approval_required: approval_required.clone(),
                    undo: undo
                        .as_ref()
                        .map(|_| given_back.into_iter().cloned().collect()),
                    irreversible: undo.as_ref().map(|undo| undo.irreversible.clone()),
                })
            }
        }
    }

    /// The people whose jobs the store reads, inside the transaction that records this
    /// delivery, to plan the undo it asks for; none when it asks for none.
    pub(crate) fn undo_emails(&self) -> Vec<&str> {
        match &self.content {
            DeliveryContent::Accepted {
                undo: Some(undo), ..
            } => {
                let mut emails: Vec<&str> = undo.asked_emails().map(|e| e.as_str()).collect();
                // Sorted, so that transactions locking them lock in one order.
                emails.sort_unstable();
                emails.dedup();
                emails
            }
            DeliveryContent::Accepted { undo: None, .. } | DeliveryContent::Unmappable { .. } => {
                Vec::new()
            }
        }
    }

    /// This delivery with the undo it asks for planned from `jobs` (every job of its
    /// `undo_emails`, read inside the transaction that records it), and the mass-approval
    /// guard applied again with the inverses counted.
    pub(crate) fn with_undo_planned(&self, jobs: &[Job]) -> NewDelivery {
        let mut planned = self.clone();
        let limit = match &mut planned.content {
            DeliveryContent::Accepted {
                undo: Some(undo), ..
            } => {
                let limit = undo.asked.iter().map(|asked| asked.approval_above).min();
                undo.plan_asked(jobs, self.received_at);
                limit
            }
            DeliveryContent::Accepted { undo: None, .. } | DeliveryContent::Unmappable { .. } => {
                None
            }
        };
        if let Some(limit) = limit {
            planned.content.require_approval_above(limit);
        }
        planned
    }

    /// Whether this is a bulk request, which is never written in the webhooks' batches nor
    /// holds the writer they wait for (README, "Bulk requests and webhooks"): more than
    /// `BULK_STEPS` steps, and neither a cancellation nor an undo (which only webhooks have).
    pub(crate) fn is_bulk(&self) -> bool {
        match &self.content {
            DeliveryContent::Accepted {
                cancels,
                chains,
                undo,
                ..
            } => {
                cancels.is_empty()
                    && undo.is_none()
                    && chains.iter().map(|chain| chain.steps.len()).sum::<usize>() > BULK_STEPS
            }
            DeliveryContent::Unmappable { .. } => false,
        }
    }

    /// A bulk request's chains in chunks of at most `chunk_steps` steps (a chain is never
    /// split), for a store that records it one chunk per transaction; `None` when it is not
    /// a bulk request.
    pub(crate) fn bulk_chunks(&self, chunk_steps: usize) -> Option<Vec<&[NewChain]>> {
        let DeliveryContent::Accepted { chains, .. } = &self.content else {
            return None;
        };
        if !self.is_bulk() {
            return None;
        }
        let mut chunks = Vec::new();
        let (mut start, mut in_chunk) = (0, 0);
        for (i, chain) in chains.iter().enumerate() {
            if in_chunk > 0 && in_chunk + chain.steps.len() > chunk_steps {
                chunks.push(&chains[start..i]);
                (start, in_chunk) = (i, 0);
            }
            in_chunk += chain.steps.len();
        }
        chunks.push(&chains[start..]);
        Some(chunks)
    }

    /// This delivery asking for `chains` only: one chunk of a bulk request.
    pub(crate) fn with_chains(&self, chains: &[NewChain]) -> NewDelivery {
        let content = match &self.content {
            DeliveryContent::Accepted {
                refused,
                approval_required,
                ..
            } => DeliveryContent::Accepted {
                cancels: Vec::new(),
                chains: chains.to_vec(),
                refused: refused.clone(),
                approval_required: approval_required.clone(),
                undo: None,
            },
            DeliveryContent::Unmappable { error } => DeliveryContent::Unmappable {
                error: error.clone(),
            },
        };
        NewDelivery {
            source: self.source.clone(),
            delivery_id: self.delivery_id.clone(),
            body_sha256: self.body_sha256.clone(),
            dedupe: self.dedupe,
            received_at: self.received_at,
            max_attempts: self.max_attempts,
            content,
        }
    }

    /// Why every job of this delivery waits for approval, when it is a mass offboarding.
    pub fn approval_required(&self) -> Option<&str> {
        self.content.approval_reason()
    }
}

#[derive(Clone, Debug)]
pub enum DeliveryContent {
    /// A matching rule could not map the payload: recorded so a retry gets the same answer.
    Unmappable { error: String },
    Accepted {
        cancels: Vec<NewCancel>,
        chains: Vec<NewChain>,
        refused: Vec<Refusal>,
        /// Set by [`DeliveryContent::require_approval_above`]: why every chain waits for
        /// approval. Part of the answer.
        approval_required: Option<String>,
        /// What a cancel rule with `undo = true` gives back: chains of inverses, recorded
        /// like `chains` but answered apart (`undo`), and what cannot be undone.
        undo: Option<Undo>,
    },
}

impl DeliveryContent {
    /// What a delivery asks for, through the guards every way of enqueueing shares:
    /// protected people are refused before any job exists, and more jobs than
    /// `approval_above` all wait for approval.
    ///
    /// `undo` gives back to people whose offboarding a cancel rule called off: it is not
    /// refused for protected people (the worker's guards still hold for every call).
    pub fn guarded(
        cancels: Vec<NewCancel>,
        chains: Vec<NewChain>,
        undo: Option<Undo>,
        safety: &Safety,
    ) -> Self {
        let mut allowed = Vec::with_capacity(chains.len());
        let mut refused: Vec<Refusal> = Vec::new();
        for chain in chains {
            let Some(reason) = safety.protects_email(chain.email.as_str()) else {
                allowed.push(chain);
                continue;
            };
            let refusal = Refusal {
                email: chain.email.as_str().to_owned(),
                reason: reason.to_owned(),
            };
            if !refused.contains(&refusal) {
                tracing::warn!(rule = %chain.rule, reason, "refused a protected person");
                refused.push(refusal);
            }
        }
        let mut content = DeliveryContent::Accepted {
            cancels,
            chains: allowed,
            refused,
            approval_required: None,
            undo,
        };
        content.require_approval_above(safety.approval_above);
        if let Some(reason) = content.approval_reason() {
            tracing::warn!(reason, "mass offboarding: every job waits for approval");
        }
        content
    }

    /// Every chain to record: the rules' and the undo's.
    pub fn all_chains(&self) -> impl Iterator<Item = &NewChain> {
        let (chains, undo): (&[NewChain], &[NewChain]) = match self {
            DeliveryContent::Accepted { chains, undo, .. } => {
                (chains, undo.as_ref().map_or(&[][..], |u| &u.chains[..]))
            }
            DeliveryContent::Unmappable { .. } => (&[], &[]),
        };
        chains.iter().chain(undo)
    }

    fn approval_reason(&self) -> Option<&str> {
        match self {
            DeliveryContent::Accepted {
                approval_required, ..
            } => approval_required.as_deref(),
            DeliveryContent::Unmappable { .. } => None,
        }
    }

    /// Mass offboarding needs a person (README, "Mass offboarding needs a person"): when the
    /// delivery would create more than `approval_above` jobs, every one of them starts
    /// awaiting approval, whatever its rule says, and the answer says why.
    ///
    /// Jobs are counted as the delivery asks for them: every step of every chain (an undo's
    /// included), each (action, person, target) once, as the store creates them. A live job
    /// that already exists and would be returned instead counts too: which ones exist is
    /// known only inside the store's transaction, and counting them errs towards asking a
    /// person. Such a job keeps its state.
    pub fn require_approval_above(&mut self, approval_above: u64) {
        let DeliveryContent::Accepted {
            chains,
            approval_required,
            undo,
            ..
        } = self
        else {
            return;
        };
        let undo_chains = undo.as_mut().map_or(&mut [][..], |u| &mut u.chains[..]);
        let asked: HashSet<(Action, &str, String)> = chains
            .iter()
            .chain(undo_chains.iter())
            .flat_map(|chain| {
                chain
                    .steps
                    .iter()
                    .map(|step| (step.action, chain.email.as_str(), step.key_target()))
            })
            .collect();
        let count = asked.len() as u64;
        if count <= approval_above {
            return;
        }
        for chain in chains.iter_mut().chain(undo_chains.iter_mut()) {
            chain.approval = true;
        }
        *approval_required = Some(format!(
            "this delivery would create {count} jobs, more than [safety] approval_above = \
             {approval_above}: every one of them waits for approval"
        ));
    }
}

impl NewChain {
    /// The state its jobs start in.
    pub(crate) fn initial_state(&self) -> JobState {
        if self.approval {
            JobState::AwaitingApproval
        } else {
            JobState::Pending
        }
    }

    /// The detail of each of its jobs' creation event.
    pub(crate) fn creation_detail(&self, delivery: &NewDelivery) -> String {
        let mut detail = format!(
            "created by rule {} of source {} (delivery {})",
            self.rule, delivery.source, delivery.delivery_id
        );
        if let Some(reason) = delivery.approval_required() {
            detail.push_str("; ");
            detail.push_str(reason);
        }
        super::truncate_detail(&detail).to_owned()
    }
}

impl NewCancel {
    /// The `last_error` of the jobs it cancels.
    pub(crate) fn last_error(&self) -> String {
        super::truncate_detail(&format!("cancelled by rule {}", self.rule)).to_owned()
    }

    /// The detail of their cancellation events.
    pub(crate) fn detail(&self, delivery: &NewDelivery) -> String {
        let detail = format!(
            "cancelled by rule {} of source {} (delivery {})",
            self.rule, delivery.source, delivery.delivery_id
        );
        super::truncate_detail(&detail).to_owned()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Accepted,
    Unmappable,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Unmappable => "unmappable",
        }
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "accepted" => Ok(DeliveryStatus::Accepted),
            "unmappable" => Ok(DeliveryStatus::Unmappable),
            other => Err(format!("unknown delivery status `{other}`")),
        }
    }
}

/// What recording a delivery produced: the answer, now and on every repetition of the same
/// delivery.
#[derive(Clone, Debug)]
pub struct DeliveryReceipt {
    pub duplicate: bool,
    pub status: DeliveryStatus,
    pub answer: Answer,
}

impl DeliveryReceipt {
    /// Whether this is a first answer naming jobs, which may now be due: the worker is
    /// woken for it.
    pub(crate) fn may_have_made_jobs_due(&self) -> bool {
        !self.duplicate && !self.answer.jobs().is_empty()
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.answer
            .jobs()
            .iter()
            .map(|job| job.id.to_string())
            .collect()
    }

    /// The answer as JSON, as HTTP sends it.
    pub fn body(&self) -> Value {
        self.answer.to_value()
    }
}

/// A recorded delivery, as listed by the admin API.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Delivery {
    #[serde(serialize_with = "id_as_string")]
    #[schema(value_type = String)]
    pub id: i64,
    pub source: String,
    pub delivery_id: String,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub received_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub error: Option<String>,
    pub job_ids: Vec<String>,
    /// Why every job of this delivery waits for approval (a mass offboarding), else null.
    pub approval_required: Option<String>,
}

pub(crate) fn parse_column<T: FromStr<Err = String>>(text: &str) -> Result<T, super::StoreError> {
    text.parse().map_err(super::StoreError::Corrupt)
}

pub(crate) fn parse_params(text: &str) -> Result<Map<String, Value>, super::StoreError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(super::StoreError::Corrupt(format!(
            "job params are not a JSON object: {text}"
        ))),
    }
}

/// Turns a stored response into the answer to a repeated delivery.
pub(crate) fn duplicate_receipt(
    status: &str,
    response: &str,
) -> Result<DeliveryReceipt, super::StoreError> {
    let status: DeliveryStatus = parse_column(status)?;
    let mut answer: Answer = serde_json::from_str(response).map_err(|e| {
        super::StoreError::Corrupt(format!("stored response is not an answer: {e}"))
    })?;
    if let Answer::Accepted(accepted) = &mut answer {
        accepted.duplicate = true;
    }
    Ok(DeliveryReceipt {
        duplicate: true,
        status,
        answer,
    })
}

pub(crate) fn parse_job_ids(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A claimed job put back to pending (`Store::retry_later`).
#[derive(Clone, Copy, Debug)]
pub struct PutBack<'a> {
    pub run_at: DateTime<Utc>,
    pub refund_attempt: bool,
    pub error: Option<&'a str>,
    pub detail: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, NewStep};

    fn chain(i: usize, steps: usize) -> NewChain {
        NewChain {
            email: Email::parse(&format!("p{i}@example.com")).unwrap(),
            account_id: None,
            account_type: None,
            rule: "manual".into(),
            approval: false,
            steps: (0..steps)
                .map(|_| NewStep {
                    action: Action::SuspendAccess,
                    params: Map::new(),
                    run_at: Utc::now(),
                    lane: crate::domain::Lane::Bulk,
                })
                .collect(),
        }
    }

    fn delivery(chains: Vec<NewChain>, cancels: Vec<NewCancel>) -> NewDelivery {
        NewDelivery {
            source: "api".into(),
            delivery_id: "k".into(),
            body_sha256: String::new(),
            dedupe: Dedupe::SignedId,
            received_at: Utc::now(),
            max_attempts: 3,
            content: DeliveryContent::Accepted {
                cancels,
                chains,
                refused: Vec::new(),
                approval_required: None,
                undo: None,
            },
        }
    }

    #[test]
    fn a_bulk_request_is_cut_into_chunks_between_chains() {
        // 3-step chains: 34 of them make 102 steps, over BULK_STEPS.
        let chains: Vec<NewChain> = (0..34).map(|i| chain(i, 3)).collect();
        let bulk = delivery(chains, Vec::new());
        assert!(bulk.is_bulk());
        let chunks = bulk.bulk_chunks(10).unwrap();
        // Three chains (9 steps) fit in 10; a fourth would not.
        assert!(
            chunks
                .iter()
                .all(|c| c.iter().map(|c| c.steps.len()).sum::<usize>() <= 10)
        );
        assert_eq!(chunks.len(), 12);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 34);
        let emails: Vec<&str> = chunks
            .iter()
            .flat_map(|c| c.iter())
            .map(|c| c.email.as_str())
            .collect();
        let expected: Vec<String> = (0..34).map(|i| format!("p{i}@example.com")).collect();
        assert_eq!(emails, expected, "in order, each once");

        // A chain longer than a chunk is a chunk of its own, whole.
        let long = delivery(vec![chain(0, 2), chain(1, 120), chain(2, 2)], Vec::new());
        let sizes: Vec<usize> = long
            .bulk_chunks(100)
            .unwrap()
            .iter()
            .map(|c| c.len())
            .collect();
        assert_eq!(sizes, vec![1, 1, 1]);
    }

    #[test]
    fn small_requests_and_cancellations_are_not_bulk() {
        let small = delivery((0..BULK_STEPS).map(|i| chain(i, 1)).collect(), Vec::new());
        assert!(!small.is_bulk());
        assert!(small.bulk_chunks(10).is_none());
        let cancel = NewCancel {
            email: Email::parse("a@example.com").unwrap(),
            rule: "rehire".into(),
        };
        let with_cancel = delivery(
            (0..=BULK_STEPS).map(|i| chain(i, 1)).collect(),
            vec![cancel],
        );
        assert!(!with_cancel.is_bulk());
        let big = delivery((0..=BULK_STEPS).map(|i| chain(i, 1)).collect(), Vec::new());
        assert!(big.is_bulk());
    }
}
