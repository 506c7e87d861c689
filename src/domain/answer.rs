//! The answer to a delivery or a manual request (README, "HTTP API"): built once, inside the
//! transaction that records it, stored with it, and sent again, typed, to every repeat. HTTP,
//! the manual paths, the CLI and the console all read this one type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Job;
use super::undo::Irreversible;

/// A person the delivery named whom offboard refused to enqueue (e.g. a protected email).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Refusal {
    pub email: String,
    pub reason: String,
}

/// The answer to an accepted (202) or repeated (200) delivery, as stored with it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryAnswer {
    pub delivery_id: String,
    pub duplicate: bool,
    pub jobs: Vec<Job>,
    /// Ids of jobs a cancel rule cancelled.
    pub cancelled: Vec<String>,
    pub refused: Vec<Refusal>,
    /// Present when the delivery would create more than `[safety] approval_above` jobs: why
    /// every one of them waits in `awaiting_approval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_required: Option<String>,
    /// Present when a cancel rule with `undo = true` matched: the jobs that give back what
    /// the person's succeeded steps took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub undo: Option<Vec<Job>>,
    /// Present with `undo`: the succeeded steps that cannot be given back, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub irreversible: Option<Vec<Irreversible>>,
}

/// What a recorded delivery is answered with.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Answer {
    Accepted(DeliveryAnswer),
    /// A delivery no rule could map (422), recorded so that a repeat gets the same answer.
    Unmappable {
        error: String,
        message: String,
    },
}

impl Answer {
    pub fn unmappable(message: &str) -> Answer {
        Answer::Unmappable {
            error: "unmappable".into(),
            message: message.into(),
        }
    }

    /// The accepted answer, if it is one.
    pub fn accepted(&self) -> Option<&DeliveryAnswer> {
        match self {
            Answer::Accepted(answer) => Some(answer),
            Answer::Unmappable { .. } => None,
        }
    }

    /// The jobs it names (none for an unmappable delivery).
    pub fn jobs(&self) -> &[Job] {
        self.accepted().map_or(&[], |a| &a.jobs[..])
    }

    /// As JSON.
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
