//! `POST /hooks/{source}` over a real port, on both stores: every row of the README, "HTTP API"
//! table, delivery ids, rotation, cancel rules and concurrent deliveries.
//!
//! The configs run with `dry_run = true` and no `[atlassian]` section, so the worker stays idle
//! and every job the endpoint commits is still pending when the test looks at it.

use offboard::domain::Job;
use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use offboard::domain::JobState;
use offboard::store::{DeliveryStatus, JobFilter};
use offboard::verify::{Scheme, Verifier};
use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::Connection;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::RwLock;
use tokio::task::JoinSet;

use crate::both_stores;
use crate::support::app::{TestApp, job_ids};
use crate::support::db::{Backend, TestDb};

const HR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const HR_SECRET_NEXT: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const JIRA_SECRET: &str = "It's a Secret to Everybody";
const BAMBOO_SECRET: &str = "bamboo-private-key";
const BOB_SECRET: &str = "hibob-secret";
const DEEL_SECRET: &str = "deel-key";
const TOKEN: &str = "automation-token-one";
const TOKEN_NEXT: &str = "automation-token-two";
const NOT_THE_SECRET: &str = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCBhdCBhbGw=";
const MAX_BODY: usize = 4096;

/// Every secret the config holds, and the base64 of the Standard Webhooks keys.
const SECRETS: [&str; 10] = [
    HR_SECRET,
    HR_SECRET_NEXT,
    "C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    JIRA_SECRET,
    BAMBOO_SECRET,
    BOB_SECRET,
    DEEL_SECRET,
    TOKEN,
    TOKEN_NEXT,
];

/// Sources of every scheme; `automation`, `by-header` and `by-pointer` share the token scheme
/// and differ in how the delivery id is found.
fn config() -> String {
    format!(
        r#"dry_run = true
max_body_bytes = {MAX_BODY}

[safety]
protected_emails = ["it-admin@example.com"]
protected_domains = ["example-admins.com"]

[[sources]]
name = "hr"
scheme = "standard-webhooks"
secrets = ["{HR_SECRET}", "{HR_SECRET_NEXT}"]

  [[sources.rules]]
  name = "contract-ended"
  when = {{ "/type" = "contract.ended" }}
  email = "/data/email"
  at = "/data/end_date"
  timezone = "Europe/Berlin"
  actions = ["suspend_access", {{ action = "delete_account", after = "30d" }}]

  [[sources.rules]]
  name = "rehired"
  when = {{ "/type" = "contract.extended" }}
  email = "/data/email"
  cancel = true

  [[sources.rules]]
  name = "batch"
  when = {{ "/type" = "batch.ended" }}
  for_each = "/employees"
  where = {{ "/status" = "terminated" }}
  email = "/email"
  actions = ["suspend_access"]

[[sources]]
name = "jira"
scheme = "hub-signature"
secrets = ["{JIRA_SECRET}"]

  [[sources.rules]]
  name = "user-deleted"
  when = {{ "/webhookEvent" = "user_deleted" }}
  email = "/user/emailAddress"
  actions = ["delete_portal_customer"]

[[sources]]
name = "bamboo"
scheme = "bamboohr"
secrets = ["{BAMBOO_SECRET}"]

  [[sources.rules]]
  name = "terminated"
  for_each = "/employees"
  email = "/fields/workEmail"
  actions = ["suspend_access"]

[[sources]]
name = "bob"
scheme = "hibob"
secrets = ["{BOB_SECRET}"]

  [[sources.rules]]
  name = "left"
  when = {{ "/type" = "employee.left" }}
  email = "/data/email"
  actions = ["suspend_access"]

[[sources]]
name = "deel"
scheme = "deel"
secrets = ["{DEEL_SECRET}"]

  [[sources.rules]]
  name = "ended"
  email = "/data/email"
  actions = ["suspend_access"]

[[sources]]
name = "automation"
scheme = "token"
secrets = ["{TOKEN}", "{TOKEN_NEXT}"]

  [[sources.rules]]
  name = "customer"
  email = "/email"
  actions = ["delete_portal_customer"]

[[sources]]
name = "jira-by-pointer"
scheme = "hub-signature"
secrets = ["{JIRA_SECRET}"]
id_pointer = "/event/id"

  [[sources.rules]]
  name = "user-deleted"
  email = "/user/emailAddress"
  actions = ["delete_portal_customer"]

[[sources]]
name = "by-header"
scheme = "token"
secrets = ["{TOKEN}"]
id_header = "X-Request-Id"

  [[sources.rules]]
  name = "customer"
  email = "/email"
  actions = ["delete_portal_customer"]

[[sources]]
name = "by-pointer"
scheme = "token"
secrets = ["{TOKEN}"]
id_pointer = "/event/id"

  [[sources.rules]]
  name = "customer"
  email = "/email"
  actions = ["delete_portal_customer"]
"#
    )
}

/// The concurrency tests measure the service, not how busy the machine is: each runs alone,
/// while the other tests of this file share the gate among themselves.
static GATE: RwLock<()> = RwLock::const_new(());

/// A running app and its hold on the gate, released when the test ends.
struct App {
    app: TestApp,
    _gate: Box<dyn Send + Sync>,
}

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

impl App {
    async fn stop(self) {
        self.app.stop().await;
    }
}

/// Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls cannot
/// pick one by itself for the test's own HTTP client.
fn install_crypto_provider() {
    offboard::install_tls_provider();
}

async fn spawn(db: &TestDb) -> App {
    install_crypto_provider();
    let gate = Box::new(GATE.read().await);
    App {
        app: TestApp::spawn(db, &config()).await,
        _gate: gate,
    }
}

async fn spawn_alone(db: &TestDb) -> App {
    install_crypto_provider();
    let gate = Box::new(GATE.write().await);
    App {
        app: TestApp::spawn(db, &config()).await,
        _gate: gate,
    }
}

/// A posted delivery's answer: status, raw text and (when it is JSON) the parsed body.
struct Answer {
    status: StatusCode,
    text: String,
    body: Value,
}

impl Answer {
    async fn of(response: reqwest::Response) -> Answer {
        let status = response.status();
        let text = response.text().await.expect("response body");
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Answer { status, text, body }
    }

    /// A 202 or 200 webhook answer: exactly the five keys of README, "HTTP API".
    fn expect_receipt(&self, status: StatusCode) -> &Value {
        assert_eq!(self.status, status, "{}", self.text);
        let keys: BTreeSet<&str> = self.keys();
        assert_eq!(
            keys,
            BTreeSet::from(["cancelled", "delivery_id", "duplicate", "jobs", "refused"]),
            "{}",
            self.text
        );
        assert_eq!(
            self.body["duplicate"],
            status == StatusCode::OK,
            "{}",
            self.text
        );
        &self.body
    }

    /// An error answer: `{"error","message"}` and nothing else, never a secret.
    fn expect_error(&self, status: StatusCode, code: &str) {
        assert_eq!(self.status, status, "{}", self.text);
        assert_eq!(
            self.keys(),
            BTreeSet::from(["error", "message"]),
            "{}",
            self.text
        );
        assert_eq!(self.body["error"], code, "{}", self.text);
        let message = self.body["message"].as_str().expect("message is a string");
        assert!(!message.is_empty(), "{}", self.text);
        assert_no_secrets(&self.text, &[]);
    }

    fn keys(&self) -> BTreeSet<&str> {
        self.body
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }
}

fn assert_no_secrets(text: &str, also: &[&str]) {
    for secret in SECRETS.iter().chain(also) {
        assert!(!text.contains(secret), "{secret:?} leaked into {text}");
    }
}

async fn post(app: &TestApp, source: &str, body: &[u8], headers: &[(String, String)]) -> Answer {
    Answer::of(app.post_hook(source, body.to_vec(), headers).await).await
}

async fn send(app: &TestApp, source: &str, body: &Value) -> Answer {
    Answer::of(app.send_signed(source, body.to_string().as_bytes()).await).await
}

/// The source's verifier holding only `secret`: a sender signing with another key.
fn signer(app: &TestApp, source: &str, secret: &str) -> Verifier {
    let mut verifier = app.config.source(source).expect("source").verifier.clone();
    verifier.secrets = vec![SecretString::from(secret.to_owned())];
    verifier
}

fn header(name: &str, value: &str) -> (String, String) {
    (name.to_owned(), value.to_owned())
}

async fn all_jobs(app: &TestApp) -> Vec<Job> {
    app.store
        .list_jobs(&JobFilter {
            limit: 500,
            ..JobFilter::default()
        })
        .await
        .expect("list jobs")
}

async fn delivery_count(app: &TestApp) -> usize {
    app.store
        .list_deliveries(None, 500)
        .await
        .expect("list deliveries")
        .len()
}

async fn assert_nothing_recorded(app: &TestApp) {
    assert_eq!(delivery_count(app).await, 0, "a delivery was recorded");
    assert!(all_jobs(app).await.is_empty(), "a job was created");
}

fn job_keys() -> BTreeSet<&'static str> {
    BTreeSet::from([
        "id",
        "action",
        "params",
        "state",
        "email",
        "account_id",
        "depends_on",
        "run_at",
        "lane",
        "attempts",
        "max_attempts",
        "last_error",
        "outcome",
        "source",
        "rule",
        "delivery_id",
        "created_at",
        "updated_at",
    ])
}

fn sha256_id(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

// ---------------------------------------------------------------------------------------------
// 202

async fn accepted_with_a_chain_of_jobs(db: TestDb) {
    let app = spawn(&db).await;
    let body = json!({
        "type": "contract.ended",
        "data": { "email": "Leaver@Example.com", "end_date": "2030-06-30" }
    });
    let body = body.to_string();
    let headers = app.sign("hr", body.as_bytes());
    let answer = post(&app, "hr", body.as_bytes(), &headers).await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);

    let webhook_id = &headers
        .iter()
        .find(|(n, _)| n == "webhook-id")
        .expect("id")
        .1;
    assert_eq!(receipt["delivery_id"], webhook_id.as_str());
    assert_eq!(receipt["cancelled"], json!([]));
    assert_eq!(receipt["refused"], json!([]));
    let jobs = receipt["jobs"].as_array().expect("jobs");
    assert_eq!(jobs.len(), 2, "{}", answer.text);
    for job in jobs {
        let keys: BTreeSet<&str> = job
            .as_object()
            .expect("job")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, job_keys(), "{job}");
        assert_eq!(job["state"], "pending");
        assert_eq!(job["email"], "leaver@example.com");
        assert_eq!(job["params"], json!({}));
        assert_eq!(job["source"], "hr");
        assert_eq!(job["rule"], "contract-ended");
        assert_eq!(job["delivery_id"], webhook_id.as_str());
        assert_eq!(job["attempts"], 0);
        assert_eq!(job["account_id"], Value::Null);
        assert_eq!(job["outcome"], Value::Null);
    }
    // Midnight in Berlin (CEST), then the second step 30 days later, after the first.
    assert_eq!(jobs[0]["action"], "suspend_access");
    assert_eq!(jobs[0]["run_at"], "2030-06-29T22:00:00.000Z");
    assert_eq!(jobs[0]["depends_on"], Value::Null);
    assert_eq!(jobs[1]["action"], "delete_account");
    assert_eq!(jobs[1]["run_at"], "2030-07-29T22:00:00.000Z");
    assert_eq!(jobs[1]["depends_on"], jobs[0]["id"]);

    let stored = all_jobs(&app).await;
    let mut stored_ids: Vec<String> = stored.iter().map(|j| j.id.to_string()).collect();
    stored_ids.sort();
    let mut answered = job_ids(receipt);
    answered.sort();
    assert_eq!(stored_ids, answered);
    assert!(stored.iter().all(|j| j.state == JobState::Pending));

    let deliveries = app
        .store
        .list_deliveries(Some("hr"), 10)
        .await
        .expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].delivery_id, *webhook_id);
    assert_eq!(deliveries[0].status, DeliveryStatus::Accepted);
    assert_eq!(deliveries[0].error, None);
    let mut recorded = deliveries[0].job_ids.clone();
    recorded.sort();
    assert_eq!(recorded, answered);
    app.stop().await;
}
both_stores!(
    accepted_with_a_chain_of_jobs_on,
    accepted_with_a_chain_of_jobs
);

async fn protected_people_are_refused_without_a_job(db: TestDb) {
    let app = spawn(&db).await;
    let body = json!({
        "type": "batch.ended",
        "employees": [
            { "email": "Worker@Example.com", "status": "terminated" },
            { "email": "IT-Admin@example.com", "status": "terminated" },
            { "email": "root@ops.example-admins.com", "status": "terminated" },
            { "email": "boss@example-admins.com", "status": "terminated" },
            { "email": "x@notexample-admins.com", "status": "terminated" },
            { "email": "stays@example.com", "status": "active" }
        ]
    });
    let answer = send(&app, "hr", &body).await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(
        receipt["refused"],
        json!([
            { "email": "it-admin@example.com", "reason": "protected_email" },
            { "email": "root@ops.example-admins.com", "reason": "protected_domain" },
            { "email": "boss@example-admins.com", "reason": "protected_domain" }
        ])
    );
    let emails: Vec<&str> = receipt["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["email"].as_str().expect("email"))
        .collect();
    assert_eq!(emails, ["worker@example.com", "x@notexample-admins.com"]);

    let stored: BTreeSet<String> = all_jobs(&app)
        .await
        .into_iter()
        .map(|j| j.email.to_string())
        .collect();
    assert_eq!(
        stored,
        BTreeSet::from([
            "worker@example.com".into(),
            "x@notexample-admins.com".into()
        ])
    );
    app.stop().await;
}
both_stores!(
    protected_people_are_refused_on,
    protected_people_are_refused_without_a_job
);

async fn no_matching_rule_is_accepted_without_jobs(db: TestDb) {
    let app = spawn(&db).await;
    let answer = send(
        &app,
        "hr",
        &json!({ "type": "employee.promoted", "data": {} }),
    )
    .await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(receipt["jobs"], json!([]));
    assert_eq!(receipt["cancelled"], json!([]));
    assert_eq!(receipt["refused"], json!([]));
    let deliveries = app
        .store
        .list_deliveries(None, 10)
        .await
        .expect("deliveries");
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Accepted);
    assert!(deliveries[0].job_ids.is_empty());
    assert!(all_jobs(&app).await.is_empty());
    app.stop().await;
}
both_stores!(
    no_matching_rule_on,
    no_matching_rule_is_accepted_without_jobs
);

// ---------------------------------------------------------------------------------------------
// Mass offboarding (README, "HTTP API")

/// `approval_above = 3`: a delivery of more than three jobs waits for a person.
fn mass_config() -> String {
    format!(
        r#"dry_run = true

[safety]
approval_above = 3
protected_emails = ["it-admin@example.com"]

[[sources]]
name = "hr"
scheme = "standard-webhooks"
secrets = ["{HR_SECRET}"]

  [[sources.rules]]
  name = "leavers"
  when = {{ "/type" = "leavers" }}
  for_each = "/people"
  email = "/email"
  actions = ["suspend_access"]

  [[sources.rules]]
  name = "leavers-deleted"
  when = {{ "/type" = "chains" }}
  for_each = "/people"
  email = "/email"
  actions = ["suspend_access", {{ action = "delete_account", after = "30d" }}]
"#
    )
}

fn people(kind: &str, emails: &[&str]) -> Value {
    let people: Vec<Value> = emails.iter().map(|e| json!({ "email": e })).collect();
    json!({ "type": kind, "people": people })
}

/// The jobs a receipt names, as stored.
async fn receipt_jobs(app: &TestApp, receipt: &Value) -> Vec<Job> {
    let ids = job_ids(receipt);
    let jobs: Vec<Job> = all_jobs(app)
        .await
        .into_iter()
        .filter(|j| ids.contains(&j.id.to_string()))
        .collect();
    assert_eq!(jobs.len(), ids.len(), "{receipt}");
    jobs
}

async fn more_than_approval_above_jobs_all_wait_for_approval(db: TestDb) {
    install_crypto_provider();
    let _gate = GATE.read().await;
    let app = TestApp::spawn(&db, &mass_config()).await;

    // Four people, one job each: one more than approval_above. (One is named twice, which
    // on Postgres takes the one-delivery path; the chains below take the batch.)
    let body = people(
        "leavers",
        &[
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
            "A@example.com",
        ],
    );
    let answer = send(&app, "hr", &body).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(
        answer.keys(),
        BTreeSet::from([
            "approval_required",
            "cancelled",
            "delivery_id",
            "duplicate",
            "jobs",
            "refused"
        ]),
        "{}",
        answer.text
    );
    let reason = answer.body["approval_required"].as_str().expect("a reason");
    assert!(
        reason.contains("4 jobs") && reason.contains("approval_above = 3"),
        "{reason}"
    );
    let jobs = receipt_jobs(&app, &answer.body).await;
    assert_eq!(jobs.len(), 4);
    assert!(
        jobs.iter().all(|j| j.state == JobState::AwaitingApproval),
        "{jobs:?}"
    );
    for job in answer.body["jobs"].as_array().expect("jobs") {
        assert_eq!(job["state"], "awaiting_approval", "{job}");
    }
    let created = app.job(&jobs[0].id.to_string()).await.events[0]
        .detail
        .clone();
    assert!(created.contains("approval_above = 3"), "{created}");
    let listed = app.store.list_deliveries(None, 10).await.unwrap();
    assert_eq!(listed[0].approval_required.as_deref(), Some(reason));

    // Steps of a chain are jobs too: two people with two steps each make four.
    let answer = send(
        &app,
        "hr",
        &people("chains", &["e@example.com", "f@example.com"]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert!(
        answer.body["approval_required"].is_string(),
        "{}",
        answer.text
    );
    let jobs = receipt_jobs(&app, &answer.body).await;
    assert_eq!(jobs.len(), 4);
    assert!(jobs.iter().all(|j| j.state == JobState::AwaitingApproval));

    // Exactly approval_above: the rules decide (no approval here). A person named twice is
    // one job and a protected person none, so this delivery asks for three.
    let body = people(
        "leavers",
        &[
            "g@example.com",
            "h@example.com",
            "G@example.com",
            "i@example.com",
            "it-admin@example.com",
        ],
    );
    let answer = send(&app, "hr", &body).await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(receipt["refused"].as_array().map(Vec::len), Some(1));
    let jobs = receipt_jobs(&app, receipt).await;
    assert_eq!(jobs.len(), 3);
    assert!(
        jobs.iter().all(|j| j.state == JobState::Pending),
        "{jobs:?}"
    );
    app.stop().await;
}
both_stores!(
    mass_offboarding_on,
    more_than_approval_above_jobs_all_wait_for_approval
);

/// A mass delivery repeated gets the first answer, reason included, and creates nothing.
async fn a_repeated_mass_delivery_replays_its_reason(db: TestDb) {
    install_crypto_provider();
    let _gate = GATE.read().await;
    let app = TestApp::spawn(&db, &mass_config()).await;
    let body = people(
        "leavers",
        &[
            "a@example.com",
            "b@example.com",
            "c@example.com",
            "d@example.com",
        ],
    )
    .to_string();
    let headers = app.sign("hr", body.as_bytes());
    let first = post(&app, "hr", body.as_bytes(), &headers).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = post(&app, "hr", body.as_bytes(), &headers).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert!(
        again.body["approval_required"].is_string(),
        "{}",
        again.text
    );
    let mut expected = first.body.clone();
    expected["duplicate"] = json!(true);
    assert_eq!(again.body, expected);
    assert_eq!(all_jobs(&app).await.len(), 4);
    app.stop().await;
}
both_stores!(
    mass_offboarding_replay_on,
    a_repeated_mass_delivery_replays_its_reason
);

// ---------------------------------------------------------------------------------------------
// 200 duplicate

async fn duplicate_replays_the_first_answer(db: TestDb) {
    let app = spawn(&db).await;
    let body = json!({
        "type": "contract.ended",
        "data": { "email": "twice@example.com", "end_date": "2030-01-15" }
    })
    .to_string();
    let headers = app.sign("hr", body.as_bytes());
    let first = post(&app, "hr", body.as_bytes(), &headers).await;
    let first_body = first.expect_receipt(StatusCode::ACCEPTED).clone();
    let jobs_before = all_jobs(&app).await.len();

    // Let created/updated times move on, so a re-created job would show.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let again = post(&app, "hr", body.as_bytes(), &headers).await;
    let again_body = again.expect_receipt(StatusCode::OK);
    let mut expected = first_body.clone();
    expected["duplicate"] = json!(true);
    assert_eq!(*again_body, expected);
    assert_eq!(job_ids(again_body), job_ids(&first_body));
    assert_eq!(all_jobs(&app).await.len(), jobs_before);
    assert_eq!(delivery_count(&app).await, 1);
    app.stop().await;
}
both_stores!(duplicate_replays_on, duplicate_replays_the_first_answer);

// ---------------------------------------------------------------------------------------------
// 404, 401

async fn unknown_source_is_404(db: TestDb) {
    let app = spawn(&db).await;
    let body = br#"{"email":"a@example.com"}"#;
    let headers = app.sign("automation", body);
    let answer = post(&app, "nope", body, &headers).await;
    answer.expect_error(StatusCode::NOT_FOUND, "unknown_source");
    assert_nothing_recorded(&app).await;
    app.stop().await;
}
both_stores!(unknown_source_on, unknown_source_is_404);

/// The header holding the MAC or token, which the tests truncate.
fn signature_header(scheme: &Scheme) -> String {
    match scheme {
        Scheme::StandardWebhooks => "webhook-signature".into(),
        Scheme::HubSignature { header } | Scheme::Token { header, .. } => header.to_string(),
        Scheme::BambooHr => "x-bamboohr-signature".into(),
        Scheme::HiBob => "bob-signature".into(),
        Scheme::Deel => "x-deel-signature".into(),
    }
}

async fn bad_signatures_are_401_for_every_scheme(db: TestDb) {
    let app = spawn(&db).await;
    let body = json!({ "type": "contract.ended", "email": "a@example.com" }).to_string();
    let body = body.as_bytes();
    for source in ["hr", "jira", "bamboo", "bob", "deel", "automation"] {
        let verifier = &app.config.source(source).expect("source").verifier;
        let signed = app.sign(source, body);
        let sig_name = signature_header(&verifier.scheme);

        // Missing: the genuine headers minus the signature, and no headers at all.
        let without: Vec<_> = signed
            .iter()
            .filter(|(n, _)| !n.eq_ignore_ascii_case(&sig_name))
            .cloned()
            .collect();
        assert_ne!(
            without.len(),
            signed.len(),
            "{source}: no {sig_name} header"
        );
        for headers in [without, Vec::new()] {
            let answer = post(&app, source, body, &headers).await;
            answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
        }

        // Wrong secret.
        let forged = signer(&app, source, NOT_THE_SECRET).sign(body, Utc::now());
        let answer = post(&app, source, body, &forged).await;
        answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
        let forged_values: Vec<&str> = forged.iter().map(|(_, v)| v.as_str()).collect();
        assert_no_secrets(&answer.text, &forged_values);

        // Truncated: one or two characters short (base64 padding included).
        for cut in [1, 2] {
            let truncated: Vec<_> = signed
                .iter()
                .map(|(n, v)| {
                    if n.eq_ignore_ascii_case(&sig_name) {
                        (n.clone(), v[..v.len() - cut].to_owned())
                    } else {
                        (n.clone(), v.clone())
                    }
                })
                .collect();
            let answer = post(&app, source, body, &truncated).await;
            answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
            let values: Vec<&str> = signed.iter().map(|(_, v)| v.as_str()).collect();
            assert_no_secrets(&answer.text, &values);
        }

        // The genuine headers on another body.
        let answer = post(&app, source, br#"{"email":"b@example.com"}"#, &signed).await;
        if matches!(verifier.scheme, Scheme::Token { .. }) {
            // A token authenticates the sender, not the body.
            answer.expect_receipt(StatusCode::ACCEPTED);
        } else {
            answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
        }
    }
    // Only the token source's own genuine delivery above got through.
    assert_eq!(delivery_count(&app).await, 1);
    app.stop().await;
}
both_stores!(bad_signatures_on, bad_signatures_are_401_for_every_scheme);

async fn stale_timestamps_are_401(db: TestDb) {
    let app = spawn(&db).await;
    let body =
        json!({ "type": "contract.ended", "data": { "email": "a@example.com" } }).to_string();
    let ten_minutes = TimeDelta::minutes(10);
    for source in ["hr", "bamboo"] {
        let verifier = &app.config.source(source).expect("source").verifier;
        for sent in [Utc::now() - ten_minutes, Utc::now() + ten_minutes] {
            let headers = verifier.sign(body.as_bytes(), sent);
            let answer = post(&app, source, body.as_bytes(), &headers).await;
            answer.expect_error(StatusCode::UNAUTHORIZED, "stale_timestamp");
            let values: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
            assert_no_secrets(&answer.text, &values);
        }
    }
    assert_nothing_recorded(&app).await;
    app.stop().await;
}
both_stores!(stale_timestamps_on, stale_timestamps_are_401);

// ---------------------------------------------------------------------------------------------
// 413

/// A JSON body the `automation` source maps, padded to exactly `len` bytes.
fn padded_body(len: usize) -> Vec<u8> {
    let head = r#"{"email":"big@example.com","pad":""#;
    let tail = r#""}"#;
    let pad = "x".repeat(len - head.len() - tail.len());
    format!("{head}{pad}{tail}").into_bytes()
}

/// Writes `head` and then `chunks` of a request on a raw connection (without finishing it
/// when `finish` is false) and reads the response's status and body.
async fn raw_request(app: &TestApp, head: &str, chunks: &[Vec<u8>], finish: bool) -> Answer {
    let addr = app.base_url.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("write head");
    for chunk in chunks {
        // Ignore write errors: the server may answer and close before taking everything.
        if stream.write_all(chunk).await.is_err() {
            break;
        }
    }
    if finish {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            if let Some(answer) = parse_response(&buf) {
                return answer;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => {
                    return parse_response(&buf).unwrap_or_else(|| {
                        panic!("connection closed without a full response: {buf:?}")
                    });
                }
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("the server answered in time")
}

/// A complete `Content-Length` HTTP/1.1 response in `buf`, if there is one yet.
fn parse_response(buf: &[u8]) -> Option<Answer> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let status: u16 = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let body = buf.get(end + 4..end + 4 + length)?;
    let text = String::from_utf8_lossy(body).into_owned();
    Some(Answer {
        status: StatusCode::from_u16(status).ok()?,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    })
}

fn chunk(data: &[u8]) -> Vec<u8> {
    [format!("{:x}\r\n", data.len()).as_bytes(), data, b"\r\n"].concat()
}

async fn oversized_bodies_are_413(db: TestDb) {
    let app = spawn(&db).await;
    let token = format!("Bearer {TOKEN}");

    // An honest Content-Length just over the cap.
    let big = padded_body(MAX_BODY + 1);
    let answer = post(&app, "automation", &big, &[header("authorization", &token)]).await;
    answer.expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // A declared length far over the cap is refused before any of the body is sent.
    let head = format!(
        "POST /hooks/automation HTTP/1.1\r\nhost: {addr}\r\nauthorization: {token}\r\n\
         content-type: application/json\r\ncontent-length: 100000000\r\n\r\n",
        addr = app.base_url.trim_start_matches("http://")
    );
    raw_request(&app, &head, &[], false)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Chunked, no Content-Length: one chunk over the cap and the request never finished...
    let chunked_head = format!(
        "POST /hooks/automation HTTP/1.1\r\nhost: {addr}\r\nauthorization: {token}\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        addr = app.base_url.trim_start_matches("http://")
    );
    raw_request(&app, &chunked_head, &[chunk(&big)], false)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    // ...and many small chunks adding up to more than the cap, properly finished.
    let chunks: Vec<Vec<u8>> = big.chunks(300).map(chunk).collect();
    raw_request(&app, &chunked_head, &chunks, true)
        .await
        .expect_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    assert_nothing_recorded(&app).await;

    // Exactly the cap is fine, chunked or not.
    let fits = padded_body(MAX_BODY);
    let chunks: Vec<Vec<u8>> = fits.chunks(1000).map(chunk).collect();
    raw_request(&app, &chunked_head, &chunks, true)
        .await
        .expect_receipt(StatusCode::ACCEPTED);
    post(
        &app,
        "automation",
        &fits,
        &[header("authorization", &token)],
    )
    .await
    .expect_receipt(StatusCode::OK);
    app.stop().await;
}
both_stores!(oversized_bodies_on, oversized_bodies_are_413);

// ---------------------------------------------------------------------------------------------
// 400, 422

async fn verified_non_json_is_400(db: TestDb) {
    let app = spawn(&db).await;
    for (source, body) in [
        ("automation", &b"email=a@example.com"[..]),
        ("hr", b"{\"type\": \"contract.ended\""),
        ("jira", b"\xff\xfe not even UTF-8"),
        ("bob", b"Ping test!"),
    ] {
        let headers = app.sign(source, body);
        let answer = post(&app, source, body, &headers).await;
        answer.expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        let values: Vec<&str> = headers.iter().map(|(_, v)| v.as_str()).collect();
        assert_no_secrets(&answer.text, &values);
    }
    assert_nothing_recorded(&app).await;
    app.stop().await;
}
both_stores!(non_json_on, verified_non_json_is_400);

/// A later key must not retarget a templated body (README, "HTTP API"): each of these is signed,
/// and each is refused before any rule reads it.
async fn repeated_keys_are_400(db: TestDb) {
    let app = spawn(&db).await;
    for (source, body) in [
        (
            "automation",
            r#"{"email":"leaver@example.com","email":"victim@example.com"}"#,
        ),
        (
            "hr",
            r#"{"type":"contract.ended","data":{"email":"leaver@example.com","end_date":"2030-06-30","email":"victim@example.com"}}"#,
        ),
        (
            "bamboo",
            r#"{"employees":[{"fields":{"workEmail":"a@example.com"}},{"fields":{"workEmail":"b@example.com","workEmail":"victim@example.com"}}]}"#,
        ),
        (
            "automation",
            r#"{"email":"leaver@example.com","em\u0061il":"victim@example.com"}"#,
        ),
        (
            "jira",
            r#"{"webhookEvent":"user_deleted","webhookEvent":"user_deleted","user":{"emailAddress":"a@example.com"}}"#,
        ),
    ] {
        let headers = app.sign(source, body.as_bytes());
        let answer = post(&app, source, body.as_bytes(), &headers).await;
        answer.expect_error(StatusCode::BAD_REQUEST, "invalid_json");
        assert!(
            answer.body["message"]
                .as_str()
                .unwrap()
                .contains("duplicate key"),
            "{}",
            answer.text
        );
    }
    assert_nothing_recorded(&app).await;
    app.stop().await;
}
both_stores!(repeated_keys_on, repeated_keys_are_400);

/// A byte-order mark before the JSON is skipped for parsing only: the signature covers the
/// bytes as sent, BOM included, and so does the body's hash.
async fn a_byte_order_mark_is_ignored(db: TestDb) {
    let app = spawn(&db).await;
    let body = b"\xEF\xBB\xBF{\"email\":\"leaver@example.com\"}";
    let headers = app.sign("automation", body);
    let answer = post(&app, "automation", body, &headers).await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(receipt["delivery_id"], sha256_id(body));
    assert_eq!(receipt["jobs"][0]["email"], "leaver@example.com");

    // Signed without the BOM, sent with it: the signature is checked on what arrived.
    let body = b"{\"type\":\"contract.ended\",\"data\":{\"email\":\"x@example.com\",\"end_date\":\"2030-06-30\"}}";
    let mut with_bom = b"\xEF\xBB\xBF".to_vec();
    with_bom.extend_from_slice(body);
    let headers = app.sign("hr", body);
    post(&app, "hr", &with_bom, &headers)
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");

    for bad in [
        &b"\xEF\xBB\xBF{\"email\":"[..],
        b"\xEF\xBB\xBF",
        b"\xEF\xBB\xBF\xEF\xBB\xBF{\"email\":\"a@example.com\"}",
    ] {
        let headers = app.sign("automation", bad);
        post(&app, "automation", bad, &headers)
            .await
            .expect_error(StatusCode::BAD_REQUEST, "invalid_json");
    }
    assert_eq!(delivery_count(&app).await, 1);
    app.stop().await;
}
both_stores!(byte_order_mark_on, a_byte_order_mark_is_ignored);

async fn unmappable_is_422_recorded_and_replayed(db: TestDb) {
    let app = spawn(&db).await;
    let cases = [
        json!({ "type": "contract.ended", "data": { "email": "not-an-email", "end_date": "2030-01-01" } }),
        json!({ "type": "contract.ended", "data": { "email": "a@example.com", "end_date": "31/12/2030" } }),
        json!({ "type": "contract.ended", "data": { "end_date": "2030-01-01" } }),
        // One bad element among good ones: nothing at all is enqueued.
        json!({ "type": "batch.ended", "employees": [
            { "email": "good@example.com", "status": "terminated" },
            { "email": "bad@@example.com", "status": "terminated" },
            { "email": "other@example.com", "status": "terminated" }
        ] }),
        json!({ "type": "batch.ended", "employees": { "email": "good@example.com" } }),
    ];
    for (index, case) in cases.iter().enumerate() {
        let body = case.to_string();
        let headers = app.sign("hr", body.as_bytes());
        let first = post(&app, "hr", body.as_bytes(), &headers).await;
        first.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unmappable");

        let deliveries = app
            .store
            .list_deliveries(None, 50)
            .await
            .expect("deliveries");
        assert_eq!(deliveries.len(), index + 1);
        let recorded = &deliveries[0];
        assert_eq!(recorded.status, DeliveryStatus::Unmappable);
        assert_eq!(recorded.error.as_deref(), first.body["message"].as_str());
        assert!(recorded.job_ids.is_empty());

        let again = post(&app, "hr", body.as_bytes(), &headers).await;
        again.expect_error(StatusCode::UNPROCESSABLE_ENTITY, "unmappable");
        assert_eq!(again.body, first.body);
        assert_eq!(delivery_count(&app).await, index + 1);
    }
    assert!(all_jobs(&app).await.is_empty());
    app.stop().await;
}
both_stores!(unmappable_on, unmappable_is_422_recorded_and_replayed);

// ---------------------------------------------------------------------------------------------
// 503

/// Renames a table behind the running service's back, through a connection of our own.
async fn rename_table(db: &TestDb, from: &str, to: &str) {
    let sql = format!("ALTER TABLE {from} RENAME TO {to}");
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url)
                .await
                .expect("sqlite");
            sqlx::query(&sql).execute(&mut conn).await.expect("rename");
            conn.close().await.ok();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url)
                .await
                .expect("postgres");
            sqlx::query(&sql).execute(&mut conn).await.expect("rename");
            conn.close().await.ok();
        }
    }
}

async fn store_failure_is_503_and_nothing_is_accepted(db: TestDb) {
    let app = spawn(&db).await;
    for table in ["deliveries", "jobs"] {
        let body = json!({
            "type": "contract.ended",
            "data": { "email": format!("{table}@example.com"), "end_date": "2030-01-01" }
        })
        .to_string();
        let headers = app.sign("hr", body.as_bytes());

        rename_table(&db, table, &format!("{table}_gone")).await;
        let answer = post(&app, "hr", body.as_bytes(), &headers).await;
        assert!(!answer.status.is_success(), "{table}: {}", answer.text);
        answer.expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        assert_eq!(
            answer.body,
            json!({
                "error": "unavailable",
                "message": answer.body["message"]
            })
        );
        // A retry while the store is still broken gets the same.
        post(&app, "hr", body.as_bytes(), &headers)
            .await
            .expect_error(StatusCode::SERVICE_UNAVAILABLE, "unavailable");
        rename_table(&db, &format!("{table}_gone"), table).await;

        // Nothing of the failed attempt was kept: the sender's retry is a first delivery.
        let retry = post(&app, "hr", body.as_bytes(), &headers).await;
        let receipt = retry.expect_receipt(StatusCode::ACCEPTED);
        assert_eq!(job_ids(receipt).len(), 2);
    }
    assert_eq!(delivery_count(&app).await, 2);
    assert_eq!(all_jobs(&app).await.len(), 4);
    app.stop().await;
}
both_stores!(
    store_failure_on,
    store_failure_is_503_and_nothing_is_accepted
);

// ---------------------------------------------------------------------------------------------
// HiBob setup ping

async fn hibob_ping_is_200_unsigned_and_unrecorded(db: TestDb) {
    let app = spawn(&db).await;
    for body in [&b"Ping test"[..], br#"{"text":"Ping test"}"#] {
        let answer = post(&app, "bob", body, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        assert_eq!(answer.body, json!({ "ping": true }));
    }
    // Anything else still needs a signature, and the ping is not special elsewhere.
    post(&app, "bob", br#"{"text":"Ping test","x":1}"#, &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
    post(&app, "deel", b"Ping test", &[])
        .await
        .expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
    assert_nothing_recorded(&app).await;

    let left = json!({ "type": "employee.left", "data": { "email": "bob@example.com" } });
    let answer = send(&app, "bob", &left).await;
    assert_eq!(
        job_ids(answer.expect_receipt(StatusCode::ACCEPTED)).len(),
        1
    );
    app.stop().await;
}
both_stores!(hibob_ping_on, hibob_ping_is_200_unsigned_and_unrecorded);

// ---------------------------------------------------------------------------------------------
// Rotation, cancel rules

async fn second_secret_is_accepted(db: TestDb) {
    let app = spawn(&db).await;
    let cases = [
        (
            "hr",
            HR_SECRET_NEXT,
            json!({ "type": "contract.ended", "data": { "email": "r1@example.com", "end_date": "2030-01-01" } }),
        ),
        (
            "automation",
            TOKEN_NEXT,
            json!({ "email": "r2@example.com" }),
        ),
    ];
    for (source, secret, body) in cases {
        let body = body.to_string();
        let headers = signer(&app, source, secret).sign(body.as_bytes(), Utc::now());
        let answer = post(&app, source, body.as_bytes(), &headers).await;
        let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
        assert!(!job_ids(receipt).is_empty(), "{}", answer.text);
    }
    app.stop().await;
}
both_stores!(rotation_on, second_secret_is_accepted);

async fn cancel_rule_cancels_pending_jobs(db: TestDb) {
    let app = spawn(&db).await;
    let ended = json!({
        "type": "contract.ended",
        "data": { "email": "Rehire@Example.com", "end_date": "2030-03-31" }
    });
    let created = job_ids(
        send(&app, "hr", &ended)
            .await
            .expect_receipt(StatusCode::ACCEPTED),
    );
    assert_eq!(created.len(), 2);
    let other = json!({ "type": "contract.ended", "data": { "email": "other@example.com", "end_date": "2030-03-31" } });
    let untouched = job_ids(
        send(&app, "hr", &other)
            .await
            .expect_receipt(StatusCode::ACCEPTED),
    );

    let extended =
        json!({ "type": "contract.extended", "data": { "email": "REHIRE@example.com" } });
    let answer = send(&app, "hr", &extended).await;
    let receipt = answer.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(receipt["jobs"], json!([]));
    let mut cancelled: Vec<String> = receipt["cancelled"]
        .as_array()
        .expect("cancelled")
        .iter()
        .map(|id| id.as_str().expect("ids are strings").to_owned())
        .collect();
    cancelled.sort();
    let mut expected = created.clone();
    expected.sort();
    assert_eq!(cancelled, expected);
    for id in &created {
        assert_eq!(app.job(id).await.job.state, JobState::Cancelled);
    }
    for id in &untouched {
        assert_eq!(app.job(id).await.job.state, JobState::Pending);
    }

    // Nothing left to cancel.
    let again = send(&app, "hr", &extended).await;
    assert_eq!(
        again.expect_receipt(StatusCode::ACCEPTED)["cancelled"],
        json!([])
    );
    app.stop().await;
}
both_stores!(cancel_rule_on, cancel_rule_cancels_pending_jobs);

// ---------------------------------------------------------------------------------------------
// Delivery ids

async fn delivery_ids_come_from_the_configured_place(db: TestDb) {
    let app = spawn(&db).await;
    let token = header("authorization", &format!("Bearer {TOKEN}"));
    let only_token = [token.clone()];

    // id_header: nobody signs a header, so a different body with the same id is a new
    // delivery, and the same body with it a repeat.
    let id = header("X-Request-Id", "req-0001");
    let first = post(
        &app,
        "by-header",
        br#"{"email":"h1@example.com"}"#,
        &[token.clone(), id.clone()],
    )
    .await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], "req-0001");
    let other = post(
        &app,
        "by-header",
        br#"{"email":"h2@example.com"}"#,
        &[token.clone(), id.clone()],
    )
    .await;
    let other = other.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(other["delivery_id"], "req-0001");
    assert_ne!(other["jobs"], first["jobs"]);
    let again = post(
        &app,
        "by-header",
        br#"{"email":"h1@example.com"}"#,
        &[token.clone(), id],
    )
    .await;
    assert_eq!(again.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);
    // Without the header, the body's hash.
    let body = br#"{"email":"h3@example.com"}"#;
    let hashed = post(&app, "by-header", body, &only_token).await;
    assert_eq!(
        hashed.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        sha256_id(body)
    );

    // id_pointer: strings and numbers. The token scheme does not sign the body, so the
    // pointer's id is not signed either: another body with it is a new delivery.
    let first = post(
        &app,
        "by-pointer",
        br#"{"event":{"id":"evt-1"},"email":"p1@example.com"}"#,
        &only_token,
    )
    .await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], "evt-1");
    let other = post(
        &app,
        "by-pointer",
        br#"{"email":"p2@example.com","event":{"id":"evt-1"}}"#,
        &only_token,
    )
    .await;
    let other = other.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(other["delivery_id"], "evt-1");
    assert_ne!(other["jobs"], first["jobs"]);
    let numeric = post(
        &app,
        "by-pointer",
        br#"{"event":{"id":42},"email":"p3@example.com"}"#,
        &only_token,
    )
    .await;
    assert_eq!(
        numeric.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        "42"
    );

    // standard-webhooks: webhook-id, so the same body under a new id is a new delivery.
    let body = json!({ "type": "employee.promoted" }).to_string();
    let signed = app.sign("hr", body.as_bytes());
    let webhook_id = signed[0].1.clone();
    assert_eq!(signed[0].0, "webhook-id");
    let first = post(&app, "hr", body.as_bytes(), &signed).await;
    assert_eq!(
        first.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        webhook_id.as_str()
    );
    let resigned = app.sign("hr", body.as_bytes());
    let second = post(&app, "hr", body.as_bytes(), &resigned).await;
    assert_eq!(
        second.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        resigned[0].1.as_str()
    );

    // hub-signature: X-Atlassian-Webhook-Identifier (not signed), else the body's hash.
    let deleted = |email: &str| {
        json!({ "webhookEvent": "user_deleted", "user": { "emailAddress": email } }).to_string()
    };
    let send_jira = async |body: String, id: Option<&str>| {
        // `sign` attaches a fresh identifier, as Jira does; put ours in its place.
        let mut headers = app.sign("jira", body.as_bytes());
        let before = headers.len();
        headers.retain(|(name, _)| !name.eq_ignore_ascii_case("X-Atlassian-Webhook-Identifier"));
        assert_eq!(headers.len(), before - 1, "sign names the delivery");
        if let Some(id) = id {
            headers.push(header("X-Atlassian-Webhook-Identifier", id));
        }
        post(&app, "jira", body.as_bytes(), &headers).await
    };
    let first = send_jira(deleted("j1@example.com"), Some("wh-77")).await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], "wh-77");
    let other = send_jira(deleted("j2@example.com"), Some("wh-77")).await;
    let other = other.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(other["delivery_id"], "wh-77");
    assert_ne!(other["jobs"], first["jobs"]);
    let again = send_jira(deleted("j1@example.com"), Some("wh-77")).await;
    assert_eq!(again.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);
    let body = deleted("j3@example.com");
    let hashed = send_jira(body.clone(), None).await;
    assert_eq!(
        hashed.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        sha256_id(body.as_bytes())
    );

    // No id at all: the body's hash, so the same body twice is a duplicate.
    let body = br#"{"email":"same@example.com"}"#;
    let first = post(&app, "automation", body, &only_token).await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], sha256_id(body));
    let again = post(&app, "automation", body, &only_token).await;
    assert_eq!(again.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);

    // A pointer into a body the scheme signs is a signed id: the same id is the same
    // delivery, whatever the body.
    let signed_pointer = async |body: &str| {
        let headers = app.sign("jira-by-pointer", body.as_bytes());
        post(&app, "jira-by-pointer", body.as_bytes(), &headers).await
    };
    let first = signed_pointer(
        &json!({ "event": { "id": "evt-9" }, "user": { "emailAddress": "s1@example.com" } })
            .to_string(),
    )
    .await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], "evt-9");
    let again = signed_pointer(
        &json!({ "event": { "id": "evt-9" }, "user": { "emailAddress": "s2@example.com" } })
            .to_string(),
    )
    .await;
    assert_eq!(again.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);

    let emails: BTreeSet<String> = all_jobs(&app)
        .await
        .into_iter()
        .map(|j| j.email.to_string())
        .collect();
    for unsigned in ["h2@example.com", "p2@example.com", "j2@example.com"] {
        assert!(emails.contains(unsigned), "{unsigned} got no job");
    }
    assert!(
        !emails.contains("s2@example.com"),
        "a signed id's duplicate made a job"
    );
    app.stop().await;
}
both_stores!(delivery_ids_on, delivery_ids_come_from_the_configured_place);

// ---------------------------------------------------------------------------------------------
// Unsigned delivery ids (README, "HTTP API")

/// Jira admin webhooks, whose `X-Atlassian-Webhook-Identifier` is not signed: one source with
/// the default replay window, one with a window of a second, one that also checks the body's
/// `/timestamp`; and a Standard Webhooks source, whose `webhook-id` is signed.
fn unsigned_config() -> String {
    let rule = r#"
  [[sources.rules]]
  name = "user-deleted"
  email = "/user/emailAddress"
  actions = ["delete_portal_customer"]
"#;
    format!(
        r#"dry_run = true

[[sources]]
name = "jira"
scheme = "hub-signature"
secrets = ["{JIRA_SECRET}"]
{rule}
[[sources]]
name = "jira-short"
scheme = "hub-signature"
secrets = ["{JIRA_SECRET}"]
replay_window = "1s"
{rule}
[[sources]]
name = "jira-stamped"
scheme = "hub-signature"
secrets = ["{JIRA_SECRET}"]
timestamp_pointer = "/timestamp"
tolerance_seconds = 300
{rule}
[[sources]]
name = "hr"
scheme = "standard-webhooks"
secrets = ["{HR_SECRET}"]
{rule}
[[sources]]
name = "github"
scheme = "hub-signature"
header = "X-Hub-Signature-256"
id_header = "X-GitHub-Delivery"
secrets = ["{JIRA_SECRET}"]
{rule}
[[sources]]
name = "token-by-header"
scheme = "token"
id_header = "X-Request-Id"
secrets = ["{TOKEN}"]
{rule}
[[sources]]
name = "hr-by-header"
scheme = "standard-webhooks"
id_header = "X-Request-Id"
secrets = ["{HR_SECRET}"]
{rule}"#
    )
}

fn jira_body(email: &str) -> String {
    json!({ "webhookEvent": "user_deleted", "user": { "emailAddress": email } }).to_string()
}

/// Posts `body` to a hub-signature source, genuinely signed, under delivery id `id`.
async fn send_jira_as(app: &TestApp, source: &str, body: &str, id: &str) -> Answer {
    let mut headers = app.sign(source, body.as_bytes());
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("X-Atlassian-Webhook-Identifier"));
    headers.push(header("X-Atlassian-Webhook-Identifier", id));
    post(app, source, body.as_bytes(), &headers).await
}

async fn spawn_unsigned(db: &TestDb) -> App {
    install_crypto_provider();
    let gate = Box::new(GATE.read().await);
    App {
        app: TestApp::spawn(db, &unsigned_config()).await,
        _gate: gate,
    }
}

async fn an_unsigned_id_with_another_body_is_a_new_delivery(db: TestDb) {
    let app = spawn_unsigned(&db).await;
    let first = send_jira_as(&app, "jira", &jira_body("alice@example.com"), "wh-1").await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();

    // Another person's genuine delivery that reuses the id is not dropped.
    let other = send_jira_as(&app, "jira", &jira_body("bob@example.com"), "wh-1").await;
    let other = other.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(other["delivery_id"], "wh-1");
    assert_eq!(other["jobs"][0]["email"], "bob@example.com");
    assert_eq!(other["jobs"][0]["delivery_id"], "wh-1");
    assert_ne!(job_ids(&other), job_ids(&first));

    // The same id with the same body is the sender retrying: the first answer.
    let again = send_jira_as(&app, "jira", &jira_body("alice@example.com"), "wh-1").await;
    let mut expected = first.clone();
    expected["duplicate"] = json!(true);
    assert_eq!(*again.expect_receipt(StatusCode::OK), expected);

    assert_eq!(all_jobs(&app).await.len(), 2);
    assert_eq!(delivery_count(&app).await, 2);
    app.stop().await;
}
both_stores!(
    unsigned_id_other_body_on,
    an_unsigned_id_with_another_body_is_a_new_delivery
);

async fn a_replayed_body_under_a_fresh_id_creates_nothing(db: TestDb) {
    let app = spawn_unsigned(&db).await;
    let body = jira_body("carol@example.com");
    let first = send_jira_as(&app, "jira", &body, "wh-1").await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    // The first job finished, so nothing live would stop a new one.
    for id in job_ids(&first) {
        app.store
            .cancel(id.parse().unwrap(), "test", "finished")
            .await
            .unwrap();
    }

    for fresh in ["wh-2", "wh-3"] {
        let replay = send_jira_as(&app, "jira", &body, fresh).await;
        let mut expected = first.clone();
        expected["duplicate"] = json!(true);
        assert_eq!(*replay.expect_receipt(StatusCode::OK), expected);
    }
    assert_eq!(all_jobs(&app).await.len(), 1, "no job from a replay");
    assert_eq!(delivery_count(&app).await, 1);

    // Outside the window (one second here) the body is accepted again.
    let short = send_jira_as(&app, "jira-short", &body, "wh-1").await;
    let short = short.expect_receipt(StatusCode::ACCEPTED).clone();
    for id in job_ids(&short) {
        app.store
            .cancel(id.parse().unwrap(), "test", "finished")
            .await
            .unwrap();
    }
    let within = send_jira_as(&app, "jira-short", &body, "wh-2").await;
    within.expect_receipt(StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let later = send_jira_as(&app, "jira-short", &body, "wh-3").await;
    let later = later.expect_receipt(StatusCode::ACCEPTED);
    assert_eq!(later["delivery_id"], "wh-3");
    assert_eq!(later["jobs"][0]["state"], "pending");
    assert_eq!(all_jobs(&app).await.len(), 3);
    app.stop().await;
}
both_stores!(
    replayed_body_on,
    a_replayed_body_under_a_fresh_id_creates_nothing
);

/// Each source whose ids are not all signed, and the header that names its deliveries: Jira's
/// own, GitHub's through `id_header`, a token sender's, and a Standard Webhooks sender whose
/// `id_header` wins over its signed `webhook-id`.
const NAMED_BY_HEADER: [(&str, &str); 4] = [
    ("jira", "X-Atlassian-Webhook-Identifier"),
    ("github", "X-GitHub-Delivery"),
    ("token-by-header", "X-Request-Id"),
    ("hr-by-header", "X-Request-Id"),
];

/// A genuine delivery of `body` as an attacker captures it, minus its delivery id: the
/// signed headers alone, to be sent again with the id `id` (absent, empty, blank or fresh).
fn captured(app: &TestApp, source: &str, body: &str) -> Vec<(String, String)> {
    let mut headers = app.sign(source, body.as_bytes());
    headers.retain(|(name, _)| !name.eq_ignore_ascii_case("X-Atlassian-Webhook-Identifier"));
    headers
}

fn named(headers: &[(String, String)], id_header: &str, id: Option<&str>) -> Vec<(String, String)> {
    let mut headers = headers.to_vec();
    headers.extend(id.map(|id| header(id_header, id)));
    headers
}

/// Dropping or blanking an unsigned id does not make a captured body new: it is held to the
/// replay window like a fresh id is, while a body never seen before is still accepted
/// without an id, and is itself a repeat the second time.
async fn a_replay_without_an_id_creates_nothing(db: TestDb) {
    let app = spawn_unsigned(&db).await;
    for (source, id_header) in NAMED_BY_HEADER {
        let body = jira_body(&format!("{source}-grace@example.com"));
        let headers = captured(&app, source, &body);
        let first = post(
            &app,
            source,
            body.as_bytes(),
            &named(&headers, id_header, Some("orig-1")),
        )
        .await;
        let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
        assert_eq!(first["delivery_id"], "orig-1", "{source}");
        // The first job finished, so nothing live would stop a new one.
        for id in job_ids(&first) {
            app.store
                .cancel(id.parse().unwrap(), "test", "finished")
                .await
                .unwrap();
        }
        let (jobs, deliveries) = (all_jobs(&app).await.len(), delivery_count(&app).await);

        for id in [None, Some(""), Some("   "), Some("\t")] {
            let replay = post(
                &app,
                source,
                body.as_bytes(),
                &named(&headers, id_header, id),
            )
            .await;
            let mut expected = first.clone();
            expected["duplicate"] = json!(true);
            assert_eq!(
                *replay.expect_receipt(StatusCode::OK),
                expected,
                "{source}, id {id:?}"
            );
        }
        assert_eq!(
            all_jobs(&app).await.len(),
            jobs,
            "{source}: a replay made a job"
        );
        assert_eq!(delivery_count(&app).await, deliveries, "{source}");

        // A body never seen before needs no id, and the same again is a repeat, under no id
        // or under a fresh one.
        let new_body = jira_body(&format!("{source}-heidi@example.com"));
        let new_headers = captured(&app, source, &new_body);
        let new = post(&app, source, new_body.as_bytes(), &new_headers).await;
        let new = new.expect_receipt(StatusCode::ACCEPTED).clone();
        assert_eq!(
            new["jobs"][0]["email"],
            format!("{source}-heidi@example.com")
        );
        for id in [None, Some(" "), Some("orig-2")] {
            let again = post(
                &app,
                source,
                new_body.as_bytes(),
                &named(&new_headers, id_header, id),
            )
            .await;
            assert_eq!(
                again.expect_receipt(StatusCode::OK)["jobs"],
                new["jobs"],
                "{source}, id {id:?}"
            );
        }
        assert_eq!(all_jobs(&app).await.len(), jobs + 1, "{source}");
    }
    app.stop().await;
}
both_stores!(replay_without_id_on, a_replay_without_an_id_creates_nothing);

/// Standard Webhooks signs `webhook-id` with the body: the id alone names the delivery, so
/// the same id with another (genuinely signed) body is still a repeat, and the same body
/// under a new id is a new delivery, as before.
async fn a_signed_id_alone_names_the_delivery(db: TestDb) {
    use base64::Engine as _;
    use hmac::{Hmac, Mac};
    let app = spawn_unsigned(&db).await;
    let sign_as = |id: &str, body: &str| {
        let key = base64::engine::general_purpose::STANDARD
            .decode(HR_SECRET.trim_start_matches("whsec_"))
            .unwrap();
        let timestamp = Utc::now().timestamp().to_string();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
        let signature =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        vec![
            header("webhook-id", id),
            header("webhook-timestamp", &timestamp),
            header("webhook-signature", &format!("v1,{signature}")),
        ]
    };
    let (one, two) = (jira_body("dave@example.com"), jira_body("erin@example.com"));
    let first = post(&app, "hr", one.as_bytes(), &sign_as("msg_1", &one)).await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    let other = post(&app, "hr", two.as_bytes(), &sign_as("msg_1", &two)).await;
    assert_eq!(other.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);
    let fresh = post(&app, "hr", one.as_bytes(), &sign_as("msg_2", &one)).await;
    assert_eq!(
        fresh.expect_receipt(StatusCode::ACCEPTED)["delivery_id"],
        "msg_2"
    );
    let emails: Vec<String> = all_jobs(&app)
        .await
        .into_iter()
        .map(|j| j.email.to_string())
        .collect();
    assert_eq!(emails, vec!["dave@example.com"]);
    assert_eq!(delivery_count(&app).await, 2);
    app.stop().await;
}
both_stores!(signed_id_on, a_signed_id_alone_names_the_delivery);

/// `headers` signed by a Standard Webhooks sender, with `webhook-` names swapped for `svix-`
/// where `to_svix` says so (id, timestamp, signature).
fn as_svix(headers: &[(String, String)], to_svix: [bool; 3]) -> Vec<(String, String)> {
    headers
        .iter()
        .zip(to_svix)
        .map(
            |((name, value), svix)| match name.strip_prefix("webhook-") {
                Some(rest) if svix => (format!("svix-{rest}"), value.clone()),
                _ => (name.clone(), value.clone()),
            },
        )
        .collect()
}

/// A Svix-built sender that is not white-labelled names its headers `svix-id`,
/// `svix-timestamp` and `svix-signature`: accepted like `webhook-*`, `svix-id` naming the
/// delivery under either set. Mixed, doubled or incomplete sets are refused and recorded
/// nowhere.
async fn a_svix_built_sender_is_accepted(db: TestDb) {
    let app = spawn_unsigned(&db).await;
    let body = jira_body("ivan@example.com");
    let signed = app.sign("hr", body.as_bytes());
    let svix = as_svix(&signed, [true; 3]);
    assert_eq!(svix[0].0, "svix-id");
    let first = post(&app, "hr", body.as_bytes(), &svix).await;
    let first = first.expect_receipt(StatusCode::ACCEPTED).clone();
    assert_eq!(first["delivery_id"], signed[0].1.as_str());
    assert_eq!(first["jobs"][0]["email"], "ivan@example.com");
    for again in [svix.clone(), signed.clone()] {
        let answer = post(&app, "hr", body.as_bytes(), &again).await;
        assert_eq!(answer.expect_receipt(StatusCode::OK)["jobs"], first["jobs"]);
    }

    let other = jira_body("judy@example.com");
    let signed = app.sign("hr", other.as_bytes());
    let svix = as_svix(&signed, [true; 3]);
    let mut refused = Vec::new();
    for mask in 1..7 {
        refused.push(as_svix(
            &signed,
            [mask & 1 != 0, mask & 2 != 0, mask & 4 != 0],
        ));
    }
    refused.push([signed.clone(), svix.clone()].concat());
    for i in 0..3 {
        let mut doubled = svix.clone();
        doubled.push(svix[i].clone());
        refused.push(doubled);
        let mut missing = svix.clone();
        missing.remove(i);
        refused.push(missing);
    }
    for headers in refused {
        let answer = post(&app, "hr", other.as_bytes(), &headers).await;
        answer.expect_error(StatusCode::UNAUTHORIZED, "invalid_signature");
    }
    assert_eq!(
        delivery_count(&app).await,
        1,
        "a refused delivery was recorded"
    );
    assert_eq!(all_jobs(&app).await.len(), 1);
    app.stop().await;
}
both_stores!(svix_sender_on, a_svix_built_sender_is_accepted);

async fn a_stale_body_timestamp_is_401(db: TestDb) {
    let app = spawn_unsigned(&db).await;
    let stamped = |timestamp: Value| {
        json!({
            "timestamp": timestamp,
            "webhookEvent": "user_deleted",
            "user": { "emailAddress": "frank@example.com" }
        })
        .to_string()
    };
    let now = Utc::now();
    let ten_minutes = TimeDelta::minutes(10);
    for stale in [
        json!((now - ten_minutes).timestamp_millis()),
        json!((now + ten_minutes).timestamp_millis()),
        json!((now - ten_minutes).timestamp()),
        json!((now - ten_minutes).to_rfc3339()),
    ] {
        let answer = send_jira_as(&app, "jira-stamped", &stamped(stale.clone()), "wh-1").await;
        answer.expect_error(StatusCode::UNAUTHORIZED, "stale_timestamp");
    }
    // No readable timestamp cannot show it is fresh: refused the same way, saying where.
    for body in [
        jira_body("frank@example.com"),
        stamped(json!("soon")),
        stamped(json!(null)),
    ] {
        let answer = send_jira_as(&app, "jira-stamped", &body, "wh-1").await;
        answer.expect_error(StatusCode::UNAUTHORIZED, "stale_timestamp");
        assert!(answer.text.contains("/timestamp"), "{}", answer.text);
    }
    assert_nothing_recorded(&app).await;

    // Jira's epoch milliseconds, and the other forms, within the tolerance.
    for (i, fresh) in [
        json!(now.timestamp_millis()),
        json!((now - TimeDelta::minutes(4)).timestamp_millis()),
        json!(now.timestamp()),
        json!(now.to_rfc3339()),
    ]
    .into_iter()
    .enumerate()
    {
        let answer = send_jira_as(&app, "jira-stamped", &stamped(fresh), &format!("ok-{i}")).await;
        answer.expect_receipt(StatusCode::ACCEPTED);
    }
    // A source without timestamp_pointer does not look.
    send_jira_as(&app, "jira", &jira_body("frank@example.com"), "wh-1")
        .await
        .expect_receipt(StatusCode::ACCEPTED);
    app.stop().await;
}
both_stores!(stale_body_timestamp_on, a_stale_body_timestamp_is_401);

// ---------------------------------------------------------------------------------------------
// Concurrency

async fn concurrent_distinct_deliveries_are_all_accepted(db: TestDb) {
    let app = spawn_alone(&db).await;
    let url = format!("{}/hooks/automation", app.base_url);
    let token = format!("Bearer {TOKEN}");
    let mut tasks = JoinSet::new();
    for i in 0..200 {
        let (http, url, token) = (app.http.clone(), url.clone(), token.clone());
        tasks.spawn(async move {
            let body = json!({ "email": format!("person{i}@example.com") }).to_string();
            let response = http
                .post(url)
                .header("authorization", token)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("POST");
            Answer::of(response).await
        });
    }
    let mut accepted = 0;
    while let Some(answer) = tasks.join_next().await {
        let answer = answer.expect("task");
        assert_eq!(
            job_ids(answer.expect_receipt(StatusCode::ACCEPTED)).len(),
            1
        );
        accepted += 1;
    }
    assert_eq!(accepted, 200);
    assert_eq!(delivery_count(&app).await, 200);
    assert_eq!(all_jobs(&app).await.len(), 200);
    app.stop().await;
}
both_stores!(
    concurrent_distinct_on,
    concurrent_distinct_deliveries_are_all_accepted
);

async fn concurrent_copies_of_one_delivery_make_one_set_of_jobs(db: TestDb) {
    let app = spawn_alone(&db).await;
    let body = json!({
        "type": "contract.ended",
        "data": { "email": "racer@example.com", "end_date": "2030-02-28" }
    })
    .to_string();
    let headers = app.sign("hr", body.as_bytes());
    let url = format!("{}/hooks/hr", app.base_url);
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let (http, url, body, headers) =
            (app.http.clone(), url.clone(), body.clone(), headers.clone());
        tasks.spawn(async move {
            let mut request = http
                .post(url)
                .header("content-type", "application/json")
                .body(body);
            for (name, value) in &headers {
                request = request.header(name, value);
            }
            Answer::of(request.send().await.expect("POST")).await
        });
    }
    let mut answers = Vec::new();
    while let Some(answer) = tasks.join_next().await {
        answers.push(answer.expect("task"));
    }
    let firsts = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .count();
    assert_eq!(firsts, 1, "exactly one copy is the first delivery");
    let ids = job_ids(&answers[0].body);
    assert_eq!(ids.len(), 2);
    for answer in &answers {
        let status = if answer.status == StatusCode::ACCEPTED {
            StatusCode::ACCEPTED
        } else {
            StatusCode::OK
        };
        assert_eq!(job_ids(answer.expect_receipt(status)), ids);
    }
    assert_eq!(delivery_count(&app).await, 1);
    let mut stored: Vec<String> = all_jobs(&app)
        .await
        .iter()
        .map(|j| j.id.to_string())
        .collect();
    stored.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(stored, expected);
    app.stop().await;
}
both_stores!(
    concurrent_copies_on,
    concurrent_copies_of_one_delivery_make_one_set_of_jobs
);

async fn concurrent_replays_under_fresh_ids_have_one_winner(db: TestDb) {
    install_crypto_provider();
    let _gate = GATE.write().await;
    let app = TestApp::spawn(&db, &unsigned_config()).await;
    let body = jira_body("racer@example.com");
    let mut tasks = JoinSet::new();
    for i in 0..20 {
        let app = app.clone_handle();
        let body = body.clone();
        tasks.spawn(async move { send_jira_as(&app, "jira", &body, &format!("wh-{i}")).await });
    }
    // Meanwhile one id shared by ten different people: each is its own delivery.
    let mut shared = JoinSet::new();
    for i in 0..10 {
        let app = app.clone_handle();
        shared.spawn(async move {
            send_jira_as(
                &app,
                "jira",
                &jira_body(&format!("p{i}@example.com")),
                "wh-shared",
            )
            .await
        });
    }
    let answers = tasks.join_all().await;
    let firsts: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.status == StatusCode::ACCEPTED)
        .collect();
    assert_eq!(firsts.len(), 1, "exactly one copy of the body is accepted");
    let first = firsts[0].expect_receipt(StatusCode::ACCEPTED);
    for answer in &answers {
        if answer.status != StatusCode::ACCEPTED {
            let replay = answer.expect_receipt(StatusCode::OK);
            assert_eq!(replay["delivery_id"], first["delivery_id"]);
            assert_eq!(job_ids(replay), job_ids(first));
        }
    }
    for answer in shared.join_all().await {
        answer.expect_receipt(StatusCode::ACCEPTED);
    }
    assert_eq!(delivery_count(&app).await, 11);
    assert_eq!(all_jobs(&app).await.len(), 11);
    app.stop().await;
}
both_stores!(
    concurrent_replays_on,
    concurrent_replays_under_fresh_ids_have_one_winner
);
