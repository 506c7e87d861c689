//! The rules' tests, moved as they were: over ~600 lines because they are one concept, TOML
//! rule tables and JSON bodies in, the plans or the exact messages out, whichever room does
//! the work.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::*;
use crate::domain::{AccountId, Action, Email, NewChain, NewStep, Plan};
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

fn chains(plans: Vec<Plan>) -> Vec<NewChain> {
    plans
        .into_iter()
        .map(|plan| match plan {
            Plan::Chain(chain) => chain,
            Plan::Cancel { .. } => panic!("expected a chain, got {plan:?}"),
        })
        .collect()
}

fn only_chain(rule: &Rule, body: &Value) -> NewChain {
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
            json!({"email": "a@example.com", "id": "a".repeat(129)}),
            Err("longer than 128"),
        ),
        (json!({"email": "a@example.com", "id": "a/b"}), Err("'/'")),
        (json!({"email": "a@example.com", "id": "a%2Fb"}), Err("'%'")),
        (json!({"email": "a@example.com", "id": "a b"}), Err("' '")),
        (
            json!({"email": "a@example.com", "id": "\u{0430}bc"}),
            Err("not a valid account id"),
        ),
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

/// One live job per (action, email, target): a chain may remove a person from two groups,
/// each step its own job.
#[test]
fn a_chain_may_take_one_action_for_two_targets() {
    let rule = rule(
        "email = \"/email\"\nactions = [{ action = \"remove_from_group\", group_id = \"g-1\" }, { action = \"remove_from_group\", group_id = \"g-2\" }]",
    );
    let chain = only_chain(&rule, &json!({"email": "a@example.com"}));
    let targets: Vec<String> = chain.steps.iter().map(|s| s.key_target()).collect();
    assert_eq!(targets, ["g-1", "g-2"]);
}

/// A hand-over's pointer is read into the successor's email or account id; one it does not
/// find leaves the step without one, for `[handover] fallback_successor`. Hand-over steps
/// run first, in the order written.
#[test]
fn a_successor_pointer_is_read_from_the_body() {
    let rule = rule(
        "email = \"/email\"\nactions = [\"suspend_access\", \
         { action = \"transfer_filters\", successor = \"/manager\" }, \
         { action = \"reassign_open_issues\", successor_account_id = \"557058:b\" }]",
    );
    let chain = only_chain(
        &rule,
        &json!({ "email": "l@example.com", "manager": "boss@example.com" }),
    );
    let actions: Vec<Action> = chain.steps.iter().map(|s| s.action).collect();
    assert_eq!(
        actions,
        [
            Action::TransferFilters,
            Action::ReassignOpenIssues,
            Action::SuspendAccess
        ]
    );
    assert_eq!(
        Value::Object(chain.steps[0].params.clone()),
        json!({ "successor_email": "boss@example.com" })
    );
    assert_eq!(
        Value::Object(chain.steps[1].params.clone()),
        json!({ "successor_account_id": "557058:b" })
    );
    let by_id = only_chain(
        &rule,
        &json!({ "email": "l@example.com", "manager": "557058:m" }),
    );
    assert_eq!(
        Value::Object(by_id.steps[0].params.clone()),
        json!({ "successor_account_id": "557058:m" })
    );
    let none = only_chain(&rule, &json!({ "email": "l@example.com" }));
    assert!(none.steps[0].params.is_empty());
    let wrong = unmappable(&rule, &json!({ "email": "l@example.com", "manager": 7 }));
    assert!(
        wrong.contains("expected the successor's email or account id"),
        "{wrong}"
    );
}

/// A webhook's step due within a minute of its delivery is urgent; one planned for later is
/// scheduled (README, "Lanes").
#[test]
fn a_webhook_step_due_now_is_urgent_and_a_later_one_scheduled() {
    let rule = rule(
        "email = \"/email\"\nactions = [\"suspend_access\", \
         { action = \"delete_account\", after = \"14d\" }]",
    );
    let chain = only_chain(&rule, &json!({ "email": "l@example.com" }));
    let lanes: Vec<crate::domain::Lane> = chain.steps.iter().map(|s| s.lane).collect();
    assert_eq!(
        lanes,
        [crate::domain::Lane::Urgent, crate::domain::Lane::Scheduled]
    );
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
        let good = json!({"status": "terminated", "mail": "a@example.com", "end": "2024-07-01"});
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
            email: Email::parse("bob@example.com").unwrap(),
            undo: false,
            approval: false,
            undo_sources: Vec::new(),
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
    let also = rule("email = \"/email\"\naccount_id = \"/id\"\nactions = [\"deactivate_account\"]");
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
            "email = \"/e\"\nactions = [{ action = \"suspend_access\", allow_content_loss = true }]",
            "`allow_content_loss` of `suspend_access`: only a step that deletes an account's filters and dashboards takes it (`delete_account`)",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"delete_account\", allow_content_loss = \"yes\" }]",
            "`allow_content_loss` of `delete_account` must be true or false",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"suspend_access\", successor = \"/m\" }]",
            "unknown parameter `successor` for `suspend_access`: it takes only `after`",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"transfer_filters\", successor = \"m\" }]",
            "`successor` of `transfer_filters` is not a JSON Pointer: it must be empty or start with `/`",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"transfer_filters\", successor_email = \"boss\" }]",
            "`successor_email` of `transfer_filters` is not an email",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"transfer_filters\", successor_account_id = \"a/b\" }]",
            "`successor_account_id` of `transfer_filters` contains '/'",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"transfer_filters\", successor = \"/m\", successor_email = \"b@example.com\" }]",
            "`transfer_filters` names its successor more than once",
        ),
        (
            "email = \"/e\"\nactions = [{ action = \"transfer_filters\", group_id = \"g\" }]",
            "unknown parameter `group_id` for `transfer_filters`: it takes only `after` and its successor",
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
        (
            "email = \"/e\"\nactions = [{ action = \"remove_from_group\", group_id = 7 }, { action = \"remove_from_group\", group_id = \"7\", after = \"1d\" }]",
            "action `remove_from_group` with group_id `7` appears twice in `actions`: list it once",
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

/// The two rule tables of the configuration contract, verbatim but for the table header (the
/// first, with shorter comments, is the example in README, Rules).
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
    let expected = NewChain {
        rule: "contract-ended".into(),
        email: Email::parse("jo@example.com").unwrap(),
        account_id: Some(AccountId::stored("5b10".into())),
        account_type: None,
        approval: false,
        steps: vec![
            NewStep {
                action: Action::SuspendAccess,
                params: Map::new(),
                run_at: utc("2024-10-26T22:00:00Z"),
                lane: crate::domain::Lane::Scheduled,
            },
            NewStep {
                action: Action::DeleteAccount,
                params: Map::new(),
                run_at: utc("2024-11-25T22:00:00Z"),
                lane: crate::domain::Lane::Scheduled,
            },
        ],
    };
    assert_eq!(plans, [Plan::Chain(expected)]);

    let extended = json!({"type": "contract.extended", "data": {"email": "jo@example.com"}});
    assert_eq!(
        map_delivery(&rules, &extended, now()).unwrap(),
        [Plan::Cancel {
            rule: "rehired".into(),
            email: Email::parse("jo@example.com").unwrap(),
            undo: false,
            approval: false,
            undo_sources: Vec::new(),
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
                undo: None,
                undo_sources: None,
            },
        )
}

fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    (-9_000_000_000_000_i64..9_000_000_000_000).prop_filter_map("out of chrono's range", |secs| {
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

#[test]
fn undo_goes_with_cancel_and_may_wait_for_approval() {
    let rehired = rule("email = \"/email\"\ncancel = true\nundo = true\napproval = true");
    let body = json!({ "email": "Ann@Example.com" });
    assert_eq!(
        rehired.apply(&body, now()).unwrap(),
        [Plan::Cancel {
            rule: "r".into(),
            email: Email::parse("ann@example.com").unwrap(),
            undo: true,
            approval: true,
            undo_sources: Vec::new(),
        }]
    );
    let errors = compile_errors("email = \"/email\"\nundo = true\nactions = [\"suspend_access\"]");
    assert!(
        errors.iter().any(|e| e.contains("needs `cancel = true`")),
        "{errors:?}"
    );
    let widened = rule(
        "email = \"/email\"\ncancel = true\nundo = true\nundo_sources = [\"api\", \"console\"]",
    );
    assert_eq!(widened.undo_sources(), ["api", "console"]);
    for text in [
        "email = \"/email\"\ncancel = true\nundo_sources = [\"api\"]",
        "email = \"/email\"\nactions = [\"suspend_access\"]\nundo_sources = [\"api\"]",
    ] {
        let errors = compile_errors(text);
        assert!(
            errors.iter().any(|e| e.contains("`undo_sources`")),
            "{text}: {errors:?}"
        );
    }
    // Without undo, a cancel rule creates no job, so approval would mean nothing.
    let errors = compile_errors("email = \"/email\"\ncancel = true\napproval = true");
    assert!(
        errors.iter().any(|e| e.contains("`approval`")),
        "{errors:?}"
    );
}

#[test]
fn a_rules_ids_are_checked_with_their_key_path() {
    let long = "g".repeat(129);
    for (id, why) in [
        (long.as_str(), "longer than 128"),
        ("g/1", "'/'"),
        ("g%2F1", "'%'"),
        ("g 1", "' '"),
        ("\u{FF47}1", "contains"),
        ("..", "dots"),
    ] {
        let errors = compile_errors(&format!(
            "email = \"/email\"\nactions = [\"suspend_access\", {{ action = \"remove_from_group\", group_id = {id:?} }}]"
        ));
        assert!(
            errors
                .iter()
                .any(|e| e.contains("`actions[1].group_id`") && e.contains(why)),
            "{id:?}: {errors:?}"
        );
    }
    let errors = compile_errors(
        "email = \"/email\"\nactions = [{ action = \"remove_from_service_desk\", service_desk_id = \"\" }]",
    );
    assert!(
        errors.iter().any(|e| e.contains("service_desk_id")),
        "{errors:?}"
    );
    rule(
        "email = \"/email\"\nactions = [{ action = \"remove_from_customer_organization\", organization_id = 3 }]",
    );
}
