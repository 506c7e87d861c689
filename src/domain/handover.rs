//! What a hand-over step asks for and what it did (README, "Hand-over before removal"): the
//! successor a job names, and the items it moved or had to leave, as the job records them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

/// A step's `successor` parameter in a rule: a JSON Pointer into the body that yields the
/// successor's email or account id. Rule application replaces it with one of the two below.
pub const SUCCESSOR: &str = "successor";
/// A job's successor, by email (looked up in the org directory).
pub const SUCCESSOR_EMAIL: &str = "successor_email";
/// A job's successor, by account id (read from the org directory).
pub const SUCCESSOR_ACCOUNT_ID: &str = "successor_account_id";

/// Whom a job asks to receive the leaver's items, before it is resolved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SuccessorRef {
    Email(String),
    AccountId(String),
}

impl SuccessorRef {
    /// A successor written as text: an email has an `@`, an Atlassian account id never does.
    pub fn parse(text: &str) -> Option<SuccessorRef> {
        let text = text.trim();
        if text.is_empty() {
            None
        } else if text.contains('@') {
            Some(SuccessorRef::Email(text.to_owned()))
        } else {
            Some(SuccessorRef::AccountId(text.to_owned()))
        }
    }

    /// The job parameters that name it.
    pub fn into_param(self) -> (&'static str, Value) {
        match self {
            SuccessorRef::Email(email) => (SUCCESSOR_EMAIL, Value::String(email)),
            SuccessorRef::AccountId(id) => (SUCCESSOR_ACCOUNT_ID, Value::String(id)),
        }
    }

    /// The successor a job's parameters name, if any.
    pub fn from_params(params: &Map<String, Value>) -> Option<SuccessorRef> {
        let text = |name: &str| params.get(name).and_then(Value::as_str).map(str::to_owned);
        text(SUCCESSOR_ACCOUNT_ID)
            .map(SuccessorRef::AccountId)
            .or_else(|| text(SUCCESSOR_EMAIL).map(SuccessorRef::Email))
    }
}

impl std::fmt::Display for SuccessorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SuccessorRef::Email(email) => write!(f, "email {email}"),
            SuccessorRef::AccountId(id) => write!(f, "account {id}"),
        }
    }
}

/// What a hand-over step has done so far, kept on its job and written after every batch, so
/// that a re-run after a crash knows what it already moved and which bulk tasks it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct HandedOver {
    /// Items given to the successor and read back as no longer the leaver's, by id:
    /// `filter:10001`, `dashboard:10100`, `issue:10200`, `project:10000`, `component:10010`,
    /// `rule:<uuid>`.
    #[serde(default)]
    pub moved: Vec<String>,
    /// Items found but left with the leaver, each with why.
    #[serde(default)]
    pub kept: Vec<KeptItem>,
    /// Bulk tasks started and not yet seen to end: a re-run waits for them before it searches
    /// again, so no item is moved twice.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tasks: Vec<String>,
}

/// An item a hand-over found and could not move.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct KeptItem {
    pub item: String,
    pub reason: String,
}

impl HandedOver {
    pub fn is_empty(&self) -> bool {
        self.moved.is_empty() && self.kept.is_empty() && self.tasks.is_empty()
    }

    /// Records a moved item once; what was seen last about an item stands.
    pub fn moved(&mut self, item: String) {
        self.kept.retain(|kept| kept.item != item);
        if !self.moved.contains(&item) {
            self.moved.push(item);
        }
    }

    /// Records a kept item, with the latest reason: a move the read-back contradicts is no
    /// longer counted as moved.
    pub fn kept(&mut self, item: String, reason: String) {
        self.kept.retain(|kept| kept.item != item);
        self.moved.retain(|moved| *moved != item);
        self.kept.push(KeptItem { item, reason });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_successor_is_an_email_or_an_account_id() {
        assert_eq!(
            SuccessorRef::parse(" boss@example.com "),
            Some(SuccessorRef::Email("boss@example.com".into()))
        );
        assert_eq!(
            SuccessorRef::parse("557058:abc"),
            Some(SuccessorRef::AccountId("557058:abc".into()))
        );
        assert_eq!(SuccessorRef::parse("  "), None);
        let (name, value) = SuccessorRef::parse("a@b.c").unwrap().into_param();
        let params: Map<String, Value> = [(name.to_owned(), value)].into_iter().collect();
        assert_eq!(
            SuccessorRef::from_params(&params),
            Some(SuccessorRef::Email("a@b.c".into()))
        );
    }

    #[test]
    fn an_item_is_moved_or_kept_once() {
        let mut done = HandedOver::default();
        done.kept("filter:1".into(), "403".into());
        done.kept("filter:1".into(), "403 again".into());
        assert_eq!(done.kept.len(), 1);
        done.moved("filter:1".into());
        done.moved("filter:1".into());
        assert_eq!(done.moved, ["filter:1"]);
        assert!(done.kept.is_empty());
        done.kept("filter:1".into(), "read back as the leaver's".into());
        assert!(
            done.moved.is_empty(),
            "the read-back stands over the answer"
        );
        assert_eq!(done.kept[0].reason, "read back as the leaver's");
    }
}
