//! A proptest fuzz harness for what an unauthenticated caller controls, and for the parsers
//! of what an operator writes: arbitrary headers and bodies go to every scheme's
//! `Verifier::verify`; arbitrary JSON goes to the rules of realistic sources and to arbitrary
//! rules through `rules::map_delivery`; arbitrary TOML, as text and as structured documents,
//! goes to the config loader; and arbitrary text goes to the duration parser and, through a
//! rule's `at`, to the date and time parsing in every time zone; arbitrary and CSV-shaped
//! files go to `jobs import`'s check. Nothing may panic; genuine deliveries must still verify
//! among the noise; what parses must mean what it says.
//!
//! Each target runs `FUZZ_CASES` cases (default 400, what CI runs). For a long run, set
//! `FUZZ_SECONDS`: the target then runs batches of cases until that much time has passed and
//! prints how many it ran, e.g.
//! `FUZZ_SECONDS=600 nice -n 19 cargo test --release --test it fuzz_inputs::durations -- --nocapture`.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Debug;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use offboard::config::{Config, ConfigOrigin};
use offboard::domain::Action;
use offboard::domain::duration::Span;
use offboard::rules::{self, ActionSpec, ActionTable, Rule, RuleSpec};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestCaseResult, TestRunner};
use serde_json::{Map, Value};

/// One source per scheme (two for the configurable ones), each with realistic rules.
const CONFIG: &str = r#"
dry_run = true

[[sources]]
name = "hr"
scheme = "standard-webhooks"
secrets = ["whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD", "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]

  [[sources.rules]]
  name = "contract-ended"
  when = { "/type" = ["contract.ended", "employee.left"] }
  email = "/data/email"
  account_id = "/data/accountId"
  at = "/data/end_date"
  timezone = "Europe/Berlin"
  delay = "1d"
  actions = ["suspend_access", { action = "delete_account", after = "30d" }]

  [[sources.rules]]
  name = "rehired"
  when = { "/type" = "contract.extended" }
  email = "/data/email"
  cancel = true

[[sources]]
name = "jira"
scheme = "hub-signature"
secrets = ["It's a Secret to Everybody"]

  [[sources.rules]]
  name = "offboarding-approved"
  when = { "/webhookEvent" = "jira:issue_updated", "/issue/fields/status/name" = "Approved" }
  email = "/issue/fields/customfield_10071"
  at = "/issue/fields/duedate"
  timezone = "America/Sao_Paulo"
  approval = true
  actions = ["suspend_access", { action = "remove_from_group", group_id = "g-1", after = "1d" }]

[[sources]]
name = "github"
scheme = "hub-signature"
header = "X-Hub-Signature-256"
secrets = ["gh-secret"]

[[sources]]
name = "bamboo"
scheme = "bamboohr"
secrets = ["bamboo-private-key", "second-key"]

  [[sources.rules]]
  name = "terminated"
  for_each = "/employees"
  where = { "/fields/employmentStatus" = "Terminated", "/fields/rehire" = [false, 0] }
  email = "/fields/workEmail"
  at = "/fields/terminationDate"
  timezone = "Pacific/Apia"
  actions = ["suspend_access", { action = "delete_account", after = "30d" }]

[[sources]]
name = "bob"
scheme = "hibob"
secrets = ["hibob-secret"]

  [[sources.rules]]
  name = "left"
  when = { "/type" = "employee.left" }
  email = "/data/email"
  at = "/data/terminationDate"
  timezone = "Europe/London"
  actions = ["suspend_access"]

[[sources]]
name = "deel"
scheme = "deel"
secrets = ["deel-key"]

  [[sources.rules]]
  name = "plain-list"
  for_each = "/data/emails"
  email = ""
  actions = ["remove_from_directory"]

[[sources]]
name = "automation"
scheme = "token"
secrets = ["automation-token"]

  [[sources.rules]]
  name = "customer"
  when = { "/event" = "customer.close_requested" }
  email = "/customer/email"
  account_id = "/customer/accountId"
  actions = ["delete_portal_customer", { action = "remove_from_service_desk", service_desk_id = "10" }]

[[sources]]
name = "okta"
scheme = "token"
header = "X-Okta-Token"
prefix = ""
secrets = ["okta-token"]
"#;

static SOURCES: LazyLock<Config> = LazyLock::new(|| {
    let text = format!("database_url = \"sqlite::memory:\"\n{CONFIG}");
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).unwrap_or_else(|e| panic!("{e}"))
});

/// Every header some scheme reads, in the spellings senders use.
const KNOWN_HEADERS: [&str; 12] = [
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "X-Hub-Signature",
    "X-Hub-Signature-256",
    "X-Atlassian-Webhook-Identifier",
    "X-BambooHR-Signature",
    "X-BambooHR-Timestamp",
    "Bob-Signature",
    "x-deel-signature",
    "Authorization",
    "X-Okta-Token",
];

fn header_name() -> impl Strategy<Value = HeaderName> {
    prop_oneof![
        3 => prop::sample::select(KNOWN_HEADERS.to_vec())
            .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).expect("known name")),
        1 => "[a-z][a-z0-9-]{0,20}"
            .prop_map(|n| HeaderName::from_bytes(n.as_bytes()).expect("token chars")),
    ]
}

/// Any bytes `HeaderValue` accepts: visible ASCII, space, tab and obs-text.
fn raw_header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        8 => 0x20u8..=0x7e,
        1 => Just(b'\t'),
        2 => 0x80u8..=0xff,
    ];
    prop::collection::vec(byte, 0..120)
}

/// Values shaped like what the schemes expect, so the fuzzer gets past the first checks.
fn plausible_header_bytes() -> impl Strategy<Value = Vec<u8>> {
    let now = Utc::now().timestamp();
    let mac = prop::collection::vec(any::<u8>(), 0..80);
    prop_oneof![
        mac.clone()
            .prop_map(|m| format!("v1,{}", STANDARD.encode(m))),
        (mac.clone(), mac.clone()).prop_map(|(a, b)| format!(
            "v1a,{} v1,{}",
            STANDARD.encode(a),
            STANDARD.encode(b)
        )),
        mac.clone()
            .prop_map(|m| format!("sha256={}", hex::encode(m))),
        mac.clone().prop_map(hex::encode),
        mac.prop_map(|m| STANDARD.encode(m)),
        (now - 1000..now + 1000).prop_map(|t| t.to_string()),
        any::<i64>().prop_map(|t| t.to_string()),
        "[0-9]{0,30}",
        "Bearer [ -~]{0,40}",
        Just("Bearer automation-token".to_owned()),
        Just("v1,".to_owned()),
        Just("sha256=".to_owned()),
    ]
    .prop_map(String::into_bytes)
}

fn header_value() -> impl Strategy<Value = HeaderValue> {
    prop_oneof![raw_header_bytes(), plausible_header_bytes()]
        .prop_map(|bytes| HeaderValue::from_bytes(&bytes).expect("strategy yields valid values"))
}

fn headers() -> impl Strategy<Value = HeaderMap> {
    prop::collection::vec((header_name(), header_value()), 0..10).prop_map(|pairs| {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            // `append`, not `insert`: repeated headers are part of the attack surface.
            map.append(name, value);
        }
        map
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..300),
        json_value().prop_map(|v| v.to_string().into_bytes()),
        Just(b"Ping test".to_vec()),
    ]
}

/// Any instant chrono can represent, biased towards the present.
fn instant() -> impl Strategy<Value = DateTime<Utc>> {
    let now = Utc::now().timestamp();
    prop_oneof![
        (now - 100_000..now + 100_000),
        (-8_000_000_000_000i64..8_000_000_000_000),
    ]
    .prop_filter_map("outside chrono's range", |secs| {
        DateTime::from_timestamp(secs, 0)
    })
}

/// Keys the configured pointers look for, plus anything.
fn key() -> impl Strategy<Value = String> {
    let known = [
        "type",
        "data",
        "email",
        "accountId",
        "end_date",
        "employees",
        "fields",
        "workEmail",
        "employmentStatus",
        "terminationDate",
        "rehire",
        "issue",
        "status",
        "name",
        "duedate",
        "customfield_10071",
        "webhookEvent",
        "event",
        "customer",
        "emails",
        "0",
        "1",
        "",
    ];
    prop_oneof![
        4 => prop::sample::select(known.to_vec()).prop_map(str::to_owned),
        1 => any::<String>(),
    ]
}

fn leaf() -> impl Strategy<Value = Value> {
    let known = [
        "contract.ended",
        "contract.extended",
        "employee.left",
        "jira:issue_updated",
        "Approved",
        "Terminated",
        "customer.close_requested",
        "Leaver@Example.com",
        "a@b",
        "x@example.com ",
        "2030-06-30",
        "2030-02-30",
        "2024-03-31",
        "2030-06-30T23:59:59+14:00",
        "1719792000000",
        "99999999999999999999",
        "",
    ];
    prop_oneof![
        1 => Just(Value::Null),
        1 => any::<bool>().prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => any::<u64>().prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        4 => prop::sample::select(known.to_vec()).prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    leaf().prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..6)
                .prop_map(|fields| Value::Object(fields.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `plausible` most of the time, else arbitrary JSON or nothing at all.
fn usually(plausible: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        8 => plausible.prop_map(Some),
        1 => json_value().prop_map(Some),
        1 => Just(None),
    ]
    .boxed()
}

fn email() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => "[a-zA-Z0-9._%+-]{1,12}@[a-z0-9-]{1,10}(\\.[a-z]{2,6}){1,2}",
        1 => "[ -~]{0,20}@[ -~]{0,20}",
    ]
    .prop_map(Value::from)
}

fn when() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => (0_i64..4_102_444_800_000).prop_map(|ms| {
            DateTime::from_timestamp_millis(ms).expect("in range").date_naive().to_string()
        }).prop_map(Value::from),
        1 => "[0-9]{4}-[0-9]{2}-[0-9]{2}".prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => "[0-9]{1,22}".prop_map(Value::from),
        1 => (any::<i32>(), -86_399_i32..86_400).prop_filter_map("no such offset", |(secs, offset)| {
            let offset = chrono::FixedOffset::east_opt(offset)?;
            Some(Value::from(DateTime::from_timestamp(i64::from(secs) * 100, 0)?.with_timezone(&offset).to_rfc3339()))
        }),
    ]
}

fn object(fields: Vec<(&'static str, Option<Value>)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .filter_map(|(key, value)| Some((key.to_owned(), value?)))
            .collect(),
    )
}

/// A body shaped like what the configured sources receive, each field usually plausible, so
/// the rules get past `when` and `for_each` into email, date and account id handling.
fn shaped_body() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec![
        "contract.ended",
        "contract.extended",
        "employee.left",
        "customer.close_requested",
    ])
    .prop_map(Value::from);
    let data = (
        usually(email()),
        usually(prop_oneof![
            Just(Value::Null),
            "[a-z0-9:-]{0,20}".prop_map(Value::from)
        ]),
        usually(when()),
        usually(prop::collection::vec(email(), 0..4).prop_map(Value::from)),
    )
        .prop_map(|(email, account, date, emails)| {
            object(vec![
                ("email", email),
                ("accountId", account),
                ("end_date", date.clone()),
                ("terminationDate", date),
                ("emails", emails),
            ])
        });
    let employee = (
        usually(prop::sample::select(vec!["Terminated", "Part-Time"]).prop_map(Value::from)),
        usually(prop_oneof![
            Just(Value::from(false)),
            Just(Value::from(0)),
            Just(Value::from(0.0))
        ]),
        usually(email()),
        usually(when()),
    )
        .prop_map(|(status, rehire, email, date)| {
            let fields = object(vec![
                ("employmentStatus", status),
                ("rehire", rehire),
                ("workEmail", email),
                ("terminationDate", date),
            ]);
            object(vec![("fields", Some(fields))])
        });
    let issue = (usually(email()), usually(when())).prop_map(|(email, due)| {
        let fields = object(vec![
            ("status", Some(serde_json::json!({ "name": "Approved" }))),
            ("customfield_10071", email),
            ("duedate", due),
        ]);
        object(vec![("fields", Some(fields))])
    });
    let customer = (
        usually(email()),
        usually("[a-z0-9:-]{0,20}".prop_map(Value::from)),
    )
        .prop_map(|(email, account)| object(vec![("email", email), ("accountId", account)]));
    (
        usually(kind.clone()),
        usually(data),
        usually(prop::collection::vec(employee, 0..4).prop_map(Value::from)),
        usually(Just(Value::from("jira:issue_updated"))),
        usually(issue),
        usually(kind),
        usually(customer),
    )
        .prop_map(
            |(kind, data, employees, webhook_event, issue, event, customer)| {
                object(vec![
                    ("type", kind),
                    ("data", data),
                    ("employees", employees),
                    ("webhookEvent", webhook_event),
                    ("issue", issue),
                    ("event", event),
                    ("customer", customer),
                ])
            },
        )
}

/// A genuine delivery for `source` with one thing changed, or nothing.
#[derive(Debug, Clone)]
enum Tamper {
    None,
    DropHeader(prop::sample::Index),
    ReplaceValue(prop::sample::Index, HeaderValue),
    PrependDuplicate(prop::sample::Index, HeaderValue),
    AddHeader(HeaderName, HeaderValue),
    ExtendBody(Vec<u8>),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        2 => Just(Tamper::None),
        1 => any::<prop::sample::Index>().prop_map(Tamper::DropHeader),
        1 => (any::<prop::sample::Index>(), header_value())
            .prop_map(|(i, v)| Tamper::ReplaceValue(i, v)),
        1 => (any::<prop::sample::Index>(), header_value())
            .prop_map(|(i, v)| Tamper::PrependDuplicate(i, v)),
        1 => (header_name(), header_value()).prop_map(|(n, v)| Tamper::AddHeader(n, v)),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(Tamper::ExtendBody),
    ]
}

/// Runs `test` on inputs drawn from `strategy`, `FUZZ_CASES` times or for `FUZZ_SECONDS`.
/// A failure (or panic) is shrunk to a minimal input, which the panic message shows.
fn fuzz<S>(target: &str, strategy: S, test: impl Fn(S::Value) -> TestCaseResult)
where
    S: Strategy,
    S::Value: Debug,
{
    let setting = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.parse::<u64>()
                .unwrap_or_else(|_| panic!("{name} must be a number"))
        })
    };
    let deadline = setting("FUZZ_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    let cases = setting("FUZZ_CASES").unwrap_or(400);
    let started = Instant::now();
    let mut ran: u64 = 0;
    loop {
        let batch = if deadline.is_some() { 1000 } else { cases };
        let config = ProptestConfig {
            cases: u32::try_from(batch).unwrap_or(u32::MAX),
            failure_persistence: None,
            ..ProptestConfig::default()
        };
        // A fresh runner per batch draws a fresh random seed.
        if let Err(failure) = TestRunner::new(config).run(&strategy, &test) {
            panic!("{target}: {failure} (after {ran} passing cases)");
        }
        ran += batch;
        if deadline.is_none_or(|d| Instant::now() >= d) {
            break;
        }
    }
    if deadline.is_some() {
        eprintln!(
            "fuzz {target}: {ran} cases in {:.1?}, no failure",
            started.elapsed()
        );
    }
}

#[test]
fn verifiers_take_arbitrary_headers_and_bodies() {
    fuzz(
        "verifiers_take_arbitrary_headers_and_bodies",
        (headers(), body(), instant()),
        |(headers, body, now)| {
            for source in &SOURCES.sources {
                let _ = source.verifier.verify(&headers, &body, now);
            }
            Ok(())
        },
    );
}

#[test]
fn verifiers_accept_genuine_deliveries_and_survive_tampered_ones() {
    let sources = prop::sample::select((0..SOURCES.sources.len()).collect::<Vec<_>>());
    fuzz(
        "verifiers_accept_genuine_deliveries_and_survive_tampered_ones",
        (sources, body(), tamper(), headers()),
        |(source, body, tamper, noise)| {
            let verifier = &SOURCES.sources[source].verifier;
            let now = Utc::now();
            let signed = verifier.sign(&body, now);
            let mut delivery = HeaderMap::new();
            for (name, value) in &signed {
                let name =
                    HeaderName::from_bytes(name.as_bytes()).expect("sign emits header names");
                delivery.append(
                    name,
                    HeaderValue::from_str(value).expect("sign emits header values"),
                );
            }
            // Unrelated headers a proxy might add.
            for (name, value) in &noise {
                if !signed
                    .iter()
                    .any(|(n, _)| name.as_str().eq_ignore_ascii_case(n))
                {
                    delivery.append(name.clone(), value.clone());
                }
            }
            let mut body = body;
            let names: Vec<HeaderName> = signed
                .iter()
                .map(|(n, _)| HeaderName::from_bytes(n.as_bytes()).expect("valid"))
                .collect();
            match &tamper {
                Tamper::None | Tamper::AddHeader(..) => {}
                Tamper::DropHeader(i) => {
                    delivery.remove(&names[i.index(names.len())]);
                }
                Tamper::ReplaceValue(i, value) => {
                    delivery.insert(&names[i.index(names.len())], value.clone());
                }
                Tamper::PrependDuplicate(i, value) => {
                    let name = &names[i.index(names.len())];
                    let old: Vec<HeaderValue> = delivery.get_all(name).iter().cloned().collect();
                    delivery.insert(name, value.clone());
                    for v in old {
                        delivery.append(name, v);
                    }
                }
                Tamper::ExtendBody(extra) => body.extend_from_slice(extra),
            }
            if let Tamper::AddHeader(name, value) = &tamper {
                delivery.append(name.clone(), value.clone());
            }
            let result = verifier.verify(&delivery, &body, now);
            if matches!(tamper, Tamper::None) {
                prop_assert!(
                    result.is_ok(),
                    "{:?} rejected its own signature: {:?}",
                    verifier.scheme,
                    result
                );
            }
            Ok(())
        },
    );
}

/// What every chain a rule plans must satisfy.
fn check_plans(plans: Vec<offboard::domain::Plan>) -> TestCaseResult {
    for plan in plans {
        if let offboard::domain::Plan::Chain(chain) = plan {
            prop_assert!(!chain.steps.is_empty());
            prop_assert_eq!(
                chain.email.as_str(),
                chain.email.as_str().to_ascii_lowercase()
            );
        }
    }
    Ok(())
}

#[test]
fn rules_of_realistic_sources_take_arbitrary_json() {
    fuzz(
        "rules_of_realistic_sources_take_arbitrary_json",
        (prop_oneof![json_value(), shaped_body()], instant()),
        |(body, now)| {
            for source in &SOURCES.sources {
                if let Ok(plans) = rules::map_delivery(&source.rules, &body, now) {
                    check_plans(plans)?;
                }
            }
            Ok(())
        },
    );
}

/// JSON Pointers the generated rules and bodies share.
fn valid_pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "", "/email", "/data/email", "/data", "/type", "/when", "/list", "/list/0",
            "/a~1b", "/a~0b", "/0", "/-", "/employees", "/fields/workEmail",
        ])
        .prop_map(str::to_owned),
        1 => "(/[a-z0-9]{0,6}){0,4}",
    ]
}

/// Mostly a valid JSON Pointer, sometimes anything.
fn pointer() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => valid_pointer(),
        1 => "(/[a-z0-9~]{0,6}){0,4}",
        1 => any::<String>(),
    ]
}

/// The values `rule_body` puts where the rules look, and the conditions accept.
fn word() -> impl Strategy<Value = Value> {
    prop::sample::select(vec![
        Value::from("a"),
        Value::from("b"),
        Value::from(1),
        Value::from(true),
    ])
}

/// A body with something at every pointer `valid_pointer` names: emails where rules read
/// emails, `at_value`s at `/when`, `word`s elsewhere, so that generated rules plan chains.
fn rule_body() -> impl Strategy<Value = Value> {
    let email = || {
        prop_oneof![
            4 => "[a-zA-Z0-9]{1,12}@[a-z0-9]{1,10}\\.[a-z]{2,6}".prop_map(Value::from),
            1 => email(),
        ]
    };
    (
        (email(), email(), email()),
        (word(), word(), word(), word()),
        at_value(),
        prop::collection::vec(email(), 0..4),
    )
        .prop_map(|((e1, e2, e3), (w1, w2, w3, w4), when, list)| {
            serde_json::json!({
                "email": e1,
                "data": { "email": e2, "type": w1 },
                "type": w2,
                "when": when,
                "list": list,
                "a/b": w3,
                "a~b": w4,
                "0": e3.clone(),
                "employees": [{ "fields": { "workEmail": e3.clone() } }],
                "fields": { "workEmail": e3 },
            })
        })
}

fn condition_map() -> impl Strategy<Value = BTreeMap<String, Value>> {
    let values = prop_oneof![
        3 => word(),
        1 => leaf(),
        2 => prop::collection::vec(word(), 1..3).prop_map(Value::Array),
        1 => prop::collection::vec(leaf(), 1..4).prop_map(Value::Array),
    ];
    prop_oneof![
        6 => prop::collection::btree_map(valid_pointer().prop_filter("not the root", |p| !p.is_empty()), values.clone(), 1..3),
        1 => prop::collection::btree_map(pointer(), values, 0..3),
    ]
}

fn duration_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (0u64..5000, prop::sample::select(vec!["s", "m", "h", "d"]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => "[0-9]{0,25}[smhdy ]?",
        1 => "[ +-]?[0-9]{0,5}[.,_]?[0-9]{0,3}[smhd\u{b5}\u{1d42}]{0,2}",
        1 => any::<String>(),
    ]
}

/// A duration as rules write them: usually valid.
fn rule_duration() -> impl Strategy<Value = String> {
    prop_oneof![
        12 => (0u64..400, prop::sample::select(vec!["s", "m", "h", "d"]))
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        1 => duration_text(),
    ]
}

fn action_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(Action::ALL.to_vec()).prop_map(|a| a.as_str().to_owned()),
        1 => any::<String>(),
    ]
}

/// An action as a rule's `actions` lists it: usually well formed (with the parameter the
/// action needs, and sometimes an `after`), sometimes anything.
fn action_spec() -> impl Strategy<Value = ActionSpec> {
    let wellformed = (
        prop::sample::select(Action::ALL.to_vec()),
        proptest::option::weighted(0.4, rule_duration()),
        "[a-z0-9-]{1,8}",
    )
        .prop_map(
            |(action, after, id)| match (action.required_param(), after) {
                (None, None) => ActionSpec::Name(action.as_str().to_owned()),
                (param, after) => ActionSpec::Table(ActionTable {
                    action: action.as_str().to_owned(),
                    after,
                    params: param
                        .map(|p| (p.to_owned(), Value::from(id)))
                        .into_iter()
                        .collect(),
                }),
            },
        );
    let params = prop::collection::btree_map(
        prop_oneof![
            prop::sample::select(vec![
                "group_id",
                "service_desk_id",
                "organization_id",
                "role"
            ])
            .prop_map(str::to_owned),
            any::<String>(),
        ],
        leaf(),
        0..3,
    );
    let anything = prop_oneof![
        action_name().prop_map(ActionSpec::Name),
        (action_name(), proptest::option::of(duration_text()), params).prop_map(
            |(action, after, params)| ActionSpec::Table(ActionTable {
                action,
                after,
                params
            })
        ),
    ];
    prop_oneof![8 => wellformed, 1 => anything]
}

fn timezone_name() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec())
            .prop_map(|tz| tz.name().to_owned()),
        1 => any::<String>(),
    ]
}

/// A rule as a `[[sources.rules]]` table gives it: usually one that compiles, so that
/// mapping gets exercised, sometimes not.
fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    let maybe = |p: f64| proptest::option::weighted(p, pointer());
    // Where the person is: mostly where `rule_body` puts emails, alone or in a list.
    let person = prop_oneof![
        6 => prop::sample::select(vec!["/email", "/data/email", "/fields/workEmail", "/0"])
            .prop_map(|email| (None, Some(email.to_owned()))),
        1 => Just((Some("/list".to_owned()), Some(String::new()))),
        1 => Just((Some("/employees".to_owned()), Some("/fields/workEmail".to_owned()))),
        1 => (maybe(0.5), proptest::option::weighted(0.95, pointer())),
    ];
    (
        (
            prop_oneof![8 => "[a-z-]{1,12}", 1 => any::<String>()],
            proptest::option::weighted(0.5, condition_map()),
            person,
        ),
        (proptest::option::weighted(0.3, condition_map()), maybe(0.3)),
        (maybe(0.5), proptest::option::weighted(0.5, timezone_name())),
        (
            proptest::option::weighted(0.3, rule_duration()),
            proptest::option::of(any::<bool>()),
            proptest::option::weighted(0.97, prop::collection::vec(action_spec(), 1..4)),
            proptest::option::weighted(0.1, any::<bool>()),
        ),
    )
        .prop_map(
            |(
                (name, when, (for_each, email)),
                (where_, account_id),
                (at, timezone),
                (delay, approval, actions, cancel),
            )| RuleSpec {
                name,
                when,
                // `where` filters a `for_each`; mostly it comes with one.
                where_: where_.filter(|_| for_each.is_some() || cancel == Some(false)),
                for_each,
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

#[test]
fn arbitrary_rules_take_arbitrary_json() {
    fuzz(
        "arbitrary_rules_take_arbitrary_json",
        (
            prop::collection::vec(rule_spec(), 1..3),
            prop_oneof![1 => json_value(), 1 => shaped_body(), 3 => rule_body()],
            instant(),
        ),
        |(specs, body, now)| {
            let rules: Vec<Rule> = specs
                .into_iter()
                .filter_map(|spec| Rule::compile(spec).ok())
                .collect();
            if let Ok(plans) = rules::map_delivery(&rules, &body, now) {
                check_plans(plans)?;
            }
            Ok(())
        },
    );
}

#[test]
fn durations_parse_exactly_or_refuse() {
    fuzz(
        "durations_parse_exactly_or_refuse",
        duration_text(),
        |text| {
            let parsed = Span::parse(&text);
            // What the text says, if it is `<digits><unit>` (after trimming).
            let trimmed = text.trim();
            let expected = trimmed
                .char_indices()
                .last()
                .and_then(|(at, unit)| {
                    let digits = &trimmed[..at];
                    let factor: u128 = match unit {
                        's' => 1,
                        'm' => 60,
                        'h' => 3600,
                        'd' => 86_400,
                        _ => return None,
                    };
                    let all_digits =
                        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit());
                    all_digits.then(|| {
                        digits
                            .parse::<u128>()
                            .ok()
                            .and_then(|n| n.checked_mul(factor))
                            .unwrap_or(u128::MAX)
                    })
                })
                .filter(|secs| *secs <= 3660 * 86_400);
            match (&parsed, expected) {
                (Ok(span), Some(secs)) => {
                    prop_assert_eq!(u128::from(span.as_secs()), secs);
                    prop_assert_eq!(Span::parse(&span.to_string()), Ok(*span), "round trip");
                    let _ = (span.to_chrono(), span.to_std());
                }
                (Err(_), None) => {}
                _ => prop_assert!(
                    false,
                    "{:?} parsed as {:?}, expected {:?}",
                    text,
                    parsed,
                    expected
                ),
            }
            Ok(())
        },
    );
}

/// What a rule's `at` may find in a body: dates, timestamps and epoch millis, well formed
/// or nearly so, in every range.
fn at_value() -> impl Strategy<Value = Value> {
    let date =
        (0i32..10_000, 0u32..14, 0u32..33).prop_map(|(y, m, d)| format!("{y:04}-{m:02}-{d:02}"));
    let offset = prop_oneof![
        Just("Z".to_owned()),
        (0u32..25, 0u32..61, any::<bool>())
            .prop_map(|(h, m, east)| format!("{}{h:02}:{m:02}", if east { '+' } else { '-' })),
    ];
    let timestamp = (
        date.clone(),
        0u32..25,
        0u32..61,
        0u32..62,
        "(\\.[0-9]{1,12})?",
        offset,
    )
        .prop_map(|(d, h, m, s, frac, off)| format!("{d}T{h:02}:{m:02}:{s:02}{frac}{off}"));
    prop_oneof![
        4 => date.prop_map(Value::from),
        3 => timestamp.prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => (-62_000_000_000_000i64..260_000_000_000_000).prop_map(Value::from),
        1 => "[0-9]{1,22}".prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
        1 => leaf(),
    ]
}

#[test]
fn at_times_parse_in_every_timezone() {
    let timezones = prop::sample::select(chrono_tz::TZ_VARIANTS.to_vec());
    fuzz(
        "at_times_parse_in_every_timezone",
        (at_value(), timezones, 0u64..400, instant()),
        |(when, timezone, delay_days, now)| {
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
            let body = serde_json::json!({ "email": "leaver@example.com", "when": when });
            let Ok(plans) = rules::map_delivery(&[rule], &body, now) else {
                return Ok(());
            };
            let Some(offboard::domain::Plan::Chain(chain)) = plans.first() else {
                return Err(TestCaseError::fail(format!("no chain: {plans:?}")));
            };
            let delay = chrono::Duration::days(i64::try_from(delay_days).unwrap());
            let start = chain.steps[0].run_at - delay;
            let text = when.as_str().unwrap_or_default();
            if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
                // A date starts at the first instant of that day (or after it, when the day
                // begins inside a gap) in the rule's zone.
                let midnight = date.and_time(NaiveTime::MIN);
                let local = start.with_timezone(&timezone).naive_local();
                let before = (start - chrono::Duration::seconds(1))
                    .with_timezone(&timezone)
                    .naive_local();
                prop_assert!(
                    local >= midnight && before < midnight,
                    "{} in {}: starts at {} ({} local)",
                    text,
                    timezone,
                    start,
                    local
                );
            } else if let Ok(time) = DateTime::parse_from_rfc3339(text) {
                // Compared after adding the delay: a leap second (`:60`) does not survive
                // subtracting it again.
                prop_assert_eq!(chain.steps[0].run_at, time.with_timezone(&Utc) + delay);
            } else if let Some(millis) = when.as_i64() {
                let time = DateTime::from_timestamp_millis(millis);
                prop_assert_eq!(Some(chain.steps[0].run_at), time.map(|t| t + delay));
            }
            Ok(())
        },
    );
}

/// The secret literals the generated configs use; none may show in a parsed config's Debug.
const SECRET_LITERALS: [&str; 3] = [
    "s3cret-admin-4f1d",
    // Base64 too, so that `standard-webhooks` takes it.
    "s3cretS0urce9a2c",
    "s3cret-atlassian-77e0",
];

/// A TOML basic string: JSON's escapes are TOML's, except that TOML also escapes DEL.
fn toml_string(text: &str) -> String {
    serde_json::to_string(text)
        .expect("strings serialize")
        .replace('\u{7f}', "\\u007F")
}

/// Any TOML value, as text.
fn toml_any() -> BoxedStrategy<String> {
    let scalar = prop_oneof![
        any::<String>().prop_map(|s| toml_string(&s)),
        prop::sample::select(vec![
            "\"\"",
            "\"env:OFFBOARD_FUZZ\"",
            "\"env:\"",
            "\"file:/nonexistent/secret\"",
            "\"file:\"",
            "true",
            "false",
            "0",
            "-1",
            "1e400",
            "nan",
            "-inf",
            "0x10",
            "1_000",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
            "[]",
            "{}",
        ])
        .prop_map(str::to_owned),
        any::<i64>().prop_map(|i| i.to_string()),
        any::<f64>().prop_map(toml_float),
    ];
    scalar
        .prop_recursive(2, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4)
                    .prop_map(|items| format!("[{}]", items.join(", "))),
                prop::collection::vec(("[a-z_]{1,8}", inner), 0..3).prop_map(|fields| {
                    let fields: Vec<String> = fields
                        .into_iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect();
                    format!("{{ {} }}", fields.join(", "))
                }),
            ]
        })
        .boxed()
}

fn toml_float(f: f64) -> String {
    if f.is_nan() {
        "nan".to_owned()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.to_owned()
    } else {
        format!("{f:?}")
    }
}

/// `plausible` mostly, any TOML value sometimes: most documents then get past the types
/// into validation, and some of those through it.
fn typed(plausible: impl Strategy<Value = String> + 'static) -> BoxedStrategy<String> {
    prop_oneof![60 => plausible.boxed(), 1 => toml_any()].boxed()
}

/// A valid value mostly, an invalid one of the right type sometimes.
fn pick(valid: Vec<&'static str>, invalid: Vec<&'static str>) -> BoxedStrategy<String> {
    prop_oneof![19 => quoted(valid), 1 => quoted(invalid)].boxed()
}

fn quoted(values: Vec<&'static str>) -> BoxedStrategy<String> {
    prop::sample::select(values).prop_map(toml_string).boxed()
}

fn int(range: std::ops::Range<i64>) -> BoxedStrategy<String> {
    range.prop_map(|i| i.to_string()).boxed()
}

/// An integer in `valid` mostly, in `wide` sometimes.
fn int_in(valid: std::ops::Range<i64>, wide: std::ops::Range<i64>) -> BoxedStrategy<String> {
    prop_oneof![19 => int(valid), 1 => int(wide)].boxed()
}

fn boolean() -> BoxedStrategy<String> {
    any::<bool>().prop_map(|b| b.to_string()).boxed()
}

fn list(item: BoxedStrategy<String>) -> BoxedStrategy<String> {
    sized_list(item, 0..3)
}

fn sized_list(item: BoxedStrategy<String>, size: std::ops::Range<usize>) -> BoxedStrategy<String> {
    prop::collection::vec(item, size)
        .prop_map(|items| format!("[{}]", items.join(", ")))
        .boxed()
}

/// Keys a table needs: present nearly always.
const REQUIRED: [&str; 11] = [
    "name",
    "scheme",
    "secrets",
    "email",
    "actions",
    "site_url",
    "site_email",
    "site_api_token",
    "admin_api_key",
    "org_id",
    "directory_id",
];

/// `key = value` lines, each key present or not, sometimes with a key nobody knows.
fn table(fields: Vec<(&'static str, BoxedStrategy<String>)>) -> BoxedStrategy<String> {
    let lines: Vec<BoxedStrategy<Option<String>>> = fields
        .into_iter()
        .map(|(key, value)| {
            let presence = if REQUIRED.contains(&key) { 0.97 } else { 0.6 };
            proptest::option::weighted(presence, value)
                .prop_map(move |v| v.map(|v| format!("{key} = {v}\n")))
                .boxed()
        })
        .collect();
    (
        lines,
        proptest::option::weighted(0.03, ("[a-z_]{1,10}", toml_any())),
    )
        .prop_map(|(lines, unknown)| {
            let mut text: String = lines.into_iter().flatten().collect();
            if let Some((key, value)) = unknown {
                text.push_str(&format!("{key} = {value}\n"));
            }
            text
        })
        .boxed()
}

/// A `[[sources.rules]]` table; its name comes from its position, so that names repeat
/// only sometimes.
fn rule_table(index: usize) -> BoxedStrategy<String> {
    let pointer_value = || typed(pointer().prop_map(|p| toml_string(&p)));
    let conditions = || {
        typed(
            prop::collection::vec((valid_pointer(), toml_any()), 1..3).prop_map(|fields| {
                let fields: Vec<String> = fields
                    .into_iter()
                    .map(|(k, v)| format!("{} = {v}", toml_string(&k)))
                    .collect();
                format!("{{ {} }}", fields.join(", "))
            }),
        )
    };
    let action = action_spec()
        .prop_map(|spec| match spec {
            ActionSpec::Name(name) => toml_string(&name),
            ActionSpec::Table(table) => {
                let mut fields = vec![format!("action = {}", toml_string(&table.action))];
                if let Some(after) = &table.after {
                    fields.push(format!("after = {}", toml_string(after)));
                }
                for (key, value) in &table.params {
                    fields.push(format!("{} = {}", toml_string(key), toml_json(value)));
                }
                format!("{{ {} }}", fields.join(", "))
            }
        })
        .boxed();
    let name = prop_oneof![
        9 => Just(toml_string(&format!("rule-{index}"))),
        1 => quoted(vec!["rule-0", "", "Some Rule"]),
    ];
    table(vec![
        ("name", typed(name)),
        ("when", conditions()),
        ("for_each", pointer_value()),
        (
            "email",
            typed(valid_pointer().prop_map(|p| toml_string(&p))),
        ),
        ("account_id", pointer_value()),
        ("at", pointer_value()),
        (
            "timezone",
            typed(timezone_name().prop_map(|t| toml_string(&t))),
        ),
        (
            "delay",
            typed(rule_duration().prop_map(|d| toml_string(&d))),
        ),
        ("approval", typed(boolean())),
        ("actions", typed(sized_list(action, 1..3))),
    ])
}

/// A JSON value the configs use (a leaf), as TOML.
fn toml_json(value: &Value) -> String {
    match value {
        Value::String(s) => toml_string(s),
        Value::Number(n) => n
            .as_f64()
            .filter(|_| !n.is_i64() && !n.is_u64())
            .map(toml_float)
            .unwrap_or_else(|| n.to_string()),
        Value::Bool(b) => b.to_string(),
        // TOML has no null: an empty table takes its place.
        _ => "{}".to_owned(),
    }
}

/// A `[[sources]]` table and its rules; its name comes from its position.
fn source_table(index: usize) -> BoxedStrategy<String> {
    let scheme = pick(
        vec![
            "standard-webhooks",
            "hub-signature",
            "bamboohr",
            "hibob",
            "deel",
            "token",
        ],
        vec!["smoke-signals", ""],
    );
    let secrets = sized_list(
        pick(
            vec![
                SECRET_LITERALS[1],
                "env:OFFBOARD_FUZZ",
                "whsec_czNjcmV0LXNvdXJjZS05YTJj",
            ],
            vec!["", "env:UNSET", "file:/nonexistent/secret"],
        ),
        1..3,
    );
    let name = prop_oneof![
        9 => Just(toml_string(&format!("source-{index}"))),
        1 => quoted(vec!["source-0", "", "Bad Name"]),
    ];
    let rules = (0..3usize).prop_flat_map(|n| (0..n).map(rule_table).collect::<Vec<_>>());
    (
        table(vec![
            ("name", typed(name)),
            ("scheme", typed(scheme)),
            ("secrets", typed(secrets)),
            ("tolerance_seconds", typed(int_in(1..86_400, -10..100_000))),
            (
                "id_header",
                typed(pick(vec!["X-Delivery"], vec!["", "bad header"])),
            ),
            ("id_pointer", typed(pointer().prop_map(|p| toml_string(&p)))),
        ]),
        rules,
    )
        .prop_map(|(source, rules)| {
            let mut text = format!("[[sources]]\n{source}");
            for rule in rules {
                text.push_str(&format!("[[sources.rules]]\n{rule}"));
            }
            text
        })
        .boxed()
}

/// A config document shaped like the one in the README (Configuration), every key usually of its type.
fn structured_config() -> impl Strategy<Value = String> {
    let top = table(vec![
        (
            "listen",
            typed(pick(
                vec!["127.0.0.1:0", "[::1]:8080"],
                vec!["nowhere", "127.0.0.1:99999"],
            )),
        ),
        (
            "database_url",
            typed(pick(
                vec![
                    "sqlite://offboard.db",
                    "postgres://u:pw@db/offboard?password=pw",
                ],
                vec!["mysql://x", ""],
            )),
        ),
        (
            "dry_run",
            typed(prop_oneof![4 => Just("true".to_owned()), 1 => Just("false".to_owned())]),
        ),
        (
            "admin_token",
            typed(pick(vec![SECRET_LITERALS[0]], vec!["", "short"])),
        ),
        (
            "max_body_bytes",
            typed(int_in(1024..67_108_865, -1..i64::MAX)),
        ),
        ("max_connections", typed(int_in(1..65_537, -1..i64::MAX))),
    ]);
    let atlassian = table(vec![
        (
            "site_url",
            typed(pick(
                vec!["https://example.atlassian.net"],
                vec!["not a url", ""],
            )),
        ),
        (
            "site_email",
            typed(pick(vec!["automation@example.com"], vec!["nobody"])),
        ),
        ("site_api_token", typed(quoted(vec![SECRET_LITERALS[2]]))),
        (
            "admin_url",
            typed(pick(vec!["https://api.atlassian.com"], vec!["ftp://x"])),
        ),
        ("admin_api_key", typed(quoted(vec![SECRET_LITERALS[2]]))),
        ("org_id", typed(pick(vec!["org"], vec![""]))),
        ("directory_id", typed(pick(vec!["dir"], vec![""]))),
    ]);
    let worker = table(vec![
        ("concurrency", typed(int_in(1..257, -1..i64::MAX))),
        ("max_attempts", typed(int_in(1..101, -1..i64::MAX))),
        ("lease_seconds", typed(int_in(5..86_401, -1..i64::MAX))),
        (
            "requests_per_second",
            typed(
                prop_oneof![9 => (0.01f64..1000.0).boxed(), 1 => any::<f64>().boxed()]
                    .prop_map(toml_float),
            ),
        ),
        ("backoff_base_seconds", typed(int_in(1..100, -1..i64::MAX))),
        (
            "backoff_max_seconds",
            typed(int_in(100..604_801, -1..i64::MAX)),
        ),
    ]);
    let safety = table(vec![
        (
            "protected_emails",
            typed(list(pick(
                vec!["ceo@example.com"],
                vec!["*@example.com", ""],
            ))),
        ),
        (
            "protected_domains",
            typed(list(pick(vec!["example.com"], vec![".example.com", ""]))),
        ),
        (
            "protected_account_ids",
            typed(list(pick(vec!["abc"], vec![""]))),
        ),
        (
            "max_actions_per_hour",
            typed(int_in(1..100_000, -1..i64::MAX)),
        ),
    ]);
    (
        top,
        proptest::option::of(atlassian),
        proptest::option::of(worker),
        proptest::option::of(safety),
        (0..4usize).prop_flat_map(|n| (0..n).map(source_table).collect::<Vec<_>>()),
    )
        .prop_map(|(top, atlassian, worker, safety, sources)| {
            let mut text = top;
            for (name, section) in [
                ("atlassian", atlassian),
                ("worker", worker),
                ("safety", safety),
            ] {
                if let Some(section) = section {
                    text.push_str(&format!("[{name}]\n{section}"));
                }
            }
            for source in sources {
                text.push_str(&source);
            }
            text
        })
}

/// The environment the generated configs see.
fn fuzz_env(name: &str) -> Option<String> {
    (name == "OFFBOARD_FUZZ").then(|| SECRET_LITERALS[1].to_owned())
}

fn check_config(text: &str) -> TestCaseResult {
    if let Ok(config) = Config::from_toml(text, ConfigOrigin::Defaults, &fuzz_env) {
        let shown = format!("{config:?}");
        for secret in SECRET_LITERALS {
            prop_assert!(
                !shown.contains(secret),
                "the config's Debug shows a secret: {}",
                shown
            );
        }
        let names: HashSet<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        prop_assert_eq!(names.len(), config.sources.len(), "source names are unique");
    }
    Ok(())
}

#[test]
fn config_takes_arbitrary_structured_toml() {
    fuzz(
        "config_takes_arbitrary_structured_toml",
        structured_config(),
        |text| check_config(&text),
    );
}

/// TOML text: arbitrary, or a valid config damaged.
#[derive(Debug, Clone)]
enum TomlText {
    Arbitrary(String),
    Damaged(Vec<Damage>),
}

/// How a valid config is damaged.
#[derive(Debug, Clone)]
enum Damage {
    Insert(prop::sample::Index, String),
    Delete(prop::sample::Index, usize),
    RepeatLine(prop::sample::Index),
    DropLine(prop::sample::Index),
}

fn damage() -> impl Strategy<Value = Damage> {
    let fragment = prop_oneof![
        any::<String>(),
        prop::sample::select(vec![
            "\"",
            "'",
            "[",
            "]",
            "[[",
            "]]",
            "=",
            "\n",
            "{",
            "}",
            ",",
            "#",
            "\\",
            "\"\"\"",
            "'''",
            "\n[[sources]]\n",
            "\nname = \"hr\"\n",
            " = ",
            "\u{feff}",
            "\r",
        ])
        .prop_map(str::to_owned),
    ];
    prop_oneof![
        (any::<prop::sample::Index>(), fragment).prop_map(|(i, f)| Damage::Insert(i, f)),
        (any::<prop::sample::Index>(), 1usize..40).prop_map(|(i, n)| Damage::Delete(i, n)),
        any::<prop::sample::Index>().prop_map(Damage::RepeatLine),
        any::<prop::sample::Index>().prop_map(Damage::DropLine),
    ]
}

fn char_boundary_at(text: &str, index: &prop::sample::Index) -> usize {
    let mut at = index.index(text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn damaged(mut text: String, damages: &[Damage]) -> String {
    for damage in damages {
        match damage {
            Damage::Insert(i, fragment) => {
                let at = char_boundary_at(&text, i);
                text.insert_str(at, fragment);
            }
            Damage::Delete(i, n) => {
                let from = char_boundary_at(&text, i);
                let mut to = (from + n).min(text.len());
                while !text.is_char_boundary(to) {
                    to += 1;
                }
                text.replace_range(from..to, "");
            }
            Damage::RepeatLine(i) | Damage::DropLine(i) => {
                let mut lines: Vec<&str> = text.lines().collect();
                if lines.is_empty() {
                    continue;
                }
                let at = i.index(lines.len());
                if matches!(damage, Damage::RepeatLine(_)) {
                    lines.insert(at, lines[at]);
                } else {
                    lines.remove(at);
                }
                text = lines.join("\n");
            }
        }
    }
    text
}

#[test]
fn config_takes_arbitrary_toml_text() {
    let valid = format!(
        "admin_token = \"{}\"\ndatabase_url = \"sqlite::memory:\"\n{CONFIG}",
        SECRET_LITERALS[0]
    );
    let text = prop_oneof![
        1 => any::<String>().prop_map(TomlText::Arbitrary),
        1 => prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(|b| TomlText::Arbitrary(String::from_utf8_lossy(&b).into_owned())),
        6 => prop::collection::vec(damage(), 1..6).prop_map(TomlText::Damaged),
    ];
    fuzz("config_takes_arbitrary_toml_text", text, |input| {
        let text = match input {
            TomlText::Arbitrary(text) => text,
            TomlText::Damaged(damages) => damaged(valid.clone(), &damages),
        };
        check_config(&text)
    });
}

/// Files shaped like `jobs import` input: headers of taken, ignored and unknown columns, rows
/// of plausible and hostile fields, quoting, both line ends and blank lines.
fn csv_file() -> impl Strategy<Value = Vec<u8>> {
    let column = prop::sample::select(vec![
        "email",
        "action",
        "account_id",
        "at",
        "group_id",
        "display_name",
        "active",
        "Email",
        "acount_id",
        "",
    ]);
    let field = prop_oneof![
        Just("ann@example.com".to_owned()),
        Just("\u{212A}im@example.com".to_owned()),
        Just("suspend_access".to_owned()),
        Just("remove_from_group".to_owned()),
        Just("2026-03-01".to_owned()),
        Just("\"quoted, with comma\"".to_owned()),
        Just("\"open".to_owned()),
        "[a-z@.:_-]{0,12}",
        any::<String>(),
    ];
    let newline = prop::sample::select(vec!["\n", "\r\n", "\n\n"]);
    (
        prop::collection::vec(column, 1..5),
        prop::collection::vec(prop::collection::vec(field, 0..6), 0..6),
        newline,
    )
        .prop_map(|(header, rows, newline)| {
            let mut text = header.join(",");
            for row in rows {
                text.push_str(newline);
                text.push_str(&row.join(","));
            }
            text.into_bytes()
        })
}

#[test]
fn csv_imports_pass_whole_or_name_lines_of_the_file() {
    let config = Config::from_toml("", ConfigOrigin::Defaults, &|_| None).unwrap();
    fuzz(
        "csv_imports_pass_whole_or_name_lines_of_the_file",
        (
            prop_oneof![csv_file(), any::<Vec<u8>>()],
            any::<bool>(),
            instant(),
        ),
        |(file, with_action, now)| {
            let action = with_action.then_some("suspend_access");
            let lines = file.iter().filter(|b| **b == b'\n').count() as u64 + 1;
            match offboard::manual::import::check(&config, &file, action, false, now, |_| {}) {
                Ok(chains) => {
                    prop_assert!(!chains.is_empty());
                    for chain in chains {
                        let email = chain.email.as_str();
                        prop_assert_eq!(email, email.to_ascii_lowercase());
                    }
                }
                Err(bad) => {
                    prop_assert!(!bad.is_empty());
                    for row in bad {
                        prop_assert!(
                            row.line >= 1 && row.line <= lines,
                            "line {} of {}",
                            row.line,
                            lines
                        );
                    }
                }
            }
            Ok(())
        },
    );
}
