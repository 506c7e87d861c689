//! What a `[[sources.rules]]` table says, as serde reads it: no checks here beyond the
//! TOML types, [`Rule::compile`](super::Rule::compile) does them.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

/// One `[[sources.rules]]` table as written. Unknown keys are left to the config loader, which
/// reports them; everything else is checked by [`Rule::compile`](super::Rule::compile).
#[derive(Deserialize, Debug, Clone)]
pub struct RuleSpec {
    pub name: String,
    pub when: Option<BTreeMap<String, Value>>,
    pub for_each: Option<String>,
    #[serde(rename = "where")]
    pub where_: Option<BTreeMap<String, Value>>,
    pub email: Option<String>,
    pub account_id: Option<String>,
    pub at: Option<String>,
    pub timezone: Option<String>,
    pub delay: Option<String>,
    pub approval: Option<bool>,
    pub actions: Option<Vec<ActionSpec>>,
    pub cancel: Option<bool>,
    /// With `cancel = true`: also give back what the person's succeeded steps took.
    pub undo: Option<bool>,
    /// With `undo = true`: the other sources whose steps the undo gives back too (`api`,
    /// `cli`, `console` name the manual ones). By default only the rule's own source's.
    pub undo_sources: Option<Vec<String>>,
}

/// An entry of `actions`: a bare action name, or a table with `after` and parameters.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum ActionSpec {
    Name(String),
    Table(ActionTable),
}

/// `{ action = "remove_from_group", after = "30d", group_id = "..." }`.
#[derive(Deserialize, Debug, Clone)]
pub struct ActionTable {
    pub action: String,
    #[serde(default)]
    pub after: Option<String>,
    /// Every other key; [`Rule::compile`](super::Rule::compile) refuses the ones the action does not take.
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}
