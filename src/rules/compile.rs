//! A rule checked once, at start: [`Rule::compile`] turns a [`RuleSpec`] into a [`Rule`] or
//! into every problem it has, each naming the rule and saying what to change.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono_tz::Tz;
use serde_json::{Map, Value};

use super::spec::{ActionSpec, RuleSpec};
use crate::domain::duration::Span;
use crate::domain::{
    ALLOW_CONTENT_LOSS, Action, Email, SUCCESSOR, SUCCESSOR_ACCOUNT_ID, SUCCESSOR_EMAIL, check_id,
};

/// `at` dates without a `timezone` are midnight UTC.
const DEFAULT_TIMEZONE: Tz = Tz::UTC;

/// A validated rule, ready to map deliveries.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(super) name: String,
    pub(super) when: Vec<Condition>,
    pub(super) for_each: Option<String>,
    pub(super) filter: Vec<Condition>,
    pub(super) email: String,
    pub(super) account_id: Option<String>,
    pub(super) at: Option<String>,
    pub(super) timezone: Tz,
    pub(super) delay: Span,
    pub(super) effect: Effect,
}

/// `pointer → accepted values`: the value found must equal one of them.
#[derive(Debug, Clone)]
pub(super) struct Condition {
    pub(super) pointer: String,
    pub(super) accepted: Vec<Value>,
}

#[derive(Debug, Clone)]
pub(super) enum Effect {
    Cancel {
        undo: bool,
        approval: bool,
        /// The other sources whose steps the undo gives back (`undo_sources`).
        undo_sources: Vec<String>,
    },
    Chain {
        approval: bool,
        steps: Vec<RuleStep>,
    },
}

#[derive(Debug, Clone)]
pub(super) struct RuleStep {
    pub(super) action: Action,
    pub(super) after: Span,
    pub(super) params: Map<String, Value>,
}

impl Rule {
    /// Validates a rule table, returning every problem at once so an operator fixes the config
    /// in one pass. Each message names the rule and says what to change.
    pub fn compile(spec: RuleSpec) -> Result<Rule, Vec<String>> {
        let mut problems = Problems::new(&spec.name);
        if spec.name.trim().is_empty() {
            problems.add("`name` must not be empty");
        }
        if spec.where_.is_some() && spec.for_each.is_none() {
            problems.add(
                "`where` filters the elements of `for_each`: add `for_each` or remove `where`",
            );
        }
        if spec.email.is_none() {
            problems.add(
                "missing `email`: add a JSON Pointer to the person's email, \
                 e.g. email = \"/data/email\"",
            );
        }
        let rule = Rule {
            when: problems.conditions("when", spec.when.as_ref()),
            for_each: problems.pointer("for_each", spec.for_each.as_deref()),
            filter: problems.conditions("where", spec.where_.as_ref()),
            email: problems
                .pointer("email", spec.email.as_deref())
                .unwrap_or_default(),
            account_id: problems.pointer("account_id", spec.account_id.as_deref()),
            at: problems.pointer("at", spec.at.as_deref()),
            timezone: problems.timezone(spec.timezone.as_deref()),
            delay: problems.duration("`delay`", spec.delay.as_deref()),
            effect: problems.effect(&spec),
            name: spec.name,
        };
        problems.into_result(rule)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The actions of the chain in order; empty for a cancel rule.
    pub fn actions(&self) -> Vec<Action> {
        match &self.effect {
            Effect::Cancel { .. } => Vec::new(),
            Effect::Chain { steps, .. } => steps.iter().map(|step| step.action).collect(),
        }
    }

    /// Each step's action with its parameters (`group_id`, …), for checks of the ids a rule
    /// names; empty for a cancel rule.
    pub fn steps(&self) -> Vec<(Action, &Map<String, Value>)> {
        match &self.effect {
            Effect::Cancel { .. } => Vec::new(),
            Effect::Chain { steps, .. } => steps
                .iter()
                .map(|step| (step.action, &step.params))
                .collect(),
        }
    }

    /// The other sources whose steps this rule's undo gives back (`undo_sources`), as
    /// written; the configuration checks that each names a source.
    pub fn undo_sources(&self) -> &[String] {
        match &self.effect {
            Effect::Cancel { undo_sources, .. } => undo_sources,
            Effect::Chain { .. } => &[],
        }
    }

    pub fn is_cancel(&self) -> bool {
        matches!(self.effect, Effect::Cancel { .. })
    }

    /// Whether a match gives back what the person's done steps took (`undo = true`).
    pub fn undoes(&self) -> bool {
        match self.effect {
            Effect::Cancel { undo, .. } => undo,
            Effect::Chain { .. } => false,
        }
    }
}

/// The problems found while compiling one rule, each prefixed with the rule's name.
struct Problems {
    rule: String,
    found: Vec<String>,
}

impl Problems {
    fn new(rule: &str) -> Self {
        Problems {
            rule: rule.to_string(),
            found: Vec::new(),
        }
    }

    fn add(&mut self, problem: impl fmt::Display) {
        self.found.push(format!("rule {:?}: {problem}", self.rule));
    }

    fn into_result(self, rule: Rule) -> Result<Rule, Vec<String>> {
        if self.found.is_empty() {
            Ok(rule)
        } else {
            Err(self.found)
        }
    }

    fn pointer(&mut self, key: &str, pointer: Option<&str>) -> Option<String> {
        let pointer = pointer?;
        if let Err(why) = check_pointer(pointer) {
            self.add(format!("`{key}` {pointer:?} is not a JSON Pointer: {why}"));
        }
        Some(pointer.to_string())
    }

    fn conditions(&mut self, key: &str, table: Option<&BTreeMap<String, Value>>) -> Vec<Condition> {
        let mut conditions = Vec::new();
        for (pointer, value) in table.into_iter().flatten() {
            if let Err(why) = check_pointer(pointer) {
                self.add(format!(
                    "`{key}` key {pointer:?} is not a JSON Pointer: {why}"
                ));
            }
            let accepted = match value {
                Value::Array(values) => values.clone(),
                single => vec![single.clone()],
            };
            if accepted.is_empty() {
                self.add(format!(
                    "`{key}` {pointer:?} lists no values, so the rule can never match: \
                     list at least one"
                ));
            }
            conditions.push(Condition {
                pointer: pointer.clone(),
                accepted,
            });
        }
        conditions
    }

    fn timezone(&mut self, name: Option<&str>) -> Tz {
        let Some(name) = name else {
            return DEFAULT_TIMEZONE;
        };
        name.parse().unwrap_or_else(|_| {
            self.add(format!(
                "unknown `timezone` {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ));
            DEFAULT_TIMEZONE
        })
    }

    fn duration(&mut self, what: &str, text: Option<&str>) -> Span {
        let Some(text) = text else { return Span::ZERO };
        Span::parse(text).unwrap_or_else(|why| {
            self.add(format!("{what}: {why}"));
            Span::ZERO
        })
    }

    fn effect(&mut self, spec: &RuleSpec) -> Effect {
        if spec.cancel == Some(true) {
            self.cancel_conflicts(spec);
            let undo = spec.undo == Some(true);
            if spec.undo_sources.is_some() && !undo {
                self.add(
                    "`undo_sources` names whose steps an undo gives back: add `undo = true` \
                     or remove `undo_sources`",
                );
            }
            return Effect::Cancel {
                undo,
                approval: undo && spec.approval == Some(true),
                undo_sources: spec.undo_sources.clone().unwrap_or_default(),
            };
        }
        if spec.undo == Some(true) {
            self.add("`undo = true` needs `cancel = true`: an undo gives back what a cancelled offboarding already did");
        }
        if spec.undo_sources.is_some() {
            self.add("`undo_sources` needs `cancel = true` and `undo = true`");
        }
        let steps = match spec.actions.as_deref() {
            Some(actions) if !actions.is_empty() => self.steps(actions),
            _ => {
                self.add(
                    "no `actions`: list at least one, e.g. actions = [\"suspend_access\"], \
                     or set cancel = true",
                );
                Vec::new()
            }
        };
        Effect::Chain {
            approval: spec.approval.unwrap_or(false),
            steps,
        }
    }

    /// A cancel rule acts the moment the delivery arrives and creates no job, so these keys
    /// would be silently ignored; refusing them keeps a typo from hiding a misunderstanding.
    fn cancel_conflicts(&mut self, spec: &RuleSpec) {
        let set = [
            ("actions", spec.actions.is_some()),
            // With `undo`, the inverses may wait for approval.
            (
                "approval",
                spec.approval == Some(true) && spec.undo != Some(true),
            ),
            ("at", spec.at.is_some()),
            ("delay", spec.delay.is_some()),
            ("timezone", spec.timezone.is_some()),
            ("account_id", spec.account_id.is_some()),
        ];
        for (key, _) in set.into_iter().filter(|(_, is_set)| *is_set) {
            self.add(format!(
                "`{key}` has no effect with `cancel = true` (a cancel rule only cancels \
                 pending jobs): remove `{key}` or `cancel`"
            ));
        }
    }

    fn steps(&mut self, actions: &[ActionSpec]) -> Vec<RuleStep> {
        let mut seen = HashSet::new();
        let mut steps = Vec::new();
        for (index, spec) in actions.iter().enumerate() {
            let Some(step) = self.step(index, spec) else {
                continue;
            };
            // Two steps with one live-job key would resolve to one job: a chain may remove a
            // person from two groups, not from one group twice.
            let target = step.action.key_target(&step.params);
            let repeated = match step.action.required_param() {
                Some(name) if !target.is_empty() => {
                    format!("action `{}` with {name} `{target}`", step.action)
                }
                _ => format!("action `{}`", step.action),
            };
            if seen.insert((step.action, target)) {
                steps.push(step);
            } else {
                self.add(format!(
                    "{repeated} appears twice in `actions`: list it once"
                ));
            }
        }
        // Hand-over steps run first, in the order written: the leaver's items move before
        // any removal can take them along (README, "Hand-over before removal").
        steps.sort_by_key(|step| step.action.handover().is_none());
        steps
    }

    fn step(&mut self, index: usize, spec: &ActionSpec) -> Option<RuleStep> {
        let no_params = BTreeMap::new();
        let (name, after, params) = match spec {
            ActionSpec::Name(name) => (name.as_str(), None, &no_params),
            ActionSpec::Table(table) => {
                (table.action.as_str(), table.after.as_deref(), &table.params)
            }
        };
        let action: Action = match name.parse() {
            Ok(action) => action,
            Err(why) => {
                self.add(format!("in `actions`: {why}"));
                return None;
            }
        };
        Some(RuleStep {
            action,
            after: self.duration(&format!("`after` of `{action}`"), after),
            params: self.params(index, action, params),
        })
    }

    fn params(
        &mut self,
        index: usize,
        action: Action,
        given: &BTreeMap<String, Value>,
    ) -> Map<String, Value> {
        let required = action.required_param();
        if let Some(required) = required
            && !given.contains_key(required)
        {
            self.add(format!(
                "`{action}` needs `{required}`: \
                 write {{ action = \"{action}\", {required} = \"...\" }}"
            ));
        }
        let mut params = Map::new();
        for (key, value) in given {
            if key == ALLOW_CONTENT_LOSS {
                if !action.spec().deletes_owned_content {
                    self.add(format!(
                        "`{key}` of `{action}`: only a step that deletes an account's filters \
                         and dashboards takes it (`delete_account`)"
                    ));
                } else if let Value::Bool(allow) = value {
                    if *allow {
                        params.insert(key.clone(), Value::Bool(true));
                    }
                } else {
                    self.add(format!("`{key}` of `{action}` must be true or false"));
                }
            } else if action.handover().is_some() && is_successor(key) {
                if let Some(param) = self.successor(action, key, value) {
                    params.insert(key.clone(), param);
                }
            } else if required != Some(key.as_str()) {
                self.add(unknown_param(action, key));
            } else if let Some(text) = Action::param_text(value) {
                if let Err(why) = check_id(&text) {
                    self.add(format!("`actions[{index}].{key}` {why}"));
                }
                params.insert(key.clone(), Value::String(text));
            } else {
                self.add(format!(
                    "`{key}` of `{action}` must be a non-empty string or an integer, \
                     e.g. {key} = \"10\""
                ));
            }
        }
        let named = [SUCCESSOR, SUCCESSOR_EMAIL, SUCCESSOR_ACCOUNT_ID]
            .iter()
            .filter(|name| params.contains_key(**name))
            .count();
        if named > 1 {
            self.add(format!(
                "`{action}` names its successor more than once: give one of `{SUCCESSOR}`, \
                 `{SUCCESSOR_EMAIL}` and `{SUCCESSOR_ACCOUNT_ID}`"
            ));
        }
        params
    }

    /// A hand-over's successor: a pointer into the body, an email or an account id.
    fn successor(&mut self, action: Action, key: &str, value: &Value) -> Option<Value> {
        let Value::String(text) = value else {
            self.add(format!("`{key}` of `{action}` must be a string"));
            return None;
        };
        let problem = match key {
            SUCCESSOR => check_pointer(text)
                .err()
                .map(|why| format!("is not a JSON Pointer: {why}")),
            SUCCESSOR_EMAIL => Email::parse(text)
                .err()
                .map(|why| format!("is not an email: {why}")),
            _ => check_id(text).err(),
        };
        match problem {
            Some(why) => {
                self.add(format!("`{key}` of `{action}` {why}"));
                None
            }
            None => Some(value.clone()),
        }
    }
}

fn is_successor(key: &str) -> bool {
    [SUCCESSOR, SUCCESSOR_EMAIL, SUCCESSOR_ACCOUNT_ID].contains(&key)
}

fn unknown_param(action: Action, key: &str) -> String {
    let mut takes = match action.required_param() {
        Some(required) => format!("it takes only `{required}` and `after`"),
        None => "it takes only `after`".to_string(),
    };
    if action.spec().deletes_owned_content {
        takes.push_str(&format!(" (and `{ALLOW_CONTENT_LOSS}`)"));
    }
    if action.handover().is_some() {
        takes = format!(
            "it takes only `after` and its successor: `{SUCCESSOR}`, `{SUCCESSOR_EMAIL}` or \
             `{SUCCESSOR_ACCOUNT_ID}`"
        );
    }
    format!("unknown parameter `{key}` for `{action}`: {takes}")
}

/// RFC 6901: empty (the whole document) or `/`-separated tokens where `~` only escapes as
/// `~0` or `~1`.
fn check_pointer(pointer: &str) -> Result<(), String> {
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "it must be empty or start with `/`, e.g. \"/{pointer}\""
        ));
    }
    let mut chars = pointer.chars();
    while let Some(c) = chars.next() {
        if c == '~' && !matches!(chars.next(), Some('0' | '1')) {
            return Err("`~` must be written `~0`, and `/` inside a key `~1`".into());
        }
    }
    Ok(())
}
