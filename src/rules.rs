//! Payload → job plans: the `[[sources.rules]]` of a source, compiled once at start and applied
//! to every verified delivery (INTERFACE §2).
//!
//! A rule reads the body with JSON Pointers (RFC 6901). `when` gates the rule on the whole body;
//! `for_each` fans it out over an array, with `where` choosing elements and `email`,
//! `account_id` and `at` read relative to each element (an `email` of `""` takes the element
//! itself, for arrays of plain addresses). A delivery is mapped all or nothing: one element that
//! cannot be mapped makes the whole delivery [`Unmappable`] (HTTP 422), so a half-understood
//! payload never offboards half a list.
//!
//! Times: `at` is a `YYYY-MM-DD` date (midnight in `timezone`), an RFC 3339 timestamp, or epoch
//! milliseconds (a JSON integer or an all-digit string). `delay` and each step's `after` are
//! exact spans added to that instant, not calendar days, so `1d` across a DST change is 24
//! hours.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::duration::Span;
use crate::email::Email;
use crate::jobs::Action;

/// One `[[sources.rules]]` table as written. Unknown keys are left to the config loader, which
/// reports them; everything else is checked by [`Rule::compile`].
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
    /// Every other key; [`Rule::compile`] refuses the ones the action does not take.
    #[serde(flatten)]
    pub params: BTreeMap<String, Value>,
}

/// A validated rule, ready to map deliveries.
#[derive(Debug, Clone)]
pub struct Rule {
    name: String,
    when: Vec<Condition>,
    for_each: Option<String>,
    filter: Vec<Condition>,
    email: String,
    account_id: Option<String>,
    at: Option<String>,
    timezone: Tz,
    delay: Span,
    effect: Effect,
}

/// What a delivery asks for: either a chain of jobs for one person, or the cancellation of
/// that person's pending jobs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Chain(ChainPlan),
    Cancel { rule: String, email: Email },
}

/// The jobs of one rule for one person; each step depends on the one before it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChainPlan {
    pub rule: String,
    pub email: Email,
    pub account_id: Option<String>,
    pub approval: bool,
    pub steps: Vec<StepPlan>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StepPlan {
    pub action: Action,
    /// Parameter name → string value; `{}` when the action takes none.
    pub params: Map<String, Value>,
    pub run_at: DateTime<Utc>,
}

/// Why a verified delivery cannot be turned into jobs: the 422 message. It names the rule, the
/// element and the pointer, and quotes at most a short excerpt of the payload.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unmappable(pub String);

/// `pointer → accepted values`: the value found must equal one of them.
#[derive(Debug, Clone)]
struct Condition {
    pointer: String,
    accepted: Vec<Value>,
}

#[derive(Debug, Clone)]
enum Effect {
    Cancel,
    Chain { approval: bool, steps: Vec<Step> },
}

#[derive(Debug, Clone)]
struct Step {
    action: Action,
    after: Span,
    params: Map<String, Value>,
}

/// Applies every rule in order and concatenates their plans. One unmappable rule fails the
/// whole delivery, so nothing is enqueued from a payload that was only partly understood.
pub fn map_delivery(
    rules: &[Rule],
    body: &Value,
    now: DateTime<Utc>,
) -> Result<Vec<Plan>, Unmappable> {
    let mut plans = Vec::new();
    for rule in rules {
        plans.extend(rule.apply(body, now)?);
    }
    Ok(plans)
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
            Effect::Cancel => Vec::new(),
            Effect::Chain { steps, .. } => steps.iter().map(|step| step.action).collect(),
        }
    }

    /// Each step's action with its parameters (`group_id`, …), for checks of the ids a rule
    /// names; empty for a cancel rule.
    pub fn steps(&self) -> Vec<(Action, &Map<String, Value>)> {
        match &self.effect {
            Effect::Cancel => Vec::new(),
            Effect::Chain { steps, .. } => steps
                .iter()
                .map(|step| (step.action, &step.params))
                .collect(),
        }
    }

    pub fn is_cancel(&self) -> bool {
        matches!(self.effect, Effect::Cancel)
    }

    /// The plans this rule makes of a delivery: empty when `when` does not match or no element
    /// is selected, one per selected person otherwise.
    pub fn apply(&self, body: &Value, now: DateTime<Utc>) -> Result<Vec<Plan>, Unmappable> {
        if !all_hold(&self.when, body) {
            return Ok(Vec::new());
        }
        let Some(list) = &self.for_each else {
            let person = Person {
                rule: self,
                doc: body,
                element: None,
            };
            return Ok(vec![person.plan(now)?]);
        };
        self.elements(body, list)?
            .iter()
            .enumerate()
            .filter(|(_, element)| all_hold(&self.filter, element))
            .map(|(index, element)| {
                let person = Person {
                    rule: self,
                    doc: element,
                    element: Some((list, index)),
                };
                person.plan(now)
            })
            .collect()
    }

    fn elements<'b>(&self, body: &'b Value, list: &str) -> Result<&'b [Value], Unmappable> {
        let why = match body.pointer(list) {
            Some(Value::Array(elements)) => return Ok(elements),
            None => "is missing".to_string(),
            Some(other) => format!("is {}, not an array: {}", kind(other), excerpt(other)),
        };
        Err(Unmappable(format!(
            "rule {:?}: `for_each` {list:?} {why}",
            self.name
        )))
    }
}

fn all_hold(conditions: &[Condition], doc: &Value) -> bool {
    conditions.iter().all(|condition| condition.holds(doc))
}

impl Condition {
    fn holds(&self, doc: &Value) -> bool {
        doc.pointer(&self.pointer)
            .is_some_and(|found| self.accepted.iter().any(|want| same_value(want, found)))
    }
}

/// JSON equality, except that numbers compare by value: a TOML `3` must match a payload `3.0`.
fn same_value(want: &Value, found: &Value) -> bool {
    match (want, found) {
        (Value::Number(a), Value::Number(b)) if a.is_f64() || b.is_f64() => {
            a.as_f64() == b.as_f64()
        }
        _ => want == found,
    }
}

/// The part of a delivery that describes one person: the whole body, or one `for_each`
/// element.
struct Person<'a> {
    rule: &'a Rule,
    doc: &'a Value,
    /// `for_each` pointer and index, for messages.
    element: Option<(&'a str, usize)>,
}

impl Person<'_> {
    fn plan(&self, now: DateTime<Utc>) -> Result<Plan, Unmappable> {
        let email = self.email()?;
        let Effect::Chain { approval, steps } = &self.rule.effect else {
            return Ok(Plan::Cancel {
                rule: self.rule.name.clone(),
                email,
            });
        };
        let account_id = self.account_id()?;
        let start = self.start(now)?;
        let steps = steps
            .iter()
            .map(|step| self.step(step, start))
            .collect::<Result<_, _>>()?;
        Ok(Plan::Chain(ChainPlan {
            rule: self.rule.name.clone(),
            email,
            account_id,
            approval: *approval,
            steps,
        }))
    }

    fn step(&self, step: &Step, start: DateTime<Utc>) -> Result<StepPlan, Unmappable> {
        Ok(StepPlan {
            action: step.action,
            params: step.params.clone(),
            run_at: self.later(start, step.after)?,
        })
    }

    fn email(&self) -> Result<Email, Unmappable> {
        let pointer = &self.rule.email;
        let value = self.required(pointer)?;
        let Value::String(text) = value else {
            return Err(self.fail_at(
                pointer,
                format!(
                    "is {}, expected an email string: {}",
                    kind(value),
                    excerpt(value)
                ),
            ));
        };
        Email::parse(text).map_err(|why| {
            self.fail_at(
                pointer,
                format!("is not a valid email ({why}): {}", excerpt(value)),
            )
        })
    }

    /// The optional cross-check: absent, null or empty means "not given", which is not an
    /// error (Jira smart values render a missing field as "").
    fn account_id(&self) -> Result<Option<String>, Unmappable> {
        let Some(pointer) = &self.rule.account_id else {
            return Ok(None);
        };
        match self.doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id)) if id.is_empty() => Ok(None),
            Some(Value::String(id)) if !id.is_empty() => Ok(Some(id.clone())),
            Some(other) => Err(self.fail_at(
                pointer,
                format!(
                    "is {}, expected a non-empty string or null: {}",
                    kind(other),
                    excerpt(other)
                ),
            )),
        }
    }

    /// When the chain starts: `at` (or now) plus `delay`.
    fn start(&self, now: DateTime<Utc>) -> Result<DateTime<Utc>, Unmappable> {
        let base = match &self.rule.at {
            None => now,
            Some(pointer) => self.at(pointer)?,
        };
        self.later(base, self.rule.delay)
    }

    fn at(&self, pointer: &str) -> Result<DateTime<Utc>, Unmappable> {
        let value = self.required(pointer)?;
        parse_instant(value, self.rule.timezone).ok_or_else(|| {
            self.fail_at(
                pointer,
                format!(
                    "is not a date (expected YYYY-MM-DD, RFC 3339 or epoch milliseconds): {}",
                    excerpt(value)
                ),
            )
        })
    }

    fn later(&self, time: DateTime<Utc>, span: Span) -> Result<DateTime<Utc>, Unmappable> {
        time.checked_add_signed(span.to_chrono())
            .ok_or_else(|| self.fail("the scheduled time is out of range"))
    }

    fn required(&self, pointer: &str) -> Result<&Value, Unmappable> {
        self.doc
            .pointer(pointer)
            .ok_or_else(|| self.fail_at(pointer, "is missing"))
    }

    fn fail_at(&self, pointer: &str, why: impl fmt::Display) -> Unmappable {
        self.fail(format!("{pointer:?} {why}"))
    }

    fn fail(&self, why: impl fmt::Display) -> Unmappable {
        let rule = &self.rule.name;
        Unmappable(match self.element {
            None => format!("rule {rule:?}: {why}"),
            Some((list, index)) => {
                let element = format!("{list}/{index}");
                format!("rule {rule:?}, element {element:?}: {why}")
            }
        })
    }
}

fn parse_instant(value: &Value, timezone: Tz) -> Option<DateTime<Utc>> {
    match value {
        Value::Number(millis) => DateTime::from_timestamp_millis(millis.as_i64()?),
        Value::String(text) if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            DateTime::from_timestamp_millis(text.parse().ok()?)
        }
        Value::String(text) if is_calendar_date(text) => {
            let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
            local_midnight(date, timezone)
        }
        Value::String(text) => DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|time| time.with_timezone(&Utc)),
        _ => None,
    }
}

/// Exactly `dddd-dd-dd`: chrono's `%Y` alone would also take `+12024` or `24-1-5`.
fn is_calendar_date(text: &str) -> bool {
    let bytes = text.as_bytes();
    bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        })
}

/// Midnight of `date` in `timezone`. When a DST change makes midnight ambiguous the earlier
/// instant wins; when midnight does not exist (clocks jump from 00:00), the day starts at the
/// first instant after the gap.
fn local_midnight(date: NaiveDate, timezone: Tz) -> Option<DateTime<Utc>> {
    let midnight = date.and_time(NaiveTime::MIN);
    timezone
        .from_local_datetime(&midnight)
        .earliest()
        .map(|time| time.with_timezone(&Utc))
        .or_else(|| first_instant_after_gap(timezone, midnight))
}

/// The earliest instant whose local time in `timezone` is later than `local`, found by
/// bisection: UTC offsets lie within ±15 hours, so the answer lies within 15 hours either side
/// of `local` read as UTC, and no zone changes its offset twice in that window.
fn first_instant_after_gap(timezone: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    const WINDOW_SECS: i64 = 15 * 3600;
    let is_after = |secs: i64| {
        DateTime::from_timestamp(secs, 0)
            .is_some_and(|time| time.with_timezone(&timezone).naive_local() > local)
    };
    let target = local.and_utc().timestamp();
    let (mut before, mut after) = (target - WINDOW_SECS, target + WINDOW_SECS);
    while after - before > 1 {
        let middle = before + (after - before) / 2;
        if is_after(middle) {
            after = middle;
        } else {
            before = middle;
        }
    }
    DateTime::from_timestamp(after, 0)
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(text) if text.is_empty() => "an empty string",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The payload value as JSON, cut to 64 characters: enough to recognise it in a 422 without
/// echoing a large or sensitive payload back to the sender.
fn excerpt(value: &Value) -> String {
    const MAX_CHARS: usize = 64;
    let text = value.to_string();
    match text.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
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
        let Some(name) = name else { return Tz::UTC };
        name.parse().unwrap_or_else(|_| {
            self.add(format!(
                "unknown `timezone` {name:?}: use an IANA name such as \"Europe/Berlin\" or \"UTC\""
            ));
            Tz::UTC
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
            return Effect::Cancel;
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
            ("approval", spec.approval == Some(true)),
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

    fn steps(&mut self, actions: &[ActionSpec]) -> Vec<Step> {
        let mut seen = HashSet::new();
        let mut steps = Vec::new();
        for spec in actions {
            let Some(step) = self.step(spec) else {
                continue;
            };
            if seen.insert(step.action) {
                steps.push(step);
            } else {
                self.add(format!(
                    "action `{}` appears twice in `actions`: list it once",
                    step.action
                ));
            }
        }
        steps
    }

    fn step(&mut self, spec: &ActionSpec) -> Option<Step> {
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
        Some(Step {
            action,
            after: self.duration(&format!("`after` of `{action}`"), after),
            params: self.params(action, params),
        })
    }

    fn params(&mut self, action: Action, given: &BTreeMap<String, Value>) -> Map<String, Value> {
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
            if required != Some(key.as_str()) {
                self.add(unknown_param(action, key));
            } else if let Some(text) = param_text(value) {
                params.insert(key.clone(), Value::String(text));
            } else {
                self.add(format!(
                    "`{key}` of `{action}` must be a non-empty string or an integer, \
                     e.g. {key} = \"10\""
                ));
            }
        }
        params
    }
}

fn unknown_param(action: Action, key: &str) -> String {
    let takes = match action.required_param() {
        Some(required) => format!("it takes only `{required}` and `after`"),
        None => "it takes only `after`".to_string(),
    };
    format!("unknown parameter `{key}` for `{action}`: {takes}")
}

fn param_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) if number.is_i64() || number.is_u64() => Some(number.to_string()),
        _ => None,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn now() -> DateTime<Utc> {
        utc("2024-06-01T12:00:00Z")
    }

    /// A rule named `r` from TOML lines, as an operator would write it.
    fn spec(lines: &str) -> RuleSpec {
        toml::from_str(&format!("name = \"r\"\n{lines}")).unwrap_or_else(|e| panic!("{lines}: {e}"))
    }

    fn rule(lines: &str) -> Rule {
        Rule::compile(spec(lines)).unwrap_or_else(|problems| panic!("{lines}: {problems:#?}"))
    }

    fn compile_errors(lines: &str) -> Vec<String> {
        Rule::compile(spec(lines)).expect_err(lines)
    }

    fn chains(plans: Vec<Plan>) -> Vec<ChainPlan> {
        plans
            .into_iter()
            .map(|plan| match plan {
                Plan::Chain(chain) => chain,
                Plan::Cancel { .. } => panic!("expected a chain, got {plan:?}"),
            })
            .collect()
    }

    fn only_chain(rule: &Rule, body: &Value) -> ChainPlan {
        let mut plans = chains(rule.apply(body, now()).unwrap());
        assert_eq!(plans.len(), 1, "{plans:?}");
        plans.remove(0)
    }

    fn unmappable(rule: &Rule, body: &Value) -> String {
        match rule.apply(body, now()) {
            Ok(plans) => panic!("expected Unmappable for {body}, got {plans:?}"),
            Err(Unmappable(message)) => message,
        }
    }

    const SUSPEND: &str = "email = \"/email\"\nactions = [\"suspend_access\"]";

    #[test]
    fn when_gates_the_rule_on_the_whole_body() {
        let cases = [
            (
                r#"when = { "/type" = "contract.ended" }"#,
                json!({"type": "contract.ended"}),
                true,
            ),
            (
                r#"when = { "/type" = "contract.ended" }"#,
                json!({"type": "contract.extended"}),
                false,
            ),
            (
                r#"when = { "/type" = "contract.ended" }"#,
                json!({"kind": "contract.ended"}),
                false,
            ),
            (
                r#"when = { "/type" = ["a", "b"] }"#,
                json!({"type": "b"}),
                true,
            ),
            (
                r#"when = { "/type" = ["a", "b"] }"#,
                json!({"type": "c"}),
                false,
            ),
            (
                r#"when = { "/type" = ["a", "b"] }"#,
                json!({"type": ["a", "b"]}),
                false,
            ),
            (r#"when = { "/level" = 3 }"#, json!({"level": 3.0}), true),
            (r#"when = { "/level" = 3 }"#, json!({"level": "3"}), false),
            (
                r#"when = { "/active" = false }"#,
                json!({"active": false}),
                true,
            ),
            (
                r#"when = { "/a" = "x", "/b/0" = "y" }"#,
                json!({"a": "x", "b": ["y"]}),
                true,
            ),
            (
                r#"when = { "/a" = "x", "/b/0" = "y" }"#,
                json!({"a": "x", "b": ["z"]}),
                false,
            ),
            (r#"when = { "/a~1b" = 1 }"#, json!({"a/b": 1}), true),
            ("", json!({}), true),
        ];
        for (when, mut body, expected) in cases {
            body["email"] = json!("a@example.com");
            let rule = rule(&format!("{when}\n{SUSPEND}"));
            let plans = rule.apply(&body, now()).unwrap();
            assert_eq!(plans.len(), usize::from(expected), "{when} on {body}");
        }
    }

    #[test]
    fn maps_email_account_id_and_approval() {
        let rule = rule(
            "email = \"/data/email\"\naccount_id = \"/data/id\"\napproval = true\nactions = [\"suspend_access\"]",
        );
        let chain = only_chain(
            &rule,
            &json!({"data": {"email": "Alice@Example.COM", "id": "5b10a"}}),
        );
        assert_eq!(chain.rule, "r");
        assert_eq!(chain.email.as_str(), "alice@example.com");
        assert_eq!(chain.account_id.as_deref(), Some("5b10a"));
        assert!(chain.approval);
        assert_eq!(chain.steps.len(), 1);
        assert_eq!(chain.steps[0].action, Action::SuspendAccess);
        assert_eq!(chain.steps[0].params, Map::new());
        assert_eq!(chain.steps[0].run_at, now());
    }

    #[test]
    fn account_id_is_optional_but_must_be_a_string_when_present() {
        let rule = rule(&format!("account_id = \"/id\"\n{SUSPEND}"));
        let cases = [
            (json!({"email": "a@example.com"}), Ok(None)),
            (json!({"email": "a@example.com", "id": null}), Ok(None)),
            (
                json!({"email": "a@example.com", "id": "abc"}),
                Ok(Some("abc")),
            ),
            (json!({"email": "a@example.com", "id": ""}), Ok(None)),
            (json!({"email": "a@example.com", "id": 42}), Err("a number")),
            (
                json!({"email": "a@example.com", "id": ["abc"]}),
                Err("an array"),
            ),
        ];
        for (body, expected) in cases {
            match expected {
                Ok(id) => assert_eq!(only_chain(&rule, &body).account_id.as_deref(), id, "{body}"),
                Err(why) => {
                    let message = unmappable(&rule, &body);
                    assert!(
                        message.contains("\"/id\"") && message.contains(why),
                        "{message}"
                    );
                }
            }
        }
    }

    #[test]
    fn email_must_be_present_a_string_and_valid() {
        let rule = rule(SUSPEND);
        let cases = [
            (json!({}), "is missing"),
            (json!({"email": null}), "null"),
            (json!({"email": 7}), "a number"),
            (json!({"email": {"address": "a@example.com"}}), "an object"),
            (json!({"email": "not-an-email"}), "missing `@`"),
            (json!({"email": " a@example.com"}), "not allowed"),
            (json!({"email": "a@localhost"}), "two labels"),
        ];
        for (body, why) in cases {
            let message = unmappable(&rule, &body);
            assert!(message.starts_with("rule \"r\": \"/email\""), "{message}");
            assert!(message.contains(why), "{body}: {message}");
        }
    }

    #[test]
    fn unmappable_messages_quote_only_an_excerpt_of_the_payload() {
        let rule = rule(SUSPEND);
        let huge = "x".repeat(10_000);
        let message = unmappable(&rule, &json!({ "email": huge }));
        assert!(message.len() < 200, "{message}");
        assert!(message.ends_with("…"), "{message}");
    }

    #[test]
    fn at_accepts_dates_timestamps_and_epoch_millis() {
        let cases = [
            (json!("2024-07-01"), None, Some("2024-07-01T00:00:00Z")),
            (
                json!("2024-07-01"),
                Some("Europe/Berlin"),
                Some("2024-06-30T22:00:00Z"),
            ),
            (
                json!("2024-01-15"),
                Some("Europe/Berlin"),
                Some("2024-01-14T23:00:00Z"),
            ),
            (
                json!("2024-07-01"),
                Some("America/New_York"),
                Some("2024-07-01T04:00:00Z"),
            ),
            (
                json!("2024-07-01T09:30:00+02:00"),
                None,
                Some("2024-07-01T07:30:00Z"),
            ),
            (
                json!("2024-07-01T09:30:00Z"),
                Some("Europe/Berlin"),
                Some("2024-07-01T09:30:00Z"),
            ),
            (
                json!("2024-07-01T09:30:00.250Z"),
                None,
                Some("2024-07-01T09:30:00.250Z"),
            ),
            (
                json!(1_719_792_000_000_i64),
                None,
                Some("2024-07-01T00:00:00Z"),
            ),
            (json!("1719792000000"), None, Some("2024-07-01T00:00:00Z")),
            (json!(0), None, Some("1970-01-01T00:00:00Z")),
            (json!("tomorrow"), None, None),
            (json!("2024-13-01"), None, None),
            (json!("2024-02-30"), None, None),
            (json!("2024-7-1"), None, None),
            (json!("+12024-07-01"), None, None),
            (json!("01/07/2024"), None, None),
            (json!(""), None, None),
            (json!(1.719792e12), None, None),
            (json!(u64::MAX), None, None),
            (json!(i64::MAX), None, None),
            (json!("99999999999999999999999"), None, None),
            (json!(true), None, None),
            (json!(null), None, None),
        ];
        for (at, timezone, expected) in cases {
            let timezone = timezone.map_or(String::new(), |tz| format!("timezone = \"{tz}\"\n"));
            let rule = rule(&format!("at = \"/end\"\n{timezone}{SUSPEND}"));
            let body = json!({"email": "a@example.com", "end": at});
            match expected {
                Some(when) => {
                    assert_eq!(only_chain(&rule, &body).steps[0].run_at, utc(when), "{at}")
                }
                None => {
                    let message = unmappable(&rule, &body);
                    assert!(
                        message.contains("\"/end\" is not a date"),
                        "{at}: {message}"
                    );
                }
            }
        }
        let missing = unmappable(
            &rule(&format!("at = \"/end\"\n{SUSPEND}")),
            &json!({"email": "a@example.com"}),
        );
        assert!(missing.contains("\"/end\" is missing"), "{missing}");
    }

    #[test]
    fn a_date_starts_at_local_midnight_across_dst_changes() {
        let cases = [
            // Spring forward at 02:00: midnight is still CET (+01:00).
            ("Europe/Berlin", "2024-03-31", "2024-03-30T23:00:00Z"),
            // Fall back at 03:00: midnight is still CEST (+02:00).
            ("Europe/Berlin", "2024-10-27", "2024-10-26T22:00:00Z"),
            // Clocks jumped from 00:00 to 01:00: the day starts at 01:00 -02:00.
            ("America/Sao_Paulo", "2018-11-04", "2018-11-04T03:00:00Z"),
            // Clocks fell back from 01:00 to 00:00: the earlier midnight (-04:00) counts.
            ("America/Havana", "2023-11-05", "2023-11-05T04:00:00Z"),
            // Samoa skipped 30 December 2011 entirely: the next day's midnight (+14:00).
            ("Pacific/Apia", "2011-12-30", "2011-12-30T10:00:00Z"),
        ];
        for (timezone, date, expected) in cases {
            let rule = rule(&format!(
                "at = \"/end\"\ntimezone = \"{timezone}\"\n{SUSPEND}"
            ));
            let body = json!({"email": "a@example.com", "end": date});
            assert_eq!(
                only_chain(&rule, &body).steps[0].run_at,
                utc(expected),
                "{timezone} {date}"
            );
        }
    }

    #[test]
    fn steps_run_at_the_start_plus_their_own_after() {
        let cases = [
            (
                "at = \"/end\"\ndelay = \"1h\"\nactions = [\"suspend_access\", { action = \"remove_from_group\", group_id = \"g1\", after = \"1d\" }, { action = \"delete_account\", after = \"30d\" }]",
                vec![
                    (Action::SuspendAccess, "2024-07-01T01:00:00Z"),
                    (Action::RemoveFromGroup, "2024-07-02T01:00:00Z"),
                    (Action::DeleteAccount, "2024-07-31T01:00:00Z"),
                ],
            ),
            (
                "actions = [{ action = \"deactivate_account\", after = \"15m\" }, { action = \"delete_account\", after = \"12h\" }]",
                vec![
                    (Action::DeactivateAccount, "2024-06-01T12:15:00Z"),
                    (Action::DeleteAccount, "2024-06-02T00:00:00Z"),
                ],
            ),
            (
                "delay = \"30s\"\nactions = [\"revoke_portal_access\", \"delete_portal_customer\"]",
                vec![
                    (Action::RevokePortalAccess, "2024-06-01T12:00:30Z"),
                    (Action::DeletePortalCustomer, "2024-06-01T12:00:30Z"),
                ],
            ),
        ];
        for (lines, expected) in cases {
            let rule = rule(&format!("email = \"/email\"\n{lines}"));
            let chain = only_chain(
                &rule,
                &json!({"email": "a@example.com", "end": "2024-07-01"}),
            );
            let got: Vec<(Action, DateTime<Utc>)> = chain
                .steps
                .iter()
                .map(|step| (step.action, step.run_at))
                .collect();
            let want: Vec<(Action, DateTime<Utc>)> = expected
                .into_iter()
                .map(|(action, at)| (action, utc(at)))
                .collect();
            assert_eq!(got, want, "{lines}");
        }
    }

    #[test]
    fn params_become_strings() {
        let cases = [
            ("\"suspend_access\"", json!({})),
            ("{ action = \"suspend_access\" }", json!({})),
            (
                "{ action = \"remove_from_group\", group_id = \"abc-123\" }",
                json!({"group_id": "abc-123"}),
            ),
            (
                "{ action = \"remove_from_service_desk\", service_desk_id = 10 }",
                json!({"service_desk_id": "10"}),
            ),
            (
                "{ action = \"remove_from_customer_organization\", organization_id = \"3\" }",
                json!({"organization_id": "3"}),
            ),
        ];
        for (action, params) in cases {
            let rule = rule(&format!("email = \"/email\"\nactions = [{action}]"));
            let chain = only_chain(&rule, &json!({"email": "a@example.com"}));
            assert_eq!(
                Value::Object(chain.steps[0].params.clone()),
                params,
                "{action}"
            );
        }
    }

    const EMPLOYEES: &str = "for_each = \"/employees\"\nwhere = { \"/status\" = [\"terminated\", \"resigned\"] }\nemail = \"/mail\"\nat = \"/end\"\nactions = [\"suspend_access\"]";

    #[test]
    fn for_each_maps_every_selected_element() {
        let rule = rule(&format!("when = {{ \"/type\" = \"batch\" }}\n{EMPLOYEES}"));
        let body = json!({"type": "batch", "employees": [
            {"mail": "A@example.com", "status": "terminated", "end": "2024-07-01"},
            {"mail": "not valid", "status": "active"},
            {"status": "on_leave"},
            "not even an object",
            {"mail": "c@example.com", "status": "resigned", "end": "2024-08-01"},
        ]});
        let got: Vec<(String, DateTime<Utc>)> = chains(rule.apply(&body, now()).unwrap())
            .into_iter()
            .map(|chain| (chain.email.to_string(), chain.steps[0].run_at))
            .collect();
        assert_eq!(
            got,
            [
                ("a@example.com".to_string(), utc("2024-07-01T00:00:00Z")),
                ("c@example.com".to_string(), utc("2024-08-01T00:00:00Z")),
            ]
        );
        let nothing_selected = json!({"type": "batch", "employees": [{"status": "active"}]});
        assert_eq!(rule.apply(&nothing_selected, now()).unwrap(), []);
        assert_eq!(
            rule.apply(&json!({"type": "batch", "employees": []}), now())
                .unwrap(),
            []
        );
        assert_eq!(
            rule.apply(&json!({"type": "other"}), now()).unwrap(),
            [],
            "when is checked first"
        );
    }

    #[test]
    fn for_each_over_plain_addresses_uses_the_element_itself() {
        let rule = rule("for_each = \"/emails\"\nemail = \"\"\nactions = [\"suspend_access\"]");
        let plans = chains(
            rule.apply(
                &json!({"emails": ["a@example.com", "B@example.com"]}),
                now(),
            )
            .unwrap(),
        );
        let emails: Vec<&str> = plans.iter().map(|chain| chain.email.as_str()).collect();
        assert_eq!(emails, ["a@example.com", "b@example.com"]);
    }

    #[test]
    fn for_each_must_point_at_an_array() {
        let rule = rule(EMPLOYEES);
        let cases = [
            (json!({}), "is missing"),
            (
                json!({"employees": {"mail": "a@example.com"}}),
                "is an object, not an array",
            ),
            (
                json!({"employees": "a@example.com"}),
                "is a string, not an array",
            ),
            (json!({"employees": null}), "is null, not an array"),
        ];
        for (body, why) in cases {
            let message = unmappable(&rule, &body);
            assert_eq!(
                message,
                format!(
                    "rule \"r\": `for_each` \"/employees\" {why}{}",
                    excerpt_suffix(&body)
                )
            );
        }
    }

    fn excerpt_suffix(body: &Value) -> String {
        match body.pointer("/employees") {
            None => String::new(),
            Some(value) => format!(": {value}"),
        }
    }

    #[test]
    fn one_bad_selected_element_fails_the_whole_delivery() {
        let rule = rule(EMPLOYEES);
        let cases = [
            (
                json!({"status": "terminated", "end": "2024-07-01"}),
                "\"/mail\" is missing",
            ),
            (
                json!({"status": "terminated", "mail": "nope", "end": "2024-07-01"}),
                "\"/mail\" is not a valid email",
            ),
            (
                json!({"status": "resigned", "mail": "b@example.com", "end": "soon"}),
                "\"/end\" is not a date",
            ),
            (
                json!({"status": "resigned", "mail": "b@example.com"}),
                "\"/end\" is missing",
            ),
        ];
        for (bad, why) in cases {
            let good =
                json!({"status": "terminated", "mail": "a@example.com", "end": "2024-07-01"});
            let body = json!({"employees": [good, bad]});
            let message = unmappable(&rule, &body);
            assert!(
                message.starts_with("rule \"r\", element \"/employees/1\": "),
                "{message}"
            );
            assert!(message.contains(why), "{message}");
        }
    }

    #[test]
    fn cancel_rules_plan_one_cancellation_per_person() {
        let single = rule(
            "when = { \"/type\" = \"contract.extended\" }\nemail = \"/data/email\"\ncancel = true",
        );
        let body = json!({"type": "contract.extended", "data": {"email": "Bob@Example.com"}});
        assert_eq!(
            single.apply(&body, now()).unwrap(),
            [Plan::Cancel {
                rule: "r".into(),
                email: Email::parse("bob@example.com").unwrap()
            }]
        );
        assert!(single.is_cancel());
        assert_eq!(single.actions(), []);

        let batch = rule(
            "for_each = \"/people\"\nwhere = { \"/rehired\" = true }\nemail = \"/email\"\ncancel = true",
        );
        let body = json!({"people": [
            {"email": "a@example.com", "rehired": true},
            {"email": "b@example.com", "rehired": false},
            {"email": "c@example.com", "rehired": true},
        ]});
        let cancelled: Vec<String> = batch
            .apply(&body, now())
            .unwrap()
            .into_iter()
            .map(|plan| match plan {
                Plan::Cancel { email, .. } => email.to_string(),
                Plan::Chain(chain) => panic!("expected a cancellation, got {chain:?}"),
            })
            .collect();
        assert_eq!(cancelled, ["a@example.com", "c@example.com"]);
    }

    #[test]
    fn map_delivery_concatenates_matching_rules_and_fails_as_a_whole() {
        let ended = rule(
            "when = { \"/type\" = \"ended\" }\nemail = \"/email\"\nactions = [\"suspend_access\"]",
        );
        let also =
            rule("email = \"/email\"\naccount_id = \"/id\"\nactions = [\"deactivate_account\"]");
        let other = rule(
            "when = { \"/type\" = \"hired\" }\nemail = \"/other\"\nactions = [\"delete_account\"]",
        );
        let rules = [ended, other, also];
        let body = json!({"type": "ended", "email": "a@example.com"});
        let actions: Vec<Action> = chains(map_delivery(&rules, &body, now()).unwrap())
            .iter()
            .map(|chain| chain.steps[0].action)
            .collect();
        assert_eq!(actions, [Action::SuspendAccess, Action::DeactivateAccount]);

        let bad_id = json!({"type": "ended", "email": "a@example.com", "id": 5});
        let Unmappable(message) = map_delivery(&rules, &bad_id, now()).unwrap_err();
        assert!(message.contains("\"/id\""), "{message}");
        assert_eq!(map_delivery(&[], &body, now()).unwrap(), []);
    }

    #[test]
    fn compile_reports_each_mistake_with_a_fix() {
        let cases = [
            ("actions = [\"suspend_access\"]", "missing `email`"),
            (
                "email = \"data/email\"\nactions = [\"suspend_access\"]",
                "`email` \"data/email\" is not a JSON Pointer: it must be empty or start with `/`, e.g. \"/data/email\"",
            ),
            (
                "email = \"/a~2b\"\nactions = [\"suspend_access\"]",
                "`email` \"/a~2b\" is not a JSON Pointer: `~` must be written `~0`",
            ),
            (
                "email = \"/a~\"\nactions = [\"suspend_access\"]",
                "`~` must be written",
            ),
            (
                "for_each = \"people\"\nemail = \"/e\"\nactions = [\"suspend_access\"]",
                "`for_each` \"people\" is not a JSON Pointer",
            ),
            (
                "for_each = \"/p\"\nwhere = { \"status\" = \"x\" }\nemail = \"/e\"\nactions = [\"suspend_access\"]",
                "`where` key \"status\" is not a JSON Pointer",
            ),
            (
                "when = { \"type\" = \"x\" }\nemail = \"/e\"\nactions = [\"suspend_access\"]",
                "`when` key \"type\" is not a JSON Pointer",
            ),
            (
                "when = { \"/type\" = [] }\nemail = \"/e\"\nactions = [\"suspend_access\"]",
                "`when` \"/type\" lists no values",
            ),
            (
                "email = \"/e\"\nat = \"end\"\nactions = [\"suspend_access\"]",
                "`at` \"end\" is not a JSON Pointer",
            ),
            (
                "email = \"/e\"\naccount_id = \"id\"\nactions = [\"suspend_access\"]",
                "`account_id` \"id\" is not a JSON Pointer",
            ),
            (
                "where = { \"/status\" = \"x\" }\nemail = \"/e\"\nactions = [\"suspend_access\"]",
                "`where` filters the elements of `for_each`: add `for_each` or remove `where`",
            ),
            (
                "email = \"/e\"\nactions = [\"suspend\"]",
                "in `actions`: unknown action `suspend` (expected one of: revoke_portal_access,",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"delete\" }]",
                "unknown action `delete`",
            ),
            (
                "email = \"/e\"\nactions = [\"remove_from_group\"]",
                "`remove_from_group` needs `group_id`: write { action = \"remove_from_group\", group_id = \"...\" }",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_service_desk\" }]",
                "`remove_from_service_desk` needs `service_desk_id`",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_customer_organization\", group_id = \"1\" }]",
                "`remove_from_customer_organization` needs `organization_id`",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_customer_organization\", group_id = \"1\" }]",
                "unknown parameter `group_id` for `remove_from_customer_organization`: it takes only `organization_id` and `after`",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"suspend_access\", group_id = \"1\" }]",
                "unknown parameter `group_id` for `suspend_access`: it takes only `after`",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_group\", group_id = true }]",
                "`group_id` of `remove_from_group` must be a non-empty string or an integer",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_group\", group_id = \"\" }]",
                "`group_id` of `remove_from_group` must be a non-empty string",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"remove_from_group\", group_id = 1.5 }]",
                "must be a non-empty string or an integer",
            ),
            (
                "email = \"/e\"\nactions = [{ action = \"delete_account\", after = \"30\" }]",
                "`after` of `delete_account`: invalid duration `30`",
            ),
            (
                "email = \"/e\"\ndelay = \"1w\"\nactions = [\"suspend_access\"]",
                "`delay`: invalid duration `1w`",
            ),
            (
                "email = \"/e\"\ntimezone = \"Europe/Berln\"\nactions = [\"suspend_access\"]",
                "unknown `timezone` \"Europe/Berln\": use an IANA name",
            ),
            (
                "email = \"/e\"\ncancel = true\nactions = [\"suspend_access\"]",
                "`actions` has no effect with `cancel = true`",
            ),
            (
                "email = \"/e\"\ncancel = true\napproval = true",
                "`approval` has no effect with `cancel = true`",
            ),
            (
                "email = \"/e\"\ncancel = true\nat = \"/end\"",
                "`at` has no effect with `cancel = true`",
            ),
            (
                "email = \"/e\"\ncancel = true\ndelay = \"1d\"",
                "`delay` has no effect with `cancel = true`",
            ),
            ("email = \"/e\"", "no `actions`: list at least one"),
            ("email = \"/e\"\nactions = []", "no `actions`"),
            ("email = \"/e\"\ncancel = false", "no `actions`"),
            (
                "email = \"/e\"\nactions = [\"suspend_access\", { action = \"suspend_access\", after = \"1d\" }]",
                "action `suspend_access` appears twice in `actions`: list it once",
            ),
        ];
        for (lines, expected) in cases {
            let problems = compile_errors(lines);
            assert!(
                problems
                    .iter()
                    .any(|p| p == &format!("rule \"r\": {expected}") || p.contains(expected)),
                "{lines}\n  expected {expected:?}\n  got {problems:#?}"
            );
            assert!(
                problems.iter().all(|p| p.starts_with("rule \"r\": ")),
                "{problems:#?}"
            );
        }
        let unnamed =
            toml::from_str::<RuleSpec>("name = \" \"\nemail = \"/e\"\ncancel = true").unwrap();
        assert_eq!(
            Rule::compile(unnamed).unwrap_err(),
            ["rule \" \": `name` must not be empty"]
        );
    }

    #[test]
    fn compile_returns_every_problem_at_once() {
        let problems = Rule::compile(
            toml::from_str(
                r#"
                name = "contract-ended"
                when = { "type" = "x" }
                where = { "/s" = "y" }
                timezone = "Mars/Olympus"
                delay = "soon"
                actions = ["suspend", "remove_from_group", { action = "delete_account", after = "1y", color = "red" }]
                "#,
            )
            .unwrap(),
        )
        .unwrap_err();
        let expected = [
            "`where` filters",
            "missing `email`",
            "`when` key \"type\"",
            "unknown `timezone`",
            "`delay`: invalid duration",
            "unknown action `suspend`",
            "`remove_from_group` needs `group_id`",
            "`after` of `delete_account`",
            "unknown parameter `color`",
        ];
        assert_eq!(problems.len(), expected.len(), "{problems:#?}");
        for (problem, fragment) in problems.iter().zip(expected) {
            assert!(
                problem.starts_with("rule \"contract-ended\": "),
                "{problem}"
            );
            assert!(
                problem.contains(fragment),
                "{problem} should mention {fragment}"
            );
        }
    }

    /// The two rule tables of INTERFACE §2, verbatim but for the table header.
    const INTERFACE_EXAMPLE: &str = r#"
  [[rules]]
  name = "contract-ended"
  when = { "/type" = "contract.ended" }         # optional; JSON Pointer (RFC 6901) on the whole body -> value or [values]; all must match
  for_each = "/employees"                       # optional: apply the rule to each element of this array
  where = { "/status" = "terminated" }          # optional, with for_each: filter elements (pointers relative to the element)
  email = "/data/email"                         # required: the person's email (exact, case-insensitive match)
  account_id = "/data/accountId"                # optional cross-check: must equal the looked-up account
  at = "/data/end_date"                         # optional: YYYY-MM-DD (00:00 in `timezone`), RFC 3339, or epoch millis
  timezone = "Europe/Berlin"                    # optional, default UTC
  delay = "0s"                                  # optional, added to `at` (or to now)
  approval = false                              # true: jobs wait in awaiting_approval
  actions = ["suspend_access", { action = "delete_account", after = "30d" }]

  [[rules]]
  name = "rehired"
  when = { "/type" = "contract.extended" }
  email = "/data/email"
  cancel = true                                 # cancels the person's pending / awaiting_approval jobs
"#;

    #[test]
    fn the_interface_example_parses_compiles_and_maps() {
        #[derive(Deserialize)]
        struct Source {
            rules: Vec<RuleSpec>,
        }
        let source: Source = toml::from_str(INTERFACE_EXAMPLE).unwrap();
        let rules: Vec<Rule> = source
            .rules
            .into_iter()
            .map(|spec| Rule::compile(spec).unwrap())
            .collect();
        assert_eq!(
            rules.iter().map(Rule::name).collect::<Vec<_>>(),
            ["contract-ended", "rehired"]
        );
        assert_eq!(
            rules[0].actions(),
            [Action::SuspendAccess, Action::DeleteAccount]
        );

        let ended = json!({"type": "contract.ended", "employees": [
            {"status": "terminated", "data": {"email": "Jo@Example.com", "accountId": "5b10", "end_date": "2024-10-27"}},
            {"status": "active", "data": {"email": "kim@example.com", "end_date": "2024-10-27"}},
        ]});
        let plans = map_delivery(&rules, &ended, now()).unwrap();
        let expected = ChainPlan {
            rule: "contract-ended".into(),
            email: Email::parse("jo@example.com").unwrap(),
            account_id: Some("5b10".into()),
            approval: false,
            steps: vec![
                StepPlan {
                    action: Action::SuspendAccess,
                    params: Map::new(),
                    run_at: utc("2024-10-26T22:00:00Z"),
                },
                StepPlan {
                    action: Action::DeleteAccount,
                    params: Map::new(),
                    run_at: utc("2024-11-25T22:00:00Z"),
                },
            ],
        };
        assert_eq!(plans, [Plan::Chain(expected)]);

        let extended = json!({"type": "contract.extended", "data": {"email": "jo@example.com"}});
        assert_eq!(
            map_delivery(&rules, &extended, now()).unwrap(),
            [Plan::Cancel {
                rule: "rehired".into(),
                email: Email::parse("jo@example.com").unwrap()
            }]
        );
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-c0-2@./~ -]{0,8}",
            Just("Alice@Example.com".to_string()),
            Just("2018-11-04".to_string()),
            Just("2024-03-31T01:30:00+01:00".to_string()),
            "[0-9]{1,22}",
            any::<String>(),
        ]
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            text().prop_map(Value::from),
        ];
        leaf.prop_recursive(4, 48, 5, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-c0-2~/]{0,2}", inner, 0..5)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    /// Mostly pointers that can hit the generated bodies, sometimes anything at all.
    fn pointer() -> impl Strategy<Value = String> {
        prop_oneof![19 => "(/([a-c0-2]|~0|~1){0,2}){0,3}", 1 => any::<String>()]
    }

    fn conditions() -> impl Strategy<Value = Option<BTreeMap<String, Value>>> {
        proptest::option::weighted(
            0.3,
            prop::collection::btree_map(pointer(), json_value(), 0..3),
        )
    }

    fn duration() -> impl Strategy<Value = Option<String>> {
        proptest::option::weighted(
            0.3,
            prop_oneof![19 => "[0-9]{1,5}[smhd]", 1 => any::<String>()],
        )
    }

    /// Mostly well-formed actions, so that many generated rules compile and reach `apply`.
    fn action_spec() -> impl Strategy<Value = ActionSpec> {
        let action = prop::sample::select(Action::ALL.to_vec());
        let param = prop_oneof![9 => "[0-9a-z]{1,6}".prop_map(Value::from), 1 => json_value()];
        let table = (action.clone(), duration(), param).prop_map(|(action, after, value)| {
            let params = action.required_param().map(|key| (key.to_string(), value));
            ActionSpec::Table(ActionTable {
                action: action.to_string(),
                after,
                params: params.into_iter().collect(),
            })
        });
        prop_oneof![
            4 => action.prop_map(|action| ActionSpec::Name(action.to_string())),
            4 => table,
            1 => any::<String>().prop_map(ActionSpec::Name),
        ]
    }

    fn rule_spec() -> impl Strategy<Value = RuleSpec> {
        let pointers = (
            proptest::option::weighted(0.95, pointer()),
            proptest::option::weighted(0.5, pointer()),
            proptest::option::weighted(0.3, pointer()),
            proptest::option::weighted(0.5, pointer()),
        );
        let timezone = proptest::option::weighted(
            0.5,
            prop_oneof![
                19 => prop::sample::select(vec!["UTC", "Europe/Berlin", "America/Sao_Paulo", "America/Havana", "Pacific/Apia"])
                    .prop_map(String::from),
                1 => any::<String>(),
            ],
        );
        let effect = (
            proptest::option::weighted(0.2, any::<bool>()),
            proptest::option::weighted(0.2, any::<bool>()),
            proptest::option::weighted(0.95, prop::collection::vec(action_spec(), 1..3)),
        );
        (
            pointers,
            conditions(),
            conditions(),
            timezone,
            duration(),
            effect,
        )
            .prop_map(
                |(
                    (email, for_each, account_id, at),
                    when,
                    where_,
                    timezone,
                    delay,
                    (cancel, approval, actions),
                )| RuleSpec {
                    name: "fuzz".into(),
                    when,
                    for_each,
                    where_,
                    email,
                    account_id,
                    at,
                    timezone,
                    delay,
                    approval,
                    actions,
                    cancel,
                },
            )
    }

    fn instant() -> impl Strategy<Value = DateTime<Utc>> {
        (-9_000_000_000_000_i64..9_000_000_000_000)
            .prop_filter_map("out of chrono's range", |secs| {
                DateTime::from_timestamp(secs, 0)
            })
    }

    /// A `for_each` element that is usually mappable, with a field now and then absent or
    /// replaced by arbitrary JSON.
    fn person() -> impl Strategy<Value = Value> {
        fn usually(plausible: BoxedStrategy<Value>) -> impl Strategy<Value = Option<Value>> {
            proptest::option::weighted(0.95, prop_oneof![15 => plausible, 1 => json_value()])
        }
        let email = "[a-zA-Z0-9.+]{1,8}@[a-z]{1,5}\\.(com|de)"
            .prop_map(Value::from)
            .boxed();
        let at = prop_oneof![
            "20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])".prop_map(Value::from),
            (0_i64..4_000_000_000_000).prop_map(Value::from),
            (0_i64..4_000_000_000).prop_filter_map("out of range", |secs| {
                DateTime::from_timestamp(secs, 0).map(|time| Value::from(time.to_rfc3339()))
            }),
        ]
        .boxed();
        let id = prop_oneof!["[a-z0-9:]{1,10}".prop_map(Value::from), Just(Value::Null)].boxed();
        (usually(email), usually(at), usually(id)).prop_map(|(email, at, id)| {
            let fields = [("e", email), ("t", at), ("id", id)];
            Value::Object(
                fields
                    .into_iter()
                    .filter_map(|(key, value)| Some((key.to_string(), value?)))
                    .collect(),
            )
        })
    }

    proptest! {
        #[test]
        fn arbitrary_rules_and_bodies_never_panic(spec in rule_spec(), body in json_value(), now in instant()) {
            if let Ok(rule) = Rule::compile(spec) {
                let _ = map_delivery(std::slice::from_ref(&rule), &body, now);
            }
        }

        #[test]
        fn arbitrary_people_map_or_fail_with_a_short_message(
            people in prop::collection::vec(person(), 0..4),
            timezone in prop::sample::select(vec!["UTC", "Europe/Berlin", "America/Sao_Paulo", "Pacific/Apia"]),
            now in instant(),
        ) {
            let rule = rule(&format!(
                "for_each = \"/people\"\nemail = \"/e\"\nat = \"/t\"\naccount_id = \"/id\"\ntimezone = \"{timezone}\"\ndelay = \"1d\"\nactions = [\"suspend_access\", {{ action = \"delete_account\", after = \"30d\" }}]"
            ));
            match rule.apply(&json!({ "people": people }), now) {
                Ok(plans) => {
                    prop_assert_eq!(plans.len(), people.len());
                    for chain in chains(plans) {
                        prop_assert_eq!(Email::parse(chain.email.as_str()), Ok(chain.email.clone()));
                        prop_assert!(chain.steps[0].run_at < chain.steps[1].run_at);
                    }
                }
                Err(Unmappable(message)) => prop_assert!(message.chars().count() < 240, "{}", message),
            }
        }
    }
}
