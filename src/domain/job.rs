//! A job and its state machine: states, outcomes, operator transitions, the audit trail and
//! the worker's shared pause flag.
//!
//! A job is one action against one person. States (README, "Jobs: states and outcomes")
//! and who moves a job out of each:
//! - `pending`: due at `run_at`; the worker claims it (→ running) or an operator cancels it.
//! - `awaiting_approval`: an operator approves (→ pending) or cancels it.
//! - `running`: held by a worker under a lease; the worker finishes it (→ succeeded/failed),
//!   snoozes or retries it (→ pending), or, if the worker died, lease rescue returns it to
//!   pending.
//! - `succeeded`, `failed`, `cancelled`: final, except that an operator may retry a failed job.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::action::Action;
use super::ids::{AccountId, Email};

/// The state of a job. Stored as its snake_case name, guarded by a CHECK constraint.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Pending,
    AwaitingApproval,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 6] = [
        JobState::Pending,
        JobState::AwaitingApproval,
        JobState::Running,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Pending => "pending",
            JobState::AwaitingApproval => "awaiting_approval",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Live jobs block a second job for the same (action, email, target)
    /// (`Action::key_target`).
    pub fn is_live(self) -> bool {
        matches!(
            self,
            JobState::Pending | JobState::AwaitingApproval | JobState::Running
        )
    }
}

impl fmt::Display for JobState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown job state `{s}` (expected one of: pending, awaiting_approval, running, succeeded, failed, cancelled)"
                )
            })
    }
}

/// How a `succeeded` job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The API performed the change.
    Done,
    /// The API said the account is already gone or already in that state.
    AlreadyDone,
    /// No account has that email: nothing to do.
    NotFound,
    /// Dry run: the target was resolved, no mutating call was made.
    DryRun,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::AlreadyDone => "already_done",
            Outcome::NotFound => "not_found",
            Outcome::DryRun => "dry_run",
        }
    }
}

impl FromStr for Outcome {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [
            Outcome::Done,
            Outcome::AlreadyDone,
            Outcome::NotFound,
            Outcome::DryRun,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
        .ok_or_else(|| format!("unknown outcome `{s}`"))
    }
}

/// Jobs are numbered by the database; the API shows the number as an opaque string. A type
/// of its own, so that a job id is never taken for another number (an attempt, a count).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for JobId {
    type Err = std::num::ParseIntError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(JobId)
    }
}

/// Parses a job id as given on the command line or in a URL.
pub fn parse_job_id(text: &str) -> Result<JobId, String> {
    text.trim()
        .parse::<JobId>()
        .ok()
        .filter(|id| id.0 > 0)
        .ok_or_else(|| format!("`{text}` is not a job id"))
}

pub(crate) fn id_as_string<S: Serializer, T: fmt::Display>(
    id: &T,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_str(id)
}

fn id_from_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<JobId, D::Error> {
    let text = String::deserialize(d)?;
    parse_job_id(&text).map_err(serde::de::Error::custom)
}

fn opt_id_from_string<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<JobId>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|text| parse_job_id(&text).map_err(serde::de::Error::custom))
        .transpose()
}

pub(crate) fn opt_id_as_string<S: Serializer>(id: &Option<JobId>, s: S) -> Result<S::Ok, S::Error> {
    match id {
        Some(id) => s.collect_str(id),
        None => s.serialize_none(),
    }
}

/// Times in the API are RFC 3339 UTC with a `Z`.
pub fn rfc3339(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

pub(crate) fn time_as_rfc3339<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(at))
}

/// One job as stored (the job JSON of the README's HTTP API). Read back from a stored
/// answer (`Answer`), it has none of the internal fields.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Job {
    /// Opaque id.
    #[serde(serialize_with = "id_as_string", deserialize_with = "id_from_string")]
    #[schema(value_type = String)]
    pub id: JobId,
    pub action: Action,
    /// Action parameters such as `group_id`; `{}` when none.
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    pub state: JobState,
    #[schema(value_type = String)]
    pub email: Email,
    #[schema(value_type = Option<String>)]
    pub account_id: Option<AccountId>,
    /// The earlier step of the chain this job waits for.
    #[serde(
        serialize_with = "opt_id_as_string",
        deserialize_with = "opt_id_from_string"
    )]
    #[schema(value_type = Option<String>)]
    pub depends_on: Option<JobId>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub run_at: DateTime<Utc>,
    /// Its priority lane (README, "Lanes").
    pub lane: super::Lane,
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
    /// A hand-over's successor, resolved once per chain and recorded before anything moves
    /// (README, "Hand-over before removal").
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub successor_account_id: Option<AccountId>,
    /// What a hand-over step moved and left so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub handover: Option<super::HandedOver>,
}

impl Job {
    /// The string value of an action parameter such as `group_id`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.get(name).and_then(Value::as_str)
    }

    /// Whether the step may delete what the account owns (`ALLOW_CONTENT_LOSS`).
    pub fn allows_content_loss(&self) -> bool {
        self.params.get(ALLOW_CONTENT_LOSS) == Some(&Value::Bool(true))
    }

    /// The target part of its live-job key (`Action::key_target`).
    pub fn key_target(&self) -> String {
        self.action.key_target(&self.params)
    }

    /// Whether the request that enqueued this job by hand vouched for its `account_id`
    /// (`TRUST_ACCOUNT_ID`): then an account record that hides its email is acted on.
    pub fn trusts_account_id(&self) -> bool {
        self.params.get(TRUST_ACCOUNT_ID) == Some(&Value::Bool(true))
    }
}

/// The parameter, `true`, of a job enqueued by hand whose request said
/// `"trust_account_id": true` (README, "Manual and bulk jobs"). A parameter rather than a
/// column: no entry, rule or CSV can set it (each takes only the action's one id), and the
/// stores record it without a migration.
pub const TRUST_ACCOUNT_ID: &str = "trust_account_id";

/// The parameter of a step that may delete what the account owns in Jira
/// (`ActionSpec::deletes_owned_content`): `"allow_content_loss": true`, set by a rule's
/// `allow_content_loss = true` (README, "No silent loss").
pub const ALLOW_CONTENT_LOSS: &str = "allow_content_loss";

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

/// A job for unit tests to adjust with `..`: step `id` of a chain for ann@example.com, from
/// rule `leaver` of source `hr`, succeeded `done` on its first attempt at `at`, its account
/// not yet recorded.
#[cfg(test)]
impl Job {
    pub(crate) fn example(id: i64, action: Action, at: DateTime<Utc>) -> Job {
        Job {
            id: JobId(id),
            action,
            params: Map::new(),
            state: JobState::Succeeded,
            email: Email::parse("ann@example.com").expect("an email"),
            account_id: None,
            depends_on: None,
            run_at: at,
            lane: super::Lane::Scheduled,
            attempts: 1,
            max_attempts: 8,
            last_error: None,
            outcome: Some(Outcome::Done),
            source: Some("hr".into()),
            rule: Some("leaver".into()),
            delivery_id: None,
            created_at: at,
            updated_at: at,
            claim_seq: 1,
            lease_owner: None,
            account_type: None,
            successor_account_id: None,
            handover: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_names_round_trip() {
        for state in JobState::ALL {
            assert_eq!(state.as_str().parse::<JobState>().unwrap(), state);
        }
        assert!("Pending".parse::<JobState>().is_err());
    }
}
