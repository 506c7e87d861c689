//! Rows of the store as the rest of offboard sees them, shaped like the JSON of the API.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::email::Email;
use crate::jobs::{Action, JobState, Outcome};

/// Jobs are numbered by the database; the API shows the number as an opaque string.
pub type JobId = i64;

/// Parses a job id as given on the command line or in a URL.
pub fn parse_job_id(text: &str) -> Result<JobId, String> {
    text.trim()
        .parse::<JobId>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| format!("`{text}` is not a job id"))
}

fn id_as_string<S: Serializer>(id: &JobId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn opt_id_as_string<S: Serializer>(id: &Option<JobId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Times in the API are RFC 3339 UTC with a `Z`.
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn time_as_rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(at))
}

/// One job as stored (the job JSON of the README's HTTP API).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Job {
    /// Opaque id.
    #[serde(serialize_with = "id_as_string")]
    #[schema(value_type = String)]
    pub id: JobId,
    pub action: Action,
    /// Action parameters such as `group_id`; `{}` when none.
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub state: JobState,
    pub email: String,
    pub account_id: Option<String>,
    /// The earlier step of the chain this job waits for.
    #[serde(serialize_with = "opt_id_as_string")]
    #[schema(value_type = Option<String>)]
    pub depends_on: Option<JobId>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub run_at: DateTime<Utc>,
    pub attempts: i32,
    pub max_attempts: i32,
    pub last_error: Option<String>,
    pub outcome: Option<Outcome>,
    pub source: Option<String>,
    pub rule: Option<String>,
    pub delivery_id: Option<String>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub updated_at: DateTime<Utc>,
    /// Which claim of this job a worker holds; internal, not part of the API.
    #[serde(skip)]
    pub claim_seq: i64,
    /// The worker holding the lease while running; internal.
    #[serde(skip)]
    pub lease_owner: Option<String>,
    /// Set once `account_id` was resolved from Atlassian (a lookup, or an earlier step of the
    /// chain): the job then acts on that account without searching by email again. Without
    /// it, an `account_id` is the payload's claim, to be checked against the lookup. Internal.
    #[serde(skip)]
    pub account_type: Option<String>,
}

impl Job {
    /// The string value of an action parameter such as `group_id`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }
}

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
}

/// One entry of a job's audit trail.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobEvent {
    #[serde(serialize_with = "time_as_rfc3339")]
    pub at: DateTime<Utc>,
    pub from: Option<JobState>,
    pub to: JobState,
    pub actor: String,
    pub detail: String,
}

/// A job with its audit trail, oldest event first; creation is the first event.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct JobWithEvents {
    #[serde(flatten)]
    pub job: Job,
    pub events: Vec<JobEvent>,
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

    /// Why every job of this delivery waits for approval, when it is a mass offboarding.
    pub fn approval_required(&self) -> Option<&str> {
        match &self.content {
            DeliveryContent::Accepted {
                approval_required, ..
            } => approval_required.as_deref(),
            DeliveryContent::Unmappable { .. } => None,
        }
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
    },
}

impl DeliveryContent {
    /// Mass offboarding needs a person (README, "Mass offboarding needs a person"): when the delivery would create more
    /// than `approval_above` jobs, every one of them starts awaiting approval, whatever its
    /// rule says, and the answer says why.
    ///
    /// Jobs are counted as the delivery asks for them: every step of every chain, each
    /// (action, person) once, as the store creates them. A live job that already exists and
    /// would be returned instead counts too: which ones exist is known only inside the store's
    /// transaction, and counting them errs towards asking a person. Such a job keeps its state.
    pub fn require_approval_above(&mut self, approval_above: u64) {
        let DeliveryContent::Accepted {
            chains,
            approval_required,
            ..
        } = self
        else {
            return;
        };
        let asked: HashSet<(Action, &str)> = chains
            .iter()
            .flat_map(|chain| {
                chain
                    .steps
                    .iter()
                    .map(|step| (step.action, chain.email.as_str()))
            })
            .collect();
        let count = asked.len() as u64;
        if count <= approval_above {
            return;
        }
        for chain in chains.iter_mut() {
            chain.approval = true;
        }
        *approval_required = Some(format!(
            "this delivery would create {count} jobs, more than [safety] approval_above = \
             {approval_above}: every one of them waits for approval"
        ));
    }
}

/// The steps of one rule for one person: each later step runs only after the earlier one
/// succeeded.
#[derive(Clone, Debug)]
pub struct NewChain {
    pub email: Email,
    pub account_id: Option<String>,
    pub rule: String,
    pub approval: bool,
    pub max_attempts: i32,
    pub steps: Vec<NewStep>,
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

#[derive(Clone, Debug)]
pub struct NewStep {
    pub action: Action,
    pub params: Map<String, Value>,
    pub run_at: DateTime<Utc>,
}

impl NewStep {
    /// The `params` column: a JSON object.
    pub(crate) fn params_json(&self) -> String {
        serde_json::to_string(&self.params).unwrap_or_else(|_| "{}".into())
    }
}

/// A `cancel = true` rule matched for this person.
#[derive(Clone, Debug)]
pub struct NewCancel {
    pub email: Email,
    pub rule: String,
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

/// A person the delivery named whom we refused to enqueue (e.g. a protected email).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refusal {
    pub email: String,
    pub reason: String,
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

/// What recording a delivery produced: the HTTP body to answer with, now and on every
/// repetition of the same delivery.
#[derive(Clone, Debug)]
pub struct DeliveryReceipt {
    pub duplicate: bool,
    pub status: DeliveryStatus,
    /// For `accepted`: `{"delivery_id","duplicate","jobs","cancelled","refused"}`;
    /// for `unmappable`: `{"error":"unmappable","message"}`.
    pub body: Value,
}

impl DeliveryReceipt {
    /// Whether this is a first answer naming jobs, which may now be due: the worker is
    /// woken for it.
    pub(crate) fn may_have_made_jobs_due(&self) -> bool {
        !self.duplicate
            && self
                .body
                .get("jobs")
                .and_then(Value::as_array)
                .is_some_and(|jobs| !jobs.is_empty())
    }

    pub fn job_ids(&self) -> Vec<String> {
        self.body
            .get("jobs")
            .and_then(Value::as_array)
            .map(|jobs| {
                jobs.iter()
                    .filter_map(|job| job.get("id").and_then(Value::as_str).map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PauseReason {
    Manual,
    /// Atlassian rejected the credentials (401), or the directory search refused them (403).
    Auth,
    /// The site credentials lack "Browse users and groups": the user search would answer
    /// every lookup with an empty list.
    Permission,
    BlastRadius,
}

impl PauseReason {
    pub const ALL: [PauseReason; 4] = [
        PauseReason::Manual,
        PauseReason::Auth,
        PauseReason::Permission,
        PauseReason::BlastRadius,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::Manual => "manual",
            PauseReason::Auth => "auth",
            PauseReason::Permission => "permission",
            PauseReason::BlastRadius => "blast_radius",
        }
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PauseReason {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "manual" => Ok(PauseReason::Manual),
            "auth" => Ok(PauseReason::Auth),
            "permission" => Ok(PauseReason::Permission),
            "blast_radius" => Ok(PauseReason::BlastRadius),
            other => Err(format!("unknown pause reason `{other}`")),
        }
    }
}

/// Whether the worker may claim jobs, shared by every replica.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct WorkerState {
    pub paused: bool,
    pub reason: Option<PauseReason>,
    /// The last resume: the blast-radius window starts no earlier than this.
    #[serde(skip)]
    pub resumed_at: Option<DateTime<Utc>>,
}

/// Parses a column that holds one of our enums, reporting a corrupt row otherwise.
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

/// The `accepted` response body, as stored and replayed; `approval_required` only when set.
pub(crate) fn accepted_body(
    delivery_id: &str,
    jobs: &[Job],
    cancelled: &[JobId],
    refused: &[Refusal],
    approval_required: Option<&str>,
) -> Value {
    let mut body = serde_json::json!({
        "delivery_id": delivery_id,
        "duplicate": false,
        "jobs": jobs,
        "cancelled": cancelled.iter().map(|id| id.to_string()).collect::<Vec<_>>(),
        "refused": refused,
    });
    if let (Some(reason), Some(obj)) = (approval_required, body.as_object_mut()) {
        obj.insert("approval_required".into(), Value::from(reason));
    }
    body
}

pub(crate) fn unmappable_body(error: &str) -> Value {
    serde_json::json!({ "error": "unmappable", "message": error })
}

/// Turns a stored response into the answer to a repeated delivery.
pub(crate) fn duplicate_receipt(
    status: &str,
    response: &str,
) -> Result<DeliveryReceipt, super::StoreError> {
    let status: DeliveryStatus = parse_column(status)?;
    let mut body: Value = serde_json::from_str(response)
        .map_err(|e| super::StoreError::Corrupt(format!("stored response is not JSON: {e}")))?;
    if status == DeliveryStatus::Accepted
        && let Some(obj) = body.as_object_mut()
    {
        obj.insert("duplicate".into(), Value::Bool(true));
    }
    Ok(DeliveryReceipt {
        duplicate: true,
        status,
        body,
    })
}

pub(crate) fn parse_job_ids(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// The operator transitions (README, "Jobs: states and outcomes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// pending | awaiting_approval → cancelled
    Cancel,
    /// awaiting_approval → pending
    Approve,
    /// failed → pending, attempts reset
    Retry,
}

impl Transition {
    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Cancel => "cancel",
            Transition::Approve => "approve",
            Transition::Retry => "retry",
        }
    }

    /// The states a job may be in for this transition.
    pub fn allowed_from(self) -> &'static [JobState] {
        match self {
            Transition::Cancel => &[JobState::Pending, JobState::AwaitingApproval],
            Transition::Approve => &[JobState::AwaitingApproval],
            Transition::Retry => &[JobState::Failed],
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
