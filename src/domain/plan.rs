//! What the rules make of a delivery, which is what the store records: a chain of steps
//! for one person, or the cancellation of that person's pending jobs. One type for each,
//! from the rules to the database.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::ids::AccountId;
use super::{Action, Email};

/// What a delivery asks for, per matching rule and person.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Chain(NewChain),
    /// `undo`: also give back what this person's succeeded steps took (README, "Undo on
    /// rehire"), the inverses waiting for approval when `approval`. An undo gives back the
    /// steps of the delivery's own source, and of those named in `undo_sources`.
    Cancel {
        rule: String,
        email: Email,
        undo: bool,
        approval: bool,
        undo_sources: Vec<String>,
    },
}

/// The steps of one rule for one person: each later step runs only after the earlier one
/// succeeded.
#[derive(Clone, Debug, PartialEq)]
pub struct NewChain {
    pub email: Email,
    /// The payload's claim of the account, checked against the lookup; or, with
    /// `account_type`, the account itself.
    pub account_id: Option<AccountId>,
    /// Set only where the account was resolved from Atlassian before (an undo acts on the
    /// account its original step recorded): the job then acts on it without any lookup.
    pub account_type: Option<String>,
    pub rule: String,
    pub approval: bool,
    pub steps: Vec<NewStep>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct NewStep {
    pub action: Action,
    /// Parameter name → string value; `{}` when the action takes none.
    pub params: Map<String, Value>,
    pub run_at: DateTime<Utc>,
    /// Its priority lane, decided where the step is planned (README, "Lanes").
    pub lane: super::Lane,
}

impl NewStep {
    /// The `params` column: a JSON object.
    pub fn params_json(&self) -> String {
        serde_json::to_string(&self.params).unwrap_or_else(|_| "{}".into())
    }

    /// The `target` column: with the action and the email, the key of its one live job
    /// (`Action::key_target`).
    pub fn key_target(&self) -> String {
        self.action.key_target(&self.params)
    }
}

/// A `cancel = true` rule matched for this person.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCancel {
    pub email: Email,
    pub rule: String,
}

/// Who enqueued by hand: the source of the recorded request and the actor of its events.
/// These names are reserved: no configured source may take one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManualSource {
    Api,
    Cli,
    Console,
    /// A recheck that found an account active again (`[evidence] reenqueue_reactivated`).
    Recheck,
}

impl ManualSource {
    pub const ALL: [ManualSource; 4] = [
        ManualSource::Api,
        ManualSource::Cli,
        ManualSource::Console,
        ManualSource::Recheck,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ManualSource::Api => "api",
            ManualSource::Cli => "cli",
            ManualSource::Console => "console",
            ManualSource::Recheck => "recheck",
        }
    }

    /// The manual source a job's `source` names, if it is one.
    pub fn named(name: &str) -> Option<ManualSource> {
        ManualSource::ALL.into_iter().find(|s| s.as_str() == name)
    }
}
