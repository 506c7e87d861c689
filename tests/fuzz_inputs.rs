//! A proptest fuzz harness for what an unauthenticated caller controls: arbitrary headers and
//! bodies go to every scheme's `Verifier::verify`, and arbitrary JSON goes to the rules of
//! realistic sources through `rules::map_delivery`. Nothing may panic; genuine deliveries must
//! still verify among the noise.

use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use http::{HeaderMap, HeaderName, HeaderValue};
use offboard::config::{Config, ConfigOrigin};
use offboard::rules;
use proptest::prelude::*;
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_headers_and_bodies_never_panic_any_verifier(
        headers in headers(),
        body in body(),
        now in instant(),
    ) {
        for source in &SOURCES.sources {
            let _ = source.verifier.verify(&headers, &body, now);
        }
    }

    #[test]
    fn genuine_deliveries_verify_and_tampered_ones_never_panic(
        source in prop::sample::select((0..SOURCES.sources.len()).collect::<Vec<_>>()),
        body in body(),
        tamper in tamper(),
        noise in headers(),
    ) {
        let verifier = &SOURCES.sources[source].verifier;
        let now = Utc::now();
        let signed = verifier.sign(&body, now);
        let mut delivery = HeaderMap::new();
        for (name, value) in &signed {
            let name = HeaderName::from_bytes(name.as_bytes()).expect("sign emits header names");
            delivery.append(name, HeaderValue::from_str(value).expect("sign emits header values"));
        }
        // Unrelated headers a proxy might add.
        for (name, value) in &noise {
            if !signed.iter().any(|(n, _)| name.as_str().eq_ignore_ascii_case(n)) {
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
            prop_assert!(result.is_ok(), "{:?} rejected its own signature: {:?}", verifier.scheme, result);
        }
    }

    #[test]
    fn arbitrary_json_never_panics_the_rules(
        body in prop_oneof![json_value(), shaped_body()],
        now in instant(),
    ) {
        for source in &SOURCES.sources {
            if let Ok(plans) = rules::map_delivery(&source.rules, &body, now) {
                for plan in plans {
                    if let rules::Plan::Chain(chain) = plan {
                        prop_assert!(!chain.steps.is_empty());
                        prop_assert_eq!(chain.email.as_str(), chain.email.as_str().to_ascii_lowercase());
                    }
                }
            }
        }
    }
}
