//! A rule's `at` over arbitrary values in every time zone: dates, timestamps, epoch millis
//! and anything else a body may hold. Nothing panics, and an RFC 3339 time plans its first
//! step at exactly that instant plus the delay.
#![no_main]

use arbitrary::Arbitrary;
use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use offboard::domain::Plan;
use offboard::rules::{self, ActionSpec, Rule, RuleSpec};
use offboard_fuzz::instant;
use serde_json::{Value, json};

#[derive(Arbitrary, Debug)]
enum When {
    Text(String),
    Millis(i64),
    Float(f64),
}

fuzz_target!(|input: (When, u16, u16, u32)| {
    let (when, zone, delay_days, now) = input;
    let timezone = chrono_tz::TZ_VARIANTS[usize::from(zone) % chrono_tz::TZ_VARIANTS.len()];
    let delay_days = delay_days % 400;
    let spec = RuleSpec {
        name: "at".into(),
        when: None,
        for_each: None,
        where_: None,
        email: Some("/email".into()),
        account_id: None,
        at: Some("/when".into()),
        timezone: Some(timezone.name().into()),
        delay: Some(format!("{delay_days}d")),
        approval: None,
        actions: Some(vec![ActionSpec::Name("suspend_access".into())]),
        cancel: None,
        undo: None,
        undo_sources: None,
    };
    let rule = Rule::compile(spec).expect("a valid rule");
    let when = match when {
        When::Text(text) => Value::from(text),
        When::Millis(millis) => Value::from(millis),
        When::Float(f) => Value::from(f),
    };
    let body = json!({ "email": "leaver@example.com", "when": when });
    let Ok(plans) = rules::map_delivery(&[rule], &body, instant(now)) else {
        return;
    };
    let Some(Plan::Chain(chain)) = plans.first() else {
        panic!("no chain: {plans:?}");
    };
    if let Some(time) = when
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
    {
        let delay = chrono::Duration::days(i64::from(delay_days));
        assert_eq!(chain.steps[0].run_at, time.with_timezone(&Utc) + delay);
    }
});
