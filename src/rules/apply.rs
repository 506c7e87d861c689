//! A compiled rule read against one verified body: `when`, then `for_each` and `where`, then
//! each person's email, account id and start. A delivery maps all or nothing.

use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::compile::{Condition, Effect, Rule, RuleStep};
use super::instant::{later, parse_instant};
use crate::domain::duration::Span;
use crate::domain::{AccountId, Email, Lane, NewChain, NewStep, Plan, SUCCESSOR, SuccessorRef};

/// Why a verified delivery cannot be turned into jobs: the 422 message. It names the rule, the
/// element and the pointer, and quotes at most a short excerpt of the payload.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Unmappable(pub String);

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
        let (approval, steps) = match &self.rule.effect {
            Effect::Chain { approval, steps } => (approval, steps),
            Effect::Cancel {
                undo,
                approval,
                undo_sources,
            } => {
                return Ok(Plan::Cancel {
                    rule: self.rule.name.clone(),
                    email,
                    undo: *undo,
                    approval: *approval,
                    undo_sources: undo_sources.clone(),
                });
            }
        };
        let account_id = self.account_id()?;
        let start = self.start(now)?;
        let steps = steps
            .iter()
            .map(|step| self.step(step, start, now))
            .collect::<Result<_, _>>()?;
        Ok(Plan::Chain(NewChain {
            rule: self.rule.name.clone(),
            email,
            account_id,
            account_type: None,
            approval: *approval,
            steps,
        }))
    }

    fn step(
        &self,
        step: &RuleStep,
        start: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<NewStep, Unmappable> {
        let mut params = step.params.clone();
        if let Some(Value::String(pointer)) = params.remove(SUCCESSOR)
            && let Some(successor) = self.successor(&pointer)?
        {
            let (name, value) = successor.into_param();
            params.insert(name.to_owned(), value);
        }
        let run_at = self.later(start, step.after)?;
        Ok(NewStep {
            action: step.action,
            params,
            run_at,
            lane: Lane::of_webhook_step(run_at, now),
        })
    }

    /// The successor a hand-over step's pointer finds: an email or an account id. Absent,
    /// null or empty is none, and `[handover] fallback_successor` then applies.
    fn successor(&self, pointer: &str) -> Result<Option<SuccessorRef>, Unmappable> {
        match self.doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(text)) => Ok(SuccessorRef::parse(text)),
            Some(value) => Err(self.fail_at(
                pointer,
                format!(
                    "is {}, expected the successor's email or account id: {}",
                    kind(value),
                    excerpt(value)
                ),
            )),
        }
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
    fn account_id(&self) -> Result<Option<AccountId>, Unmappable> {
        let Some(pointer) = &self.rule.account_id else {
            return Ok(None);
        };
        match self.doc.pointer(pointer) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(id)) if id.is_empty() => Ok(None),
            Some(Value::String(id)) => match AccountId::claimed(id) {
                Ok(id) => Ok(Some(id)),
                Err(why) => {
                    Err(self.fail_at(pointer, format!("is not a valid account id: it {why}")))
                }
            },
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
        later(time, span).ok_or_else(|| self.fail("the scheduled time is out of range"))
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
