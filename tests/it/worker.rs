//! The worker against the fake Atlassian, on both stores: signed webhook in, job committed,
//! the exact Atlassian request out (or, for every guard, none), and the job's end state.
//! Every assertion about what Atlassian saw reads the fake's request log.

use offboard::domain::{JobWithEvents, PauseReason};
use std::time::Duration;

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml, job_ids};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{
    AccountStatus, AuthKind, DIRECTORY_ID, FakeAccount, FakeAtlassian, FakeStatus, Fault,
    FaultKind, Matcher, Membership, ORG_ID, RecordedRequest, SITE_EMAIL,
};
use chrono::Utc;
use offboard::domain::{JobState, Outcome};
use offboard::serve::Role;
use offboard::store::VerifiedState;
use offboard::worker::verification;

use serde_json::{Value, json};
use tokio::time::Instant;

const SOURCE: &str = "hr";
const TOKEN: &str = "s3cret-token";
const WAIT: Duration = Duration::from_secs(20);

/// The service's configuration, test-friendly by default: live, fast backoff, short lease.
struct Settings {
    dry_run: bool,
    concurrency: usize,
    max_attempts: u32,
    requests_per_second: f64,
    max_actions_per_hour: u64,
    /// More `[safety]` lines.
    safety: &'static str,
    /// The `[[sources.rules]]` tables of the source.
    rules: String,
}

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            dry_run: false,
            concurrency: 4,
            max_attempts: 8,
            requests_per_second: 200.0,
            max_actions_per_hour: 1000,
            safety: "",
            rules: rule(r#"["suspend_access"]"#),
        }
    }
}

impl Settings {
    fn with_rule(actions: &str) -> Settings {
        Settings {
            rules: rule(actions),
            ..Settings::default()
        }
    }

    fn toml(&self, fake: &FakeAtlassian) -> String {
        format!(
            r#"dry_run = {dry_run}
{atlassian}
[worker]
concurrency = {concurrency}
max_attempts = {max_attempts}
lease_seconds = 5
requests_per_second = {rps:?}
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = {max_actions}
{safety}

[[sources]]
name = "{SOURCE}"
scheme = "token"
secrets = ["{TOKEN}"]
{rules}"#,
            dry_run = self.dry_run,
            atlassian = atlassian_toml(fake),
            concurrency = self.concurrency,
            max_attempts = self.max_attempts,
            rps = self.requests_per_second,
            max_actions = self.max_actions_per_hour,
            safety = self.safety,
            rules = self.rules,
        )
    }
}

/// One rule: every delivery names one person (`/email`, optional `/account_id`).
fn rule(actions: &str) -> String {
    format!(
        r#"
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  account_id = "/account_id"
  actions = {actions}
"#
    )
}

/// Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls cannot
/// pick one by itself for the test's own HTTP client.
fn install_crypto_provider() {
    offboard::install_tls_provider();
}

/// The service over `db` with the fake behind it.
struct Harness {
    fake: FakeAtlassian,
    app: TestApp,
}

impl Harness {
    async fn start(db: &TestDb, settings: Settings, accounts: Vec<FakeAccount>) -> Harness {
        install_crypto_provider();
        let fake = FakeAtlassian::start().await;
        for account in accounts {
            fake.add_account(account);
        }
        let app = TestApp::spawn(db, &settings.toml(&fake)).await;
        fake.clear_requests();
        Harness { fake, app }
    }

    /// Delivers one signed webhook and returns the ids of the jobs it created.
    async fn enqueue(&self, body: Value) -> Vec<String> {
        job_ids(&self.app.deliver(SOURCE, &body).await)
    }

    /// Delivers a webhook that creates exactly one job and waits until that job is final.
    async fn run_one(&self, body: Value) -> JobWithEvents {
        let ids = self.enqueue(body).await;
        assert_eq!(ids.len(), 1, "expected one job, got {ids:?}");
        self.app.wait_final(&ids[0], WAIT).await
    }

    async fn wait_all_final(&self, ids: &[String]) -> Vec<JobWithEvents> {
        let mut jobs = Vec::new();
        for id in ids {
            jobs.push(self.app.wait_final(id, WAIT).await);
        }
        jobs
    }

    async fn states(&self, ids: &[String]) -> Vec<JobState> {
        let mut states = Vec::new();
        for id in ids {
            states.push(self.app.job(id).await.job.state);
        }
        states
    }

    async fn worker_paused(&self) -> Option<PauseReason> {
        let state = self.app.store.worker_state().await.expect("worker state");
        state
            .paused
            .then(|| state.reason.expect("a pause has a reason"))
    }

    async fn stop(self) {
        self.app.stop().await;
    }
}

/// Polls `check` until it holds, or panics after `timeout`.
async fn eventually(what: &str, timeout: Duration, check: impl AsyncFn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn person(email: &str) -> Value {
    json!({ "email": email })
}

fn person_with_id(email: &str, account_id: &str) -> Value {
    json!({ "email": email, "account_id": account_id })
}

#[track_caller]
fn assert_succeeded(job: &JobWithEvents, outcome: Outcome) {
    assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
    assert_eq!(job.job.outcome, Some(outcome), "{job:#?}");
}

#[track_caller]
fn assert_failed(job: &JobWithEvents, error: &str) {
    assert_eq!(job.job.state, JobState::Failed, "{job:#?}");
    assert_eq!(job.job.last_error.as_deref(), Some(error), "{job:#?}");
}

#[track_caller]
fn assert_no_mutation(fake: &FakeAtlassian) {
    let sent = fake.mutating_requests();
    assert!(
        sent.is_empty(),
        "no mutating request may be sent: {sent:#?}"
    );
}

/// Every event detail of the job, one per line.
fn event_log(job: &JobWithEvents) -> String {
    job.events
        .iter()
        .map(|e| format!("{:?} -> {}: {}", e.from, e.to, e.detail))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Events of the job moving back to pending (snoozes and retries).
fn back_to_pending(job: &JobWithEvents) -> Vec<&str> {
    job.events
        .iter()
        .filter(|e| e.from == Some(JobState::Running) && e.to == JobState::Pending)
        .map(|e| e.detail.as_str())
        .collect()
}

fn directory(rest: &str) -> String {
    format!("/admin/v2/orgs/{ORG_ID}/directories/{DIRECTORY_ID}{rest}")
}

fn site_auth() -> AuthKind {
    AuthKind::Basic {
        user: SITE_EMAIL.to_owned(),
    }
}

fn managed_in_status(account_id: &str, email: &str, status: FakeStatus) -> FakeAccount {
    FakeAccount::managed(account_id, email).in_state(status)
}

// ---------------------------------------------------------------------------------------
// The ten offboarding actions, end to end; the five that give back are in
// `every_inverse_action_gives_back`
// ---------------------------------------------------------------------------------------

/// One action: the account it acts on, the request it must send, and the change it makes.
struct ActionCase {
    /// The action table of the rule.
    action: &'static str,
    account: FakeAccount,
    method: &'static str,
    path: String,
    query: Option<&'static str>,
    body: Option<Value>,
    site: bool,
    changed: fn(&FakeAccount) -> bool,
}

fn action_cases() -> Vec<ActionCase> {
    let on_desk = FakeAccount {
        service_desks: ["10".to_owned()].into(),
        ..FakeAccount::customer("qm:desk-1", "desk@example.com")
    };
    let in_org = FakeAccount {
        organizations: ["3".to_owned()].into(),
        ..FakeAccount::customer("qm:org-1", "org@example.com")
    };
    let in_group = FakeAccount {
        groups: ["g-42".to_owned()].into(),
        ..FakeAccount::managed("acc-group", "group@example.com")
    };
    vec![
        ActionCase {
            action: r#"{ action = "revoke_portal_access" }"#,
            account: FakeAccount::customer("qm:revoke-1", "revoke@example.com"),
            method: "PUT",
            path: "/rest/servicedeskapi/customer/user/qm:revoke-1/revoke-portal-only-access".into(),
            query: None,
            body: None,
            site: true,
            changed: |a| a.portal_access_revoked,
        },
        ActionCase {
            action: r#"{ action = "delete_portal_customer" }"#,
            account: FakeAccount::customer("qm:delete-1", "delete@example.com"),
            method: "DELETE",
            path: "/rest/api/3/user".into(),
            query: Some("accountId=qm%3Adelete-1"),
            body: None,
            site: true,
            changed: |a| a.status() == FakeStatus::Deleted,
        },
        ActionCase {
            action: r#"{ action = "remove_from_service_desk", service_desk_id = "10" }"#,
            account: on_desk,
            method: "DELETE",
            path: "/rest/servicedeskapi/servicedesk/10/customer".into(),
            query: None,
            body: Some(json!({ "accountIds": ["qm:desk-1"] })),
            site: true,
            changed: |a| a.service_desks.is_empty(),
        },
        ActionCase {
            action: r#"{ action = "remove_from_customer_organization", organization_id = "3" }"#,
            account: in_org,
            method: "DELETE",
            path: "/rest/servicedeskapi/organization/3/user".into(),
            query: None,
            body: Some(json!({ "accountIds": ["qm:org-1"] })),
            site: true,
            changed: |a| a.organizations.is_empty(),
        },
        ActionCase {
            action: r#"{ action = "suspend_access" }"#,
            account: FakeAccount::managed("acc-suspend", "suspend@example.com"),
            method: "POST",
            path: directory("/users/acc-suspend/suspend"),
            query: None,
            body: Some(json!({})),
            site: false,
            changed: |a| a.status() == FakeStatus::Suspended,
        },
        ActionCase {
            action: r#"{ action = "restore_access" }"#,
            account: managed_in_status("acc-restore", "restore@example.com", FakeStatus::Suspended),
            method: "POST",
            path: directory("/users/acc-restore/restore"),
            query: None,
            body: Some(json!({})),
            site: false,
            changed: |a| a.status() == FakeStatus::Active,
        },
        ActionCase {
            action: r#"{ action = "remove_from_directory" }"#,
            account: FakeAccount::managed("acc-remove", "remove@example.com"),
            method: "DELETE",
            path: directory("/users/acc-remove"),
            query: None,
            body: None,
            site: false,
            changed: |a| !a.in_directory() && a.status() == FakeStatus::Removed,
        },
        ActionCase {
            action: r#"{ action = "remove_from_group", group_id = "g-42" }"#,
            account: in_group,
            method: "DELETE",
            path: directory("/groups/g-42/memberships/acc-group"),
            query: None,
            body: None,
            site: false,
            changed: |a| a.groups.is_empty(),
        },
        ActionCase {
            action: r#"{ action = "deactivate_account" }"#,
            account: FakeAccount::managed("acc-deactivate", "deactivate@example.com"),
            method: "POST",
            path: "/users/acc-deactivate/manage/lifecycle/disable".into(),
            query: None,
            body: Some(json!({
                "message": "Deactivated by offboard (source hr, rule case-8, job 9)"
            })),
            site: false,
            changed: |a| a.status() == FakeStatus::Deactivated,
        },
        ActionCase {
            action: r#"{ action = "delete_account" }"#,
            account: FakeAccount::managed("acc-delete", "delete-managed@example.com"),
            method: "POST",
            path: "/users/acc-delete/manage/lifecycle/delete".into(),
            query: None,
            body: None,
            site: false,
            changed: |a| a.status() == FakeStatus::PendingDelete,
        },
    ]
}

#[track_caller]
fn assert_lookup(request: &RecordedRequest, email: &str, site: bool) {
    if site {
        assert_eq!(request.method, "GET", "{request:#?}");
        assert_eq!(request.path, "/rest/api/3/user/search", "{request:#?}");
        assert_eq!(request.auth, site_auth(), "{request:#?}");
    } else {
        assert_eq!(request.method, "POST", "{request:#?}");
        assert_eq!(request.path, directory("/users/search"), "{request:#?}");
        assert_eq!(request.auth, AuthKind::Bearer, "{request:#?}");
        assert_eq!(
            request.body,
            Some(json!({ "emails": [email] })),
            "{request:#?}"
        );
    }
}

/// A new action in the action table (`Action::ALL`) brings its case: the request it sends
/// (and, going forward, what it changes in the fake). A hand-over is a procedure of many
/// requests: its cases are in `tests/it/handover.rs`, whose chain runs every one.
#[test]
fn every_action_has_a_case() {
    let forward = action_cases();
    let inverse = inverse_cases();
    let single_calls = offboard::domain::Action::ALL
        .into_iter()
        .filter(|action| action.handover().is_none());
    for action in single_calls {
        let name = format!("action = \"{action}\"");
        let forward = forward.iter().filter(|c| c.action.contains(&name)).count();
        let inverse = inverse
            .iter()
            .filter(|(entry, ..)| entry["action"] == action.as_str())
            .count();
        assert_eq!(
            forward + inverse,
            1,
            "{action} needs one case in action_cases() or inverse_cases()"
        );
    }
}

async fn every_action_sends_its_request(db: TestDb) {
    let cases = action_cases();
    let rules: String = cases
        .iter()
        .enumerate()
        .map(|(i, case)| {
            format!(
                r#"
  [[sources.rules]]
  name = "case-{i}"
  when = {{ "/case" = "{i}" }}
  email = "/email"
  account_id = "/account_id"
  actions = [{}]
"#,
                case.action
            )
        })
        .collect();
    let settings = Settings {
        rules,
        ..Settings::default()
    };
    let accounts = cases.iter().map(|c| c.account.clone()).collect();
    let h = Harness::start(&db, settings, accounts).await;
    for (i, case) in cases.iter().enumerate() {
        let account = &case.account;
        let email = account.email.clone().expect("test accounts have emails");
        let before = h.fake.requests().len();
        let job = h
            .run_one(
                json!({ "case": i.to_string(), "email": email, "account_id": account.account_id }),
            )
            .await;
        assert_succeeded(&job, Outcome::Done);

        let sent = &h.fake.requests()[before..];
        // A desk or organization removal answers non-members like members: membership is
        // read between the lookup and the call (README, "Job outcomes").
        let membership_read = case.action.contains("remove_from_service_desk")
            || case.action.contains("remove_from_customer_organization");
        // A deletion first counts the filters and dashboards the account owns (README, "No
        // silent loss").
        let content_read = case.action.contains("delete_account");
        assert_eq!(
            sent.len(),
            2 + usize::from(membership_read) + 2 * usize::from(content_read),
            "{}: one lookup, one mutation: {sent:#?}",
            case.action
        );
        assert_lookup(&sent[0], &email, case.site);
        if membership_read {
            assert!(sent[1].is_lookup(), "{:#?}", sent[1]);
        }
        if content_read {
            assert_eq!(sent[1].path, "/rest/api/3/filter/search");
            assert_eq!(sent[2].path, "/rest/api/3/dashboard/search");
        }
        let mutation = sent.last().expect("a mutation");
        assert!(!mutation.is_lookup(), "{mutation:#?}");
        assert_eq!(mutation.method, case.method, "{}", case.action);
        assert_eq!(mutation.path, case.path, "{}", case.action);
        assert_eq!(mutation.query.as_deref(), case.query, "{}", case.action);
        assert_eq!(mutation.body, case.body, "{}", case.action);
        let auth = if case.site {
            site_auth()
        } else {
            AuthKind::Bearer
        };
        assert_eq!(mutation.auth, auth, "{}", case.action);
        let agent = mutation.header("user-agent").unwrap_or_default();
        assert!(agent.starts_with("offboard/"), "User-Agent {agent:?}");

        let now = h.fake.account(&account.account_id).expect("account");
        assert!((case.changed)(&now), "{}: {now:#?}", case.action);
    }
    assert_eq!(h.fake.mutating_requests().len(), cases.len());
    h.stop().await;
}

both_stores!(
    every_action_sends_its_request_on,
    every_action_sends_its_request
);

/// A 404 from the mutation means the account is already gone or in that state; for a
/// group, only once the group was read back and exists.
async fn not_found_from_the_mutation_is_already_done(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "group"
  when = { "/kind" = "group" }
  email = "/email"
  actions = [{ action = "remove_from_group", group_id = "g-other" }]

  [[sources.rules]]
  name = "delete"
  when = { "/kind" = "delete" }
  email = "/email"
  actions = ["delete_account"]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::managed("acc-1", "nogroup@example.com"),
        managed_in_status("acc-2", "deleting@example.com", FakeStatus::PendingDelete),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    h.fake.add_group("g-other");

    let job = h
        .run_one(json!({ "kind": "group", "email": "nogroup@example.com" }))
        .await;
    assert_succeeded(&job, Outcome::AlreadyDone);
    let job = h
        .run_one(json!({ "kind": "delete", "email": "deleting@example.com" }))
        .await;
    assert_succeeded(&job, Outcome::AlreadyDone);

    let sent = h.fake.mutating_requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].path, directory("/groups/g-other/memberships/acc-1"));
    assert_eq!(sent[1].path, "/users/acc-2/manage/lifecycle/delete");
    let reads: Vec<String> = h
        .fake
        .read_requests()
        .iter()
        .map(|r| r.path.clone())
        .collect();
    assert!(reads.contains(&directory("/groups/g-other")), "{reads:#?}");
    // The repeated delete answered 409, read back as for_deletion.
    assert!(reads.contains(&directory("/users/acc-2")), "{reads:#?}");
    h.stop().await;
}

both_stores!(
    not_found_from_the_mutation_is_already_done_on,
    not_found_from_the_mutation_is_already_done
);

// ---------------------------------------------------------------------------------------
// Lookups and guards: none of these may send a mutating request
// ---------------------------------------------------------------------------------------

async fn no_account_is_not_found(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "customer"
  when = { "/kind" = "customer" }
  email = "/email"
  account_id = "/account_id"
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "managed"
  when = { "/kind" = "managed" }
  email = "/email"
  account_id = "/account_id"
  actions = ["delete_account"]
"#
        .into(),
        ..Settings::default()
    };
    // A near miss that the fuzzy site search and the desk's customer query return, but that
    // is not the same email.
    let accounts = vec![FakeAccount {
        service_desks: ["10".to_owned()].into(),
        ..FakeAccount::customer("qm:1", "ghost@example.com.au")
    }];
    let h = Harness::start(&db, settings, accounts).await;
    for kind in ["customer", "managed"] {
        let job = h
            .run_one(json!({ "kind": kind, "email": "ghost@example.com", "account_id": "qm:1" }))
            .await;
        assert_succeeded(&job, Outcome::NotFound);
    }
    let paths: Vec<String> = h.fake.requests().iter().map(|r| r.path.clone()).collect();
    assert_eq!(
        paths,
        [
            "/rest/api/3/user/search",
            // Before believing "nobody", the permission behind the search is confirmed,
            "/rest/api/3/mypermissions",
            // and the service desks' customer lists, which hold revoked customers, are read.
            "/rest/servicedeskapi/servicedesk",
            "/rest/servicedeskapi/servicedesk/10/customer",
            &directory("/users/search"),
        ],
        "one lookup each, and for the customer the permission check and the desks"
    );
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(no_account_is_not_found_on, no_account_is_not_found);

async fn two_accounts_with_one_email_are_ambiguous(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "customer"
  when = { "/kind" = "customer" }
  email = "/email"
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "managed"
  when = { "/kind" = "managed" }
  email = "/email"
  actions = ["suspend_access"]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::customer("qm:a", "twin@example.com"),
        FakeAccount::customer("qm:b", "TWIN@example.com"),
        FakeAccount::managed("acc-a", "double@example.com"),
        FakeAccount::managed("acc-b", "Double@Example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h
        .run_one(json!({ "kind": "customer", "email": "twin@example.com" }))
        .await;
    assert_failed(&job, "ambiguous_account");
    let job = h
        .run_one(json!({ "kind": "managed", "email": "double@example.com" }))
        .await;
    assert_failed(&job, "ambiguous_account");
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(
    two_accounts_with_one_email_are_ambiguous_on,
    two_accounts_with_one_email_are_ambiguous
);

async fn a_different_account_id_is_a_mismatch(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-real", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    let job = h
        .run_one(person_with_id("leaver@example.com", "acc-someone-else"))
        .await;
    assert_failed(&job, "account_mismatch");
    assert!(event_log(&job).contains("acc-real"), "{}", event_log(&job));
    assert_no_mutation(&h.fake);
    assert_eq!(
        h.fake.account("acc-real").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    a_different_account_id_is_a_mismatch_on,
    a_different_account_id_is_a_mismatch
);

async fn actions_only_touch_their_account_type(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "customer"
  when = { "/kind" = "customer" }
  email = "/email"
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "managed"
  when = { "/kind" = "managed" }
  email = "/email"
  actions = ["delete_account"]
"#
        .into(),
        ..Settings::default()
    };
    // A customer listed in the directory, so the managed lookup finds it.
    let listed_customer = FakeAccount {
        directories: [(DIRECTORY_ID.to_owned(), Membership::Active)].into(),
        ..FakeAccount::customer("qm:listed", "customer@example.com")
    };
    let accounts = vec![
        FakeAccount::managed("acc-staff", "staff@example.com"),
        listed_customer,
    ];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h
        .run_one(json!({ "kind": "customer", "email": "staff@example.com" }))
        .await;
    assert_failed(&job, "account_type_mismatch");
    let job = h
        .run_one(json!({ "kind": "managed", "email": "customer@example.com" }))
        .await;
    assert_failed(&job, "account_type_mismatch");
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(
    actions_only_touch_their_account_type_on,
    actions_only_touch_their_account_type
);

/// The job's email is not protected; the account id the lookup returns is.
async fn a_protected_account_id_is_never_touched(db: TestDb) {
    let settings = Settings {
        safety: r#"protected_account_ids = ["acc-ceo"]"#,
        ..Settings::default()
    };
    let accounts = vec![FakeAccount::managed("acc-ceo", "ceo@example.com")];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h.run_one(person("CEO@example.com")).await;
    assert_failed(&job, "protected_account");
    assert_no_mutation(&h.fake);
    assert_eq!(
        h.fake.account("acc-ceo").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    a_protected_account_id_is_never_touched_on,
    a_protected_account_id_is_never_touched
);

/// A job enqueued before its person's domain became protected: the worker checks again
/// against what the lookup returned (the account's email, in its own case).
async fn protection_added_after_enqueue_still_holds(db: TestDb) {
    install_crypto_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_managed("acc-admin", "Root@Sub.Example-Admins.com");
    let unprotected = Settings::default();
    let api = TestApp::spawn_with_role(&db, &unprotected.toml(&fake), Role::Api).await;
    let ids = job_ids(
        &api.deliver(SOURCE, &person("root@sub.example-admins.com"))
            .await,
    );
    assert_eq!(ids.len(), 1);

    let protected = Settings {
        safety: r#"protected_domains = ["example-admins.com"]"#,
        ..Settings::default()
    };
    let worker = TestApp::spawn_with_role(&db, &protected.toml(&fake), Role::Worker).await;
    let job = worker.wait_final(&ids[0], WAIT).await;
    assert_failed(&job, "protected_account");
    let lookups = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/users/search"))
        .count();
    assert_eq!(lookups, 1, "only the lookup, besides the checks at start");
    assert_no_mutation(&fake);
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    protection_added_after_enqueue_still_holds_on,
    protection_added_after_enqueue_still_holds
);

async fn dry_run_records_the_request_it_would_send(db: TestDb) {
    let settings = Settings {
        dry_run: true,
        rules: r#"
  [[sources.rules]]
  name = "managed"
  when = { "/kind" = "managed" }
  email = "/email"
  actions = ["suspend_access"]

  [[sources.rules]]
  name = "desk"
  when = { "/kind" = "desk" }
  email = "/email"
  actions = [{ action = "remove_from_service_desk", service_desk_id = "10" }]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::managed("acc-1", "leaver@example.com"),
        FakeAccount::customer("qm:1", "customer@example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;

    let job = h
        .run_one(json!({ "kind": "managed", "email": "leaver@example.com" }))
        .await;
    assert_succeeded(&job, Outcome::DryRun);
    let url = format!("{}{}", h.fake.url, directory("/users/acc-1/suspend"));
    let log = event_log(&job);
    assert!(log.contains(&format!("POST {url}")), "{log}");

    let job = h
        .run_one(json!({ "kind": "desk", "email": "customer@example.com" }))
        .await;
    assert_succeeded(&job, Outcome::DryRun);
    let url = format!("{}/rest/servicedeskapi/servicedesk/10/customer", h.fake.url);
    let log = event_log(&job);
    assert!(log.contains(&format!("DELETE {url}")), "{log}");
    assert!(log.contains("qm:1"), "the body is recorded too: {log}");

    assert_eq!(h.fake.requests().len(), 2, "only the lookups");
    assert_no_mutation(&h.fake);
    assert_eq!(
        h.fake.account("acc-1").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    dry_run_records_the_request_it_would_send_on,
    dry_run_records_the_request_it_would_send
);

// ---------------------------------------------------------------------------------------
// Rate limits, server errors, credentials
// ---------------------------------------------------------------------------------------

/// The first mutating request gets `fault`; returns the finished job and the time from the
/// faulted request to the next request of the job (its retry).
async fn snooze_then_done(db: TestDb, fault: FaultKind) -> (JobWithEvents, Duration) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    h.fake.inject(Fault::once(Matcher::Mutating, fault));
    let job = h.run_one(person("leaver@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.attempts, 1, "a snooze is not an attempt: {job:#?}");
    let snoozes = back_to_pending(&job);
    assert_eq!(snoozes.len(), 1, "{}", event_log(&job));

    let requests = h.fake.requests();
    // The retry acts on the account recorded before the first call: no second lookup.
    assert_eq!(requests.len(), 3, "lookup, limited, done: {requests:#?}");
    let limited = &requests[1];
    assert!(!limited.is_lookup());
    let retry = &requests[2];
    assert!(!retry.is_lookup());
    let gap = retry.received_at - limited.received_at;
    assert_eq!(h.fake.mutating_requests().len(), 2);
    assert_eq!(
        h.fake.account("acc-1").unwrap().status(),
        FakeStatus::Suspended
    );
    h.stop().await;
    (job, gap)
}

async fn retry_after_on_429_is_honoured(db: TestDb) {
    let fault = FaultKind::Status429 {
        retry_after: Some(2),
        reset_after: None,
    };
    let (job, gap) = snooze_then_done(db, fault).await;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(
        back_to_pending(&job)[0].contains("429"),
        "{}",
        event_log(&job)
    );
}

both_stores!(
    retry_after_on_429_is_honoured_on,
    retry_after_on_429_is_honoured
);

async fn retry_after_on_503_is_honoured(db: TestDb) {
    let fault = FaultKind::Status503 {
        retry_after: Some(2),
    };
    let (job, gap) = snooze_then_done(db, fault).await;
    assert!(gap >= Duration::from_secs(2), "retried after {gap:?}");
    assert!(
        back_to_pending(&job)[0].contains("503"),
        "{}",
        event_log(&job)
    );
}

both_stores!(
    retry_after_on_503_is_honoured_on,
    retry_after_on_503_is_honoured
);

/// Without `Retry-After`, `X-RateLimit-Reset` (RFC 3339 in whole seconds, so 1–2 s away)
/// sets the wait.
async fn rate_limit_reset_is_honoured(db: TestDb) {
    let fault = FaultKind::Status429ResetSeconds { reset_after: 2 };
    let (_, gap) = snooze_then_done(db, fault).await;
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
}

both_stores!(
    rate_limit_reset_is_honoured_on,
    rate_limit_reset_is_honoured
);

/// Neither header: back off (at most `backoff_base_seconds` after the first try).
async fn rate_limit_without_a_wait_backs_off(db: TestDb) {
    let fault = FaultKind::Status429 {
        retry_after: None,
        reset_after: None,
    };
    let (job, gap) = snooze_then_done(db, fault).await;
    assert!(gap < Duration::from_secs(2), "retried after {gap:?}");
    assert!(
        back_to_pending(&job)[0].contains("429"),
        "{}",
        event_log(&job)
    );
}

both_stores!(
    rate_limit_without_a_wait_backs_off_on,
    rate_limit_without_a_wait_backs_off
);

async fn server_errors_are_retried(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    h.fake.inject(Fault {
        matcher: Matcher::Mutating,
        times: 2,
        kind: FaultKind::Status500,
    });
    let job = h.run_one(person("leaver@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.attempts, 3, "{job:#?}");
    let retries = back_to_pending(&job);
    assert_eq!(retries.len(), 2, "{}", event_log(&job));
    assert!(retries.iter().all(|d| d.contains("500")), "{retries:?}");
    assert_eq!(h.fake.mutating_requests().len(), 3);
    h.stop().await;
}

both_stores!(server_errors_are_retried_on, server_errors_are_retried);

async fn server_errors_exhaust_the_attempts(db: TestDb) {
    let settings = Settings {
        max_attempts: 2,
        ..Settings::default()
    };
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, settings, accounts).await;
    h.fake.inject(Fault {
        matcher: Matcher::Mutating,
        times: 1000,
        kind: FaultKind::Status500,
    });
    let job = h.run_one(person("leaver@example.com")).await;
    assert_failed(&job, "max_attempts");
    assert_eq!(job.job.attempts, 2);
    let last = job.events.last().expect("events");
    assert_eq!(last.to, JobState::Failed);
    assert!(last.detail.contains("HTTP 500"), "{}", event_log(&job));
    assert_eq!(h.fake.mutating_requests().len(), 2);
    assert_eq!(
        h.fake.account("acc-1").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    server_errors_exhaust_the_attempts_on,
    server_errors_exhaust_the_attempts
);

/// A 401 fails nothing: the worker pauses (`auth`), jobs wait untouched, resume finishes them.
async fn unauthorized_pauses_the_worker(db: TestDb) {
    let settings = Settings {
        concurrency: 1,
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::managed("acc-1", "one@example.com"),
        FakeAccount::managed("acc-2", "two@example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    h.fake
        .inject(Fault::once(Matcher::Mutating, FaultKind::Status401));
    let mut ids = h.enqueue(person("one@example.com")).await;
    ids.extend(h.enqueue(person("two@example.com")).await);

    eventually("the worker pauses for auth", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Auth)
    })
    .await;
    eventually("the job is back to pending", WAIT, async || {
        h.states(&ids).await == [JobState::Pending, JobState::Pending]
    })
    .await;
    // Paused means paused: nothing is claimed or sent meanwhile.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(h.states(&ids).await, [JobState::Pending, JobState::Pending]);
    assert_eq!(h.fake.mutating_requests().len(), 1);
    for id in &ids {
        let job = h.app.job(id).await;
        assert_eq!(job.job.attempts, 0, "no attempt is used: {job:#?}");
        assert_eq!(job.job.last_error, None, "{job:#?}");
    }

    h.app.store.resume().await.expect("resume");
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
        assert_eq!(job.job.attempts, 1);
    }
    assert_eq!(h.fake.mutating_requests().len(), 3);
    assert_eq!(h.worker_paused().await, None);
    h.stop().await;
}

both_stores!(
    unauthorized_pauses_the_worker_on,
    unauthorized_pauses_the_worker
);

/// A 403 is about this account: the job fails with the body, the worker goes on.
async fn forbidden_fails_the_job_with_the_body(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    let body = r#"{"key":"forbidden.targetUnverified"}"#;
    h.fake.inject(Fault::once(
        Matcher::Mutating,
        FaultKind::Status403 { body: body.into() },
    ));
    let job = h.run_one(person("leaver@example.com")).await;
    assert_failed(&job, "api_error:403");
    assert!(
        event_log(&job).contains("forbidden.targetUnverified"),
        "{}",
        event_log(&job)
    );
    assert_eq!(h.fake.mutating_requests().len(), 1);
    assert_eq!(h.worker_paused().await, None);
    h.stop().await;
}

both_stores!(
    forbidden_fails_the_job_with_the_body_on,
    forbidden_fails_the_job_with_the_body
);

// ---------------------------------------------------------------------------------------
// Blast radius, chains, pacing, schedule
// ---------------------------------------------------------------------------------------

/// `limit` mutating calls, then the pause, however the concurrent jobs interleave; the rest
/// wait, and a resume (which restarts the count) lets them through.
async fn blast_radius_case(db: TestDb, jobs: usize, limit: usize, concurrency: usize) {
    let settings = Settings {
        concurrency,
        max_actions_per_hour: limit as u64,
        rules: r#"
  [[sources.rules]]
  name = "everyone"
  for_each = "/people"
  email = "/email"
  actions = ["suspend_access"]
"#
        .into(),
        ..Settings::default()
    };
    let emails: Vec<String> = (0..jobs)
        .map(|i| format!("leaver{i}@example.com"))
        .collect();
    let accounts = emails
        .iter()
        .enumerate()
        .map(|(i, email)| FakeAccount::managed(&format!("acc-{i}"), email))
        .collect();
    let h = Harness::start(&db, settings, accounts).await;
    let people: Vec<Value> = emails.iter().map(|e| json!({ "email": e })).collect();
    let ids = h.enqueue(json!({ "people": people })).await;
    assert_eq!(ids.len(), jobs);

    let count = async |state: JobState| {
        h.states(&ids)
            .await
            .into_iter()
            .filter(|s| *s == state)
            .count()
    };
    eventually("the worker pauses or every job is done", WAIT, async || {
        let paused = h.worker_paused().await.is_some();
        let running = count(JobState::Running).await;
        (paused && running == 0) || count(JobState::Succeeded).await == ids.len()
    })
    .await;
    assert_eq!(h.fake.mutating_requests().len(), limit);
    assert_eq!(h.worker_paused().await, Some(PauseReason::BlastRadius));
    assert_eq!(count(JobState::Succeeded).await, limit);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(count(JobState::Pending).await, jobs - limit);
    assert_eq!(h.fake.mutating_requests().len(), limit);

    h.app.store.resume().await.expect("resume");
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    assert_eq!(h.fake.mutating_requests().len(), jobs);
    h.stop().await;
}

async fn blast_radius_pauses_the_worker(db: TestDb) {
    blast_radius_case(db, 4, 2, 4).await;
}

/// Many tasks reserving at once, finishing while others count: still exactly the limit.
async fn blast_radius_holds_under_concurrency(db: TestDb) {
    blast_radius_case(db, 12, 6, 16).await;
}

both_stores!(
    blast_radius_holds_under_concurrency_on,
    blast_radius_holds_under_concurrency
);

both_stores!(
    blast_radius_pauses_the_worker_on,
    blast_radius_pauses_the_worker
);

const SUSPEND_THEN_DELETE: &str =
    r#"["suspend_access", { action = "delete_account", after = "0s" }]"#;

async fn a_chain_runs_in_order(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::with_rule(SUSPEND_THEN_DELETE), accounts).await;
    // A slow suspend leaves the delete plenty of time to jump the queue, if it could.
    let slow = Duration::from_millis(600);
    h.fake.inject(Fault::once(
        Matcher::PathContains("/suspend".into()),
        FaultKind::Latency(slow),
    ));
    let ids = h.enqueue(person("leaver@example.com")).await;
    assert_eq!(ids.len(), 2);
    let jobs = h.wait_all_final(&ids).await;
    let (suspend, delete) = (&jobs[0], &jobs[1]);
    assert_succeeded(suspend, Outcome::Done);
    assert_succeeded(delete, Outcome::Done);
    assert_eq!(delete.job.depends_on, Some(suspend.job.id));

    let sent = h.fake.mutating_requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[0].path, directory("/users/acc-1/suspend"));
    assert_eq!(sent[1].path, "/users/acc-1/manage/lifecycle/delete");
    assert!(sent[1].received_at >= sent[0].received_at + slow);
    let suspended_at = suspend.events.last().unwrap().at;
    let delete_claimed_at = delete
        .events
        .iter()
        .find(|e| e.to == JobState::Running)
        .expect("the delete was claimed")
        .at;
    assert!(delete_claimed_at >= suspended_at, "{jobs:#?}");
    assert_eq!(
        h.fake.account("acc-1").unwrap().status(),
        FakeStatus::PendingDelete
    );
    h.stop().await;
}

both_stores!(a_chain_runs_in_order_on, a_chain_runs_in_order);

async fn a_failed_step_cancels_the_rest_of_the_chain(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::with_rule(SUSPEND_THEN_DELETE), accounts).await;
    h.fake.inject(Fault::once(
        Matcher::PathContains("/suspend".into()),
        FaultKind::Status403 {
            body: r#"{"key":"forbidden.action"}"#.into(),
        },
    ));
    let ids = h.enqueue(person("leaver@example.com")).await;
    assert_eq!(ids.len(), 2);
    let jobs = h.wait_all_final(&ids).await;
    assert_failed(&jobs[0], "api_error:403");
    assert_eq!(jobs[1].job.state, JobState::Cancelled, "{:#?}", jobs[1]);
    assert_eq!(
        jobs[1].job.last_error.as_deref(),
        Some("previous_step_failed")
    );
    // Give a wrongly released delete the time to be sent.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let sent = h.fake.mutating_requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert!(
        h.fake
            .requests()
            .iter()
            .all(|r| !r.path.contains("lifecycle")),
        "the delete was never sent"
    );
    h.stop().await;
}

both_stores!(
    a_failed_step_cancels_the_rest_of_the_chain_on,
    a_failed_step_cancels_the_rest_of_the_chain
);

/// 30 jobs (60 admin requests) at 10 requests/s: a burst of 10, then never faster than 10/s.
async fn requests_stay_within_the_bucket(db: TestDb) {
    const RATE: f64 = 10.0;
    const BURST: f64 = 10.0;
    let settings = Settings {
        concurrency: 16,
        requests_per_second: RATE,
        rules: r#"
  [[sources.rules]]
  name = "everyone"
  for_each = "/people"
  email = "/email"
  actions = ["suspend_access"]
"#
        .into(),
        ..Settings::default()
    };
    let emails: Vec<String> = (0..30).map(|i| format!("p{i}@example.com")).collect();
    let accounts = emails
        .iter()
        .enumerate()
        .map(|(i, email)| FakeAccount::managed(&format!("acc-{i}"), email))
        .collect();
    let h = Harness::start(&db, settings, accounts).await;
    let people: Vec<Value> = emails.iter().map(|e| json!({ "email": e })).collect();
    let ids = h.enqueue(json!({ "people": people })).await;
    assert_eq!(ids.len(), 30);
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }

    let times: Vec<Instant> = h.fake.requests().iter().map(|r| r.received_at).collect();
    assert_eq!(times.len(), 60);
    // Arrival order can differ from send order by a hair; the slack covers that.
    let slack = 0.05;
    for i in 0..times.len() {
        for j in i..times.len() {
            let span = times[j].saturating_duration_since(times[i]).as_secs_f64();
            let sent = (j - i + 1) as f64;
            assert!(
                sent <= BURST + RATE * (span + slack),
                "{sent} requests within {span:.3}s exceed the bucket"
            );
        }
    }
    let total = times[59].saturating_duration_since(times[0]);
    assert!(
        total <= Duration::from_secs(7),
        "60 requests took {total:?}: far slower than 10/s"
    );
    h.stop().await;
}

both_stores!(
    requests_stay_within_the_bucket_on,
    requests_stay_within_the_bucket
);

/// A job due 1.5 s from now starts no earlier than its `run_at` and within a second of it.
async fn a_scheduled_job_starts_on_time(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "later"
  email = "/email"
  at = "/at"
  actions = ["suspend_access"]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, settings, accounts).await;
    let (wall, clock) = (Utc::now(), Instant::now());
    let at = wall + chrono::Duration::milliseconds(1500);
    let ids = h
        .enqueue(json!({ "email": "leaver@example.com", "at": at.timestamp_millis() }))
        .await;
    assert_eq!(ids.len(), 1);
    let job = h.app.wait_final(&ids[0], WAIT).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.run_at.timestamp_millis(), at.timestamp_millis());

    let first = h.fake.requests()[0].received_at;
    let started = wall + chrono::Duration::from_std(first - clock).unwrap();
    let late = started - job.job.run_at;
    assert!(
        late >= chrono::Duration::milliseconds(-20),
        "started {late} before its run_at"
    );
    assert!(
        late <= chrono::Duration::seconds(1),
        "started {late} after its run_at"
    );
    h.stop().await;
}

both_stores!(
    a_scheduled_job_starts_on_time_on,
    a_scheduled_job_starts_on_time
);

/// `concurrency` bounds the jobs calling Atlassian at once: with every mutating call held
/// open, exactly `concurrency` jobs have started, and the rest start once those finish (a
/// success frees its slot before the result is written, never before the call returned).
async fn concurrency_bounds_jobs_in_flight(db: TestDb) {
    let settings = Settings {
        concurrency: 3,
        ..Settings::default()
    };
    let accounts = (0..7)
        .map(|i| FakeAccount::managed(&format!("acc-{i}"), &format!("p{i}@example.com")))
        .collect();
    let h = Harness::start(&db, settings, accounts).await;
    h.fake.inject(Fault {
        matcher: Matcher::Mutating,
        times: usize::MAX,
        kind: FaultKind::Hang,
    });
    let mut ids = Vec::new();
    for i in 0..7 {
        ids.extend(
            h.enqueue(json!({ "email": format!("p{i}@example.com") }))
                .await,
        );
    }
    let deadline = Instant::now() + WAIT;
    while h.fake.mutating_requests().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "three jobs should reach their call"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Time for a fourth job to start, if the worker would start one.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(h.fake.mutating_requests().len(), 3);
    assert_eq!(
        h.fake.requests().len(),
        6,
        "three lookups, three held calls"
    );

    // Released in rounds: each round lets the held calls through and the next ones start.
    while h.fake.mutating_requests().len() < 7 {
        assert!(Instant::now() < deadline, "every job should reach its call");
        h.fake.release_held();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.fake.release_held();
    for id in &ids {
        let job = h.app.wait_final(id, WAIT).await;
        assert_succeeded(&job, Outcome::Done);
    }
    h.stop().await;
}
both_stores!(
    concurrency_bounds_jobs_in_flight_on,
    concurrency_bounds_jobs_in_flight
);

// ---------------------------------------------------------------------------------------
// Production fidelity: one account per chain, no silent not_found, answers as documented
// ---------------------------------------------------------------------------------------

/// Search requests of the site or the directory.
fn searches(fake: &FakeAtlassian) -> Vec<RecordedRequest> {
    fake.requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/user/search") || r.path.ends_with("/users/search"))
        .collect()
}

/// The quick start's chain: revoke now, delete later. The search stops returning the
/// customer once revoked, so the delete must act on the account the revoke recorded.
async fn revoke_then_delete_deletes_the_recorded_customer(db: TestDb) {
    let settings = Settings::with_rule(
        r#"["revoke_portal_access", { action = "delete_portal_customer", after = "1s" }]"#,
    );
    let accounts = vec![FakeAccount::customer("qm:leaver", "leaver@example.com")];
    let h = Harness::start(&db, settings, accounts).await;
    let ids = h.enqueue(person("leaver@example.com")).await;
    assert_eq!(ids.len(), 2);
    let revoke = h.app.wait_final(&ids[0], WAIT).await;
    assert_succeeded(&revoke, Outcome::Done);
    assert_eq!(revoke.job.account_id.as_deref(), Some("qm:leaver"));

    // Revoked, the customer is "(Deactivated)": the site search no longer returns it
    // (`a_revoked_customer_is_not_found_by_email`).
    assert!(h.fake.account("qm:leaver").unwrap().portal_access_revoked);

    let delete = h.app.wait_final(&ids[1], WAIT).await;
    assert_succeeded(&delete, Outcome::Done);
    assert_eq!(delete.job.account_id.as_deref(), Some("qm:leaver"));
    assert_eq!(
        h.fake.account("qm:leaver").unwrap().status(),
        FakeStatus::Deleted
    );
    let sent = h.fake.mutating_requests();
    assert_eq!(sent.len(), 2, "{sent:#?}");
    assert_eq!(sent[1].method, "DELETE");
    assert_eq!(sent[1].query.as_deref(), Some("accountId=qm%3Aleaver"));
    assert_eq!(searches(&h.fake).len(), 1, "one lookup for the whole chain");
    h.stop().await;
}

both_stores!(
    revoke_then_delete_deletes_the_recorded_customer_on,
    revoke_then_delete_deletes_the_recorded_customer
);

/// Without the recorded account, the search after a revoke finds nobody: the fake must not
/// be kinder than that, or the test above proves nothing. (On no service desk, the customer
/// is not on any desk's customer list either: `a_customer_revoked_by_hand_is_found_on_a_desk`.)
async fn a_revoked_customer_is_not_found_by_email(db: TestDb) {
    let settings = Settings::with_rule(r#"["delete_portal_customer"]"#);
    let accounts = vec![FakeAccount {
        portal_access_revoked: true,
        ..FakeAccount::customer("qm:gone", "revoked@example.com")
    }];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h.run_one(person("revoked@example.com")).await;
    assert_succeeded(&job, Outcome::NotFound);
    assert_eq!(job.job.account_id, None);
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(
    a_revoked_customer_is_not_found_by_email_on,
    a_revoked_customer_is_not_found_by_email
);

/// A customer revoked earlier by hand is absent from the active-user search, but still on
/// its service desk's customer list: found there, read by id for its type, and deleted.
async fn a_customer_revoked_by_hand_is_found_on_a_desk(db: TestDb) {
    let settings = Settings::with_rule(r#"["delete_portal_customer"]"#);
    let accounts = vec![
        FakeAccount {
            portal_access_revoked: true,
            service_desks: ["10".to_owned(), "20".to_owned()].into(),
            ..FakeAccount::customer("qm:revoked", "Revoked@Example.com")
        },
        // On the desk too, and matched by the desk's query, but another email.
        FakeAccount {
            service_desks: ["20".to_owned()].into(),
            ..FakeAccount::customer("qm:near", "revoked@example.com.au")
        },
    ];
    let h = Harness::start(&db, settings, accounts).await;
    h.fake.add_service_desk("30");
    let job = h.run_one(person("revoked@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.account_id.as_deref(), Some("qm:revoked"));
    assert_eq!(job.job.account_type.as_deref(), Some("customer"));
    assert_eq!(
        h.fake.account("qm:revoked").unwrap().status(),
        FakeStatus::Deleted
    );
    assert_eq!(
        h.fake.account("qm:near").unwrap().status(),
        FakeStatus::Active
    );

    let requests = h.fake.requests();
    let desk_queries: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.path.ends_with("/customer") && r.method == "GET")
        .collect();
    assert_eq!(desk_queries.len(), 3, "one query per desk: {requests:#?}");
    for query in &desk_queries {
        assert_eq!(query.header("x-experimentalapi"), Some("opt-in"));
        assert!(
            query
                .query
                .as_deref()
                .is_some_and(|q| q.starts_with("query=revoked%40example.com&")),
            "{query:#?}"
        );
    }
    // The list has no accountType: the account's own record was read for the type guard.
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == "/rest/api/3/user"
            && r.query.as_deref() == Some("accountId=qm%3Arevoked")),
        "{requests:#?}"
    );
    let sent = h.fake.mutating_requests();
    assert_eq!(sent.len(), 1, "{sent:#?}");
    assert_eq!(sent[0].method, "DELETE");
    assert_eq!(sent[0].query.as_deref(), Some("accountId=qm%3Arevoked"));
    h.stop().await;
}

both_stores!(
    a_customer_revoked_by_hand_is_found_on_a_desk_on,
    a_customer_revoked_by_hand_is_found_on_a_desk
);

/// Two accounts with the job's email on the desks' customer lists: ambiguous, as from the
/// search. Without a JSM agent licence the lists cannot be read (403, empty body): the worker
/// pauses `permission` rather than record `not_found`.
async fn desk_customer_lookups_are_ambiguous_or_pause_never_guess(db: TestDb) {
    let settings = Settings {
        concurrency: 1,
        ..Settings::with_rule(r#"["revoke_portal_access"]"#)
    };
    let revoked = |id: &str, desk: &str| FakeAccount {
        portal_access_revoked: true,
        service_desks: [desk.to_owned()].into(),
        ..FakeAccount::customer(id, "twice@example.com")
    };
    let accounts = vec![revoked("qm:a", "10"), revoked("qm:b", "20")];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h.run_one(person("twice@example.com")).await;
    assert_failed(&job, "ambiguous_account");
    assert!(
        event_log(&job).contains("qm:a") && event_log(&job).contains("qm:b"),
        "{}",
        event_log(&job)
    );

    h.fake.set_jsm_agent_licence(false);
    let ids = h.enqueue(person("nobody@example.com")).await;
    eventually("the worker pauses for the licence", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Permission)
    })
    .await;
    eventually("the job is back to pending", WAIT, async || {
        h.states(&ids).await == [JobState::Pending]
    })
    .await;
    let job = h.app.job(&ids[0]).await;
    assert_eq!(job.job.outcome, None, "{job:#?}");
    assert!(
        event_log(&job).contains("Jira Service Management agent licence"),
        "{}",
        event_log(&job)
    );
    h.fake.set_jsm_agent_licence(true);
    h.app.store.resume().await.expect("resume");
    assert_succeeded(&h.app.wait_final(&ids[0], WAIT).await, Outcome::NotFound);
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(
    desk_customer_lookups_are_ambiguous_or_pause_never_guess_on,
    desk_customer_lookups_are_ambiguous_or_pause_never_guess
);

/// A 3-step chain costs one lookup; every step records the same account.
async fn a_chain_costs_one_lookup(db: TestDb) {
    let settings = Settings::with_rule(
        r#"["suspend_access", { action = "remove_from_group", group_id = "g-1" }, "delete_account"]"#,
    );
    let accounts = vec![FakeAccount {
        groups: ["g-1".to_owned()].into(),
        ..FakeAccount::managed("acc-1", "leaver@example.com")
    }];
    let h = Harness::start(&db, settings, accounts).await;
    let ids = h.enqueue(person("leaver@example.com")).await;
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
        assert_eq!(job.job.account_id.as_deref(), Some("acc-1"), "{job:#?}");
    }
    assert_eq!(searches(&h.fake).len(), 1);
    assert_eq!(
        h.fake.requests().len(),
        6,
        "one lookup, three calls, and the two counting reads before the deletion"
    );
    h.stop().await;
}

both_stores!(a_chain_costs_one_lookup_on, a_chain_costs_one_lookup);

/// A first step that found nobody ends the chain's later steps `not_found`, without a call.
async fn a_chain_without_an_account_ends_not_found(db: TestDb) {
    let settings = Settings::with_rule(r#"["suspend_access", "delete_account"]"#);
    let h = Harness::start(&db, settings, Vec::new()).await;
    let ids = h.enqueue(person("nobody@example.com")).await;
    let jobs = h.wait_all_final(&ids).await;
    assert_succeeded(&jobs[0], Outcome::NotFound);
    assert_succeeded(&jobs[1], Outcome::NotFound);
    assert!(
        event_log(&jobs[1]).contains("found no account"),
        "{}",
        event_log(&jobs[1])
    );
    assert_eq!(h.fake.requests().len(), 1, "only the first step's lookup");
    h.stop().await;
}

both_stores!(
    a_chain_without_an_account_ends_not_found_on,
    a_chain_without_an_account_ends_not_found
);

/// The account is recorded before the call: a job whose call was held open already shows
/// it, and its retry after a rate limit uses it without searching again.
async fn the_account_is_recorded_before_the_call(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-9", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    h.fake
        .inject(Fault::once(Matcher::Mutating, FaultKind::Hang));
    let ids = h.enqueue(person("leaver@example.com")).await;
    eventually("the call reaches Atlassian", WAIT, async || {
        !h.fake.mutating_requests().is_empty()
    })
    .await;
    let running = h.app.job(&ids[0]).await;
    assert_eq!(running.job.state, JobState::Running);
    assert_eq!(running.job.account_id.as_deref(), Some("acc-9"));
    h.fake.release_held();
    assert_succeeded(&h.app.wait_final(&ids[0], WAIT).await, Outcome::Done);
    h.stop().await;
}

both_stores!(
    the_account_is_recorded_before_the_call_on,
    the_account_is_recorded_before_the_call
);

/// A site token without "Browse users and groups" sees `200 []` for every search: the worker
/// pauses (reason `permission`) instead of recording `not_found`, and a resume continues.
async fn a_vanished_permission_pauses_without_a_not_found(db: TestDb) {
    let settings = Settings {
        concurrency: 1,
        ..Settings::with_rule(r#"["delete_portal_customer"]"#)
    };
    let accounts = vec![
        FakeAccount::customer("qm:1", "one@example.com"),
        FakeAccount::customer("qm:2", "two@example.com"),
        FakeAccount::customer("qm:3", "three@example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    let first = h.run_one(person("one@example.com")).await;
    assert_succeeded(&first, Outcome::Done);

    // Mid-run, an admin takes the permission away.
    h.fake.set_browse_users(false);
    let mut ids = h.enqueue(person("two@example.com")).await;
    ids.extend(h.enqueue(person("three@example.com")).await);
    eventually("the worker pauses for the permission", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Permission)
    })
    .await;
    eventually("the job is back to pending", WAIT, async || {
        h.states(&ids).await == [JobState::Pending, JobState::Pending]
    })
    .await;
    for id in &ids {
        let job = h.app.job(id).await;
        assert_eq!(job.job.attempts, 0, "no attempt is used: {job:#?}");
        assert_eq!(job.job.outcome, None, "{job:#?}");
    }
    let worker = h
        .app
        .http
        .get(format!("{}/api/v1/worker", h.app.base_url))
        .bearer_auth(crate::support::app::ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(worker, json!({ "paused": true, "reason": "permission" }));
    let metrics = h
        .app
        .http
        .get(format!("{}/metrics", h.app.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"offboard_worker_paused{reason="permission"} 1"#),
        "{metrics}"
    );

    h.fake.set_browse_users(true);
    h.app.store.resume().await.expect("resume");
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let counts = h.app.store.count_by_state().await.unwrap();
    assert_eq!(counts, vec![(JobState::Succeeded, 3)]);
    h.stop().await;
}

both_stores!(
    a_vanished_permission_pauses_without_a_not_found_on,
    a_vanished_permission_pauses_without_a_not_found
);

/// The directory search answering 403 is about the admin key, not the person: pause `auth`.
async fn a_forbidden_directory_search_pauses_auth(db: TestDb) {
    let accounts = vec![FakeAccount::managed("acc-1", "leaver@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    h.fake.inject(Fault::once(
        Matcher::PathContains("/users/search".into()),
        FaultKind::Status403 {
            body: r#"{"key":"forbidden"}"#.into(),
        },
    ));
    let ids = h.enqueue(person("leaver@example.com")).await;
    eventually("the worker pauses for auth", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Auth)
    })
    .await;
    eventually("the job is back to pending", WAIT, async || {
        h.states(&ids).await == [JobState::Pending]
    })
    .await;
    h.app.store.resume().await.expect("resume");
    assert_succeeded(&h.app.wait_final(&ids[0], WAIT).await, Outcome::Done);
    h.stop().await;
}

both_stores!(
    a_forbidden_directory_search_pauses_auth_on,
    a_forbidden_directory_search_pauses_auth
);

/// A 409 is read back: already deactivated is `already_done`; a suspend conflict while the
/// membership is active is not, and fails with the body and the read in its events.
async fn a_conflict_is_read_back(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "deactivate"
  when = { "/kind" = "deactivate" }
  email = "/email"
  actions = ["deactivate_account"]

  [[sources.rules]]
  name = "suspend"
  when = { "/kind" = "suspend" }
  email = "/email"
  actions = ["suspend_access"]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![managed_in_status(
        "acc-off",
        "off@example.com",
        FakeStatus::Deactivated,
    )];
    let h = Harness::start(&db, settings, accounts).await;
    let job = h
        .run_one(json!({ "kind": "deactivate", "email": "off@example.com" }))
        .await;
    assert_succeeded(&job, Outcome::AlreadyDone);
    // Suspend acts on the membership, which a deactivation leaves active: a conflict the
    // membership read does not explain fails with the body and what was read.
    h.fake.inject(Fault::once(
        Matcher::PathContains("/suspend".into()),
        FaultKind::Refuse {
            status: 409,
            body: r#"{"errorMessages":["The account isn't eligible for the requested action."]}"#
                .into(),
        },
    ));
    let job = h
        .run_one(json!({ "kind": "suspend", "email": "off@example.com" }))
        .await;
    assert_failed(&job, "api_error:409");
    let log = event_log(&job);
    assert!(
        log.contains("isn't eligible") && log.contains("membershipStatus active"),
        "{log}"
    );
    h.stop().await;
}

both_stores!(a_conflict_is_read_back_on, a_conflict_is_read_back);

/// A 404 that can mean a wrong id in the rules fails `missing_target`, never `already_done`.
async fn a_missing_configured_target_fails(db: TestDb) {
    let settings = Settings {
        rules: r#"
  [[sources.rules]]
  name = "group"
  when = { "/kind" = "group" }
  email = "/email"
  actions = [{ action = "remove_from_group", group_id = "g-typo" }]

  [[sources.rules]]
  name = "desk"
  when = { "/kind" = "desk" }
  email = "/email"
  actions = [{ action = "remove_from_service_desk", service_desk_id = "99" }]

  [[sources.rules]]
  name = "org"
  when = { "/kind" = "org" }
  email = "/email"
  actions = [{ action = "remove_from_customer_organization", organization_id = "77" }]
"#
        .into(),
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::managed("acc-1", "staff@example.com"),
        FakeAccount::customer("qm:1", "customer@example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    let cases = [
        ("group", "staff@example.com", "missing_target:group:g-typo"),
        (
            "desk",
            "customer@example.com",
            "missing_target:service_desk:99",
        ),
        (
            "org",
            "customer@example.com",
            "missing_target:organization:77",
        ),
    ];
    for (kind, email, error) in cases {
        let job = h.run_one(json!({ "kind": kind, "email": email })).await;
        assert_failed(&job, error);
    }
    h.stop().await;
}

both_stores!(
    a_missing_configured_target_fails_on,
    a_missing_configured_target_fails
);

/// A job whose API family has no credentials (the configuration changed after it was
/// enqueued) fails `atlassian_not_configured` without a request.
async fn a_family_without_credentials_fails_without_a_request(db: TestDb) {
    install_crypto_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "customer@example.com");
    let settings = Settings::with_rule(r#"["delete_portal_customer"]"#);
    let api = TestApp::spawn_with_role(&db, &settings.toml(&fake), Role::Api).await;
    let ids = job_ids(&api.deliver(SOURCE, &person("customer@example.com")).await);
    let admin_only: String = atlassian_toml(&fake)
        .lines()
        .filter(|l| !l.starts_with("site"))
        .map(|l| format!("{l}\n"))
        .collect();
    let toml = format!("dry_run = false\n{admin_only}");
    let worker = TestApp::spawn_with_role(&db, &toml, Role::Worker).await;
    fake.clear_requests();
    let job = worker.wait_final(&ids[0], WAIT).await;
    assert_failed(&job, "atlassian_not_configured");
    assert!(fake.requests().is_empty(), "{:#?}", fake.requests());
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    a_family_without_credentials_fails_without_a_request_on,
    a_family_without_credentials_fails_without_a_request
);

/// Jobs enqueued by hand through `POST /api/v1/jobs`; the ids of the jobs it names.
async fn enqueue_by_hand(app: &TestApp, entries: Value) -> Vec<String> {
    enqueue_request(app, json!({ "jobs": entries })).await
}

/// `POST /api/v1/jobs` with this body; the ids of the jobs it names.
async fn enqueue_request(app: &TestApp, body: Value) -> Vec<String> {
    let response = app
        .admin(reqwest::Method::POST, "/api/v1/jobs")
        .json(&body)
        .send()
        .await
        .expect("POST /api/v1/jobs");
    assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
    job_ids(&response.json().await.expect("JSON"))
}

/// An entry with an `account_id` is acted on by that id: its own record gives its type and
/// email, and the email search (which no longer finds a revoked customer) is never made.
async fn a_manual_entry_acts_on_its_account_id(db: TestDb) {
    let mut revoked = FakeAccount::customer("qm:gone", "gone@example.com");
    revoked.portal_access_revoked = true;
    let settings = Settings::default();
    let h = Harness::start(&db, settings, vec![revoked]).await;
    let entry = json!([{ "action": "delete_portal_customer", "email": "Gone@Example.com",
        "account_id": "qm:gone" }]);
    let ids = enqueue_by_hand(&h.app, entry).await;
    let job = h.app.wait_final(&ids[0], WAIT).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.account_id.as_deref(), Some("qm:gone"));
    assert_eq!(job.job.source.as_deref(), Some("api"));
    assert_eq!(job.events[0].actor, "api");
    let requests = h.fake.requests();
    assert!(
        !requests.iter().any(|r| r.path.ends_with("/user/search")),
        "no email search: {requests:#?}"
    );
    assert!(
        requests.iter().any(|r| r.method == "GET"
            && r.path == "/rest/api/3/user/bulk"
            && r.query
                .as_deref()
                .unwrap_or_default()
                .contains("accountId=qm%3Agone")),
        "the account's own record was read: {requests:#?}"
    );
    assert_eq!(
        h.fake.account("qm:gone").unwrap().status(),
        FakeStatus::Deleted
    );
    h.stop().await;
}

both_stores!(
    a_manual_entry_acts_on_its_account_id_on,
    a_manual_entry_acts_on_its_account_id
);

/// The record read by id still guards: another email is a mismatch, another account type a
/// type mismatch, a protected id is protected, and an unknown id is nobody.
async fn a_manual_account_id_is_guarded_by_its_record(db: TestDb) {
    let settings = Settings {
        safety: r#"protected_account_ids = ["acc-boss"]"#,
        ..Settings::default()
    };
    let accounts = vec![
        FakeAccount::managed("acc-real", "real@example.com"),
        FakeAccount::managed("acc-boss", "boss@example.com"),
        FakeAccount::customer("qm:1", "customer@example.com"),
    ];
    let h = Harness::start(&db, settings, accounts).await;
    let entries = json!([
        { "action": "suspend_access", "email": "other@example.com", "account_id": "acc-real" },
        { "action": "delete_portal_customer", "email": "real@example.com", "account_id": "acc-real" },
        { "action": "suspend_access", "email": "boss@example.com", "account_id": "acc-boss" },
        { "action": "deactivate_account", "email": "nobody@example.com", "account_id": "acc-none" },
    ]);
    let ids = enqueue_by_hand(&h.app, entries).await;
    let jobs = h.wait_all_final(&ids).await;
    assert_failed(&jobs[0], "account_mismatch");
    assert_failed(&jobs[1], "account_type_mismatch");
    assert_failed(&jobs[2], "protected_account");
    assert_succeeded(&jobs[3], Outcome::NotFound);
    assert_no_mutation(&h.fake);
    h.stop().await;
}

both_stores!(
    a_manual_account_id_is_guarded_by_its_record_on,
    a_manual_account_id_is_guarded_by_its_record
);

/// Jobs that read their customer by id while a read is out share the next one: 40 manual
/// jobs with `account_id`, read while the first bulk read is held, make at most two bulk
/// reads (at most five requests: the fake answers pages of 10), one single read (the id the
/// bulk answer leaves out, confirmed unknown before `not_found`) and a delete each that
/// passes its guards: fewer than 1.2 requests a job, where reading each by itself made 2. Each job still gets
/// its own answer: a record with another email is a mismatch, a licensed account a type
/// mismatch, a revoked customer is acted on, an unknown id is nobody.
async fn concurrent_reads_by_id_share_one_bulk_read(db: TestDb) {
    const JOBS: usize = 40;
    let settings = Settings {
        concurrency: JOBS,
        ..Settings::default()
    };
    let mut accounts: Vec<FakeAccount> = (0..JOBS - 4)
        .map(|i| FakeAccount::customer(&format!("qm:{i:03}"), &format!("c{i}@example.com")))
        .collect();
    accounts.push(FakeAccount {
        portal_access_revoked: true,
        ..FakeAccount::customer("qm:revoked", "revoked@example.com")
    });
    accounts.push(FakeAccount::customer("qm:other", "other@example.com"));
    accounts.push(FakeAccount::managed("557058:agent", "agent@example.com"));
    let h = Harness::start(&db, settings, accounts).await;
    let mut entries: Vec<Value> = (0..JOBS - 4)
        .map(|i| {
            json!({ "action": "delete_portal_customer", "email": format!("c{i}@example.com"),
                    "account_id": format!("qm:{i:03}") })
        })
        .collect();
    entries.extend([
        json!({ "action": "delete_portal_customer", "email": "revoked@example.com",
                "account_id": "qm:revoked" }),
        json!({ "action": "delete_portal_customer", "email": "mine@example.com",
                "account_id": "qm:other" }),
        json!({ "action": "delete_portal_customer", "email": "agent@example.com",
                "account_id": "557058:agent" }),
        json!({ "action": "delete_portal_customer", "email": "ghost@example.com",
                "account_id": "qm:ghost" }),
    ]);
    h.fake.inject(Fault::once(
        Matcher::PathContains("/user/bulk".into()),
        FaultKind::Hang,
    ));
    let ids = enqueue_by_hand(&h.app, Value::Array(entries)).await;
    eventually("every job is running", WAIT, async || {
        h.states(&ids).await.iter().all(|s| *s == JobState::Running)
    })
    .await;
    // The jobs read at once when claimed; let the last of them reach the reader.
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.fake.release_held();
    let jobs = h.wait_all_final(&ids).await;

    for job in &jobs[..JOBS - 3] {
        assert_succeeded(job, Outcome::Done);
    }
    assert_failed(&jobs[JOBS - 3], "account_mismatch");
    assert_failed(&jobs[JOBS - 2], "account_type_mismatch");
    assert_succeeded(&jobs[JOBS - 1], Outcome::NotFound);
    let requests = h.fake.requests();
    let count = |method: &str, path: &str| {
        requests
            .iter()
            .filter(|r| r.method == method && r.path == path)
            .count()
    };
    // At most two bulk reads: the held one, then the ids that waited behind it (all of them
    // if they were queued before the first gathered its ids), 39 of the 40 known, in pages of
    // at most 10.
    let bulk: Vec<(usize, usize)> = requests
        .iter()
        .filter(|r| r.path == "/rest/api/3/user/bulk")
        .map(|r| {
            let query = r.query.as_deref().unwrap_or_default();
            let start = query
                .split('&')
                .find_map(|p| p.strip_prefix("startAt="))
                .and_then(|n| n.parse().ok())
                .expect("startAt");
            (query.matches("accountId=").count(), start)
        })
        .collect();
    let reads: Vec<usize> = bulk
        .iter()
        .filter(|(_, start)| *start == 0)
        .map(|(ids, _)| *ids)
        .collect();
    assert!(reads.len() <= 2, "{bulk:?}");
    assert_eq!(reads.iter().sum::<usize>(), JOBS, "each id once: {bulk:?}");
    assert!(bulk.len() <= 5, "{bulk:?}");
    assert_eq!(
        count("GET", "/rest/api/3/user"),
        1,
        "only the id the bulk answer left out is read singly"
    );
    assert_eq!(count("DELETE", "/rest/api/3/user"), JOBS - 3);
    assert_eq!(requests.len(), bulk.len() + 1 + JOBS - 3, "{requests:#?}");
    assert!(
        (requests.len() as f64) < 1.2 * JOBS as f64,
        "{} requests for {JOBS} jobs",
        requests.len()
    );
    h.stop().await;
}

both_stores!(
    concurrent_reads_by_id_share_one_bulk_read_on,
    concurrent_reads_by_id_share_one_bulk_read
);

/// A bulk read refused with 403 pauses the worker (`permission`) like the single read it
/// replaces, and the job goes back without using an attempt. Without "Browse users and
/// groups" the bulk read still answers (it needs only access to Jira), but an id it leaves
/// out is confirmed by the single read, whose 403 pauses: never a silent `not_found`.
async fn a_refused_read_by_id_pauses_and_never_ends_not_found(db: TestDb) {
    let accounts = vec![FakeAccount::customer("qm:1", "one@example.com")];
    let h = Harness::start(&db, Settings::default(), accounts).await;
    h.fake.inject(Fault::once(
        Matcher::PathContains("/user/bulk".into()),
        FaultKind::Status403 {
            body: r#"{"errorMessages":["forbidden"]}"#.into(),
        },
    ));
    let entry = json!([{ "action": "delete_portal_customer", "email": "one@example.com",
        "account_id": "qm:1" }]);
    let first = enqueue_by_hand(&h.app, entry).await;
    eventually("the worker pauses for the permission", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Permission)
    })
    .await;
    eventually("the job is back to pending", WAIT, async || {
        h.states(&first).await == [JobState::Pending]
    })
    .await;
    assert_eq!(h.app.job(&first[0]).await.job.attempts, 0);

    h.fake.set_browse_users(false);
    let entry = json!([{ "action": "delete_portal_customer", "email": "ghost@example.com",
        "account_id": "qm:ghost" }]);
    let ghost = enqueue_by_hand(&h.app, entry).await;
    h.app.store.resume().await.expect("resume");
    eventually("the worker pauses again", WAIT, async || {
        h.worker_paused().await == Some(PauseReason::Permission)
            && h.states(&ghost).await == [JobState::Pending]
    })
    .await;
    let ghost_job = h.app.job(&ghost[0]).await;
    assert_eq!(ghost_job.job.outcome, None, "{ghost_job:#?}");
    assert!(
        h.fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.query.as_deref() == Some("accountId=qm%3Aghost")),
        "confirmed by the single read"
    );

    h.fake.set_browse_users(true);
    h.app.store.resume().await.expect("resume");
    let jobs = h
        .wait_all_final(&[first[0].clone(), ghost[0].clone()])
        .await;
    assert_succeeded(&jobs[0], Outcome::Done);
    assert_succeeded(&jobs[1], Outcome::NotFound);
    h.stop().await;
}

both_stores!(
    a_refused_read_by_id_pauses_and_never_ends_not_found_on,
    a_refused_read_by_id_pauses_and_never_ends_not_found
);

/// An entry's account whose record hides its email: nothing ties it to the entry's email,
/// so the job fails `account_unverifiable` without a call, unless the request vouched for
/// its ids (`trust_account_id`); a record showing another email is a mismatch as before.
async fn a_hidden_email_is_acted_on_only_when_vouched_for(db: TestDb) {
    let mut customer = FakeAccount::customer("qm:hidden", "hidden@example.com");
    customer.email = None;
    let mut managed = FakeAccount::managed("acc-hidden", "boss@example.com");
    managed.email = None;
    let other = FakeAccount::managed("acc-other", "other@example.com");
    let h = Harness::start(&db, Settings::default(), vec![customer, managed, other]).await;
    let entries = json!([
        { "action": "delete_portal_customer", "email": "victim@example.com", "account_id": "qm:hidden" },
        { "action": "suspend_access", "email": "victim@example.com", "account_id": "acc-hidden" },
        { "action": "deactivate_account", "email": "victim@example.com", "account_id": "acc-other" },
    ]);
    let ids = enqueue_by_hand(&h.app, entries.clone()).await;
    let jobs = h.wait_all_final(&ids).await;
    assert_failed(&jobs[0], "account_unverifiable");
    assert_failed(&jobs[1], "account_unverifiable");
    assert!(
        event_log(&jobs[0]).contains("trust_account_id"),
        "the event says how to go on: {}",
        event_log(&jobs[0])
    );
    assert_failed(&jobs[2], "account_mismatch");
    assert_no_mutation(&h.fake);

    // Vouched for: the hidden ones are acted on; another email is still a mismatch.
    let ids = enqueue_request(&h.app, json!({ "jobs": entries, "trust_account_id": true })).await;
    let jobs = h.wait_all_final(&ids).await;
    assert_succeeded(&jobs[0], Outcome::Done);
    assert_succeeded(&jobs[1], Outcome::Done);
    assert_eq!(jobs[0].job.params["trust_account_id"], json!(true));
    assert_failed(&jobs[2], "account_mismatch");
    assert_eq!(
        h.fake.account("qm:hidden").unwrap().status(),
        FakeStatus::Deleted
    );
    assert_eq!(
        h.fake.account("acc-hidden").unwrap().status(),
        FakeStatus::Suspended
    );
    assert_eq!(
        h.fake.account("acc-other").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    a_hidden_email_is_acted_on_only_when_vouched_for_on,
    a_hidden_email_is_acted_on_only_when_vouched_for
);

/// Each inverse action (`Reversal::Undo` in the action table), enqueued by hand: the entry,
/// and the method, path and body of the request it sends.
fn inverse_cases() -> Vec<(Value, &'static str, String, Option<Value>)> {
    vec![
        (
            json!({ "action": "enable_account", "email": "off@example.com", "account_id": "acc-off" }),
            "POST",
            "/users/acc-off/manage/lifecycle/enable".to_owned(),
            None,
        ),
        (
            json!({ "action": "cancel_delete_account", "email": "del@example.com", "account_id": "acc-del" }),
            "POST",
            "/users/acc-del/manage/lifecycle/cancel-delete".to_owned(),
            None,
        ),
        (
            json!({ "action": "add_to_group", "email": "grp@example.com", "account_id": "acc-grp",
                "params": { "group_id": "g-77" } }),
            "POST",
            directory("/groups/g-77/memberships"),
            Some(json!({ "accountId": "acc-grp" })),
        ),
        (
            json!({ "action": "add_to_service_desk", "email": "desk@example.com", "account_id": "qm:desk",
                "params": { "service_desk_id": "11" } }),
            "POST",
            "/rest/servicedeskapi/servicedesk/11/customer".to_owned(),
            Some(json!({ "accountIds": ["qm:desk"] })),
        ),
        (
            json!({ "action": "add_to_customer_organization", "email": "org@example.com",
                "account_id": "qm:org", "params": { "organization_id": "4" } }),
            "POST",
            "/rest/servicedeskapi/organization/4/user".to_owned(),
            Some(json!({ "accountIds": ["qm:org"] })),
        ),
    ]
}

/// The calls that give back (README, "Undo on rehire"), each on an account in the state its
/// forward action left it, enqueued by hand with the account's id: each sends its documented
/// request and changes the account back.
async fn every_inverse_action_gives_back(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::default(),
        vec![
            managed_in_status("acc-off", "off@example.com", FakeStatus::Deactivated),
            managed_in_status("acc-del", "del@example.com", FakeStatus::PendingDelete),
            FakeAccount::managed("acc-grp", "grp@example.com"),
            FakeAccount::customer("qm:desk", "desk@example.com"),
            FakeAccount::customer("qm:org", "org@example.com"),
        ],
    )
    .await;
    h.fake.add_group("g-77");
    h.fake.add_service_desk("11");
    h.fake.add_organization("4");
    for (entry, method, path, body) in inverse_cases() {
        let before = h.fake.requests().len();
        let ids = enqueue_by_hand(&h.app, json!([entry])).await;
        let job = h.app.wait_final(&ids[0], WAIT).await;
        assert_succeeded(&job, Outcome::Done);
        let sent: Vec<RecordedRequest> = h.fake.requests()[before..]
            .iter()
            .filter(|r| !r.is_lookup())
            .cloned()
            .collect();
        assert_eq!(sent.len(), 1, "{sent:#?}");
        assert_eq!(sent[0].method, method, "{entry}");
        assert_eq!(sent[0].path, path, "{entry}");
        assert_eq!(sent[0].body, body, "{entry}");
    }
    assert_eq!(
        h.fake.account("acc-off").unwrap().status(),
        FakeStatus::Active
    );
    assert_eq!(
        h.fake.account("acc-del").unwrap().status(),
        FakeStatus::Active
    );
    assert!(h.fake.account("acc-grp").unwrap().groups.contains("g-77"));
    assert!(
        h.fake
            .account("qm:desk")
            .unwrap()
            .service_desks
            .contains("11")
    );
    assert!(
        h.fake
            .account("qm:org")
            .unwrap()
            .organizations
            .contains("4")
    );

    // Given back again: enabling an active account is read back as already done; a second
    // membership answers 409 ADMIN-UAM-409-2, "already a member": already done too.
    let again = enqueue_by_hand(
        &h.app,
        json!([
            { "action": "enable_account", "email": "off@example.com", "account_id": "acc-off" },
            { "action": "add_to_group", "email": "grp@example.com", "account_id": "acc-grp",
              "params": { "group_id": "g-77" } },
            { "action": "add_to_group", "email": "grp2@example.com", "account_id": "acc-off",
              "params": { "group_id": "g-missing" } },
        ]),
    )
    .await;
    let jobs = h.wait_all_final(&again).await;
    assert_succeeded(&jobs[0], Outcome::AlreadyDone);
    assert_succeeded(&jobs[1], Outcome::AlreadyDone);
    assert_failed(&jobs[2], "account_mismatch");
    h.stop().await;
}

both_stores!(
    every_inverse_action_gives_back_on,
    every_inverse_action_gives_back
);

/// Undo on rehire (README, "Undo on rehire"): a cancel rule with `undo = true` cancels what is
/// pending and gives back what was done, in reverse order, on the recorded account; what
/// cannot be given back is listed; nothing is given back twice.
async fn a_rehire_gives_back_what_can_be_given_back(db: TestDb) {
    let rules = r#"
  [[sources.rules]]
  name = "leaver"
  when = { "/type" = "leaver" }
  email = "/email"
  actions = ["suspend_access", { action = "remove_from_group", group_id = "g-1" },
             { action = "delete_account", after = "30d" }]

  [[sources.rules]]
  name = "customer-leaver"
  when = { "/type" = "customer-leaver" }
  email = "/email"
  actions = ["revoke_portal_access", "delete_portal_customer"]

  [[sources.rules]]
  name = "rehired"
  when = { "/type" = "rehired" }
  email = "/email"
  cancel = true
  undo = true
"#;
    let settings = Settings {
        rules: rules.to_owned(),
        ..Settings::default()
    };
    let mut ann = FakeAccount::managed("acc-ann", "ann@example.com");
    ann.groups.insert("g-1".to_owned());
    let cus = FakeAccount::customer("qm:cus", "cus@example.com");
    let h = Harness::start(&db, settings, vec![ann, cus]).await;

    let chain = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    assert_eq!(chain.len(), 3);
    let done = h.wait_all_final(&chain[..2]).await;
    for job in &done {
        assert_succeeded(job, Outcome::Done);
    }
    assert_eq!(h.states(&chain[2..]).await, [JobState::Pending]);
    let customer = h
        .enqueue(json!({ "type": "customer-leaver", "email": "cus@example.com" }))
        .await;
    for job in h.wait_all_final(&customer).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let account = h.fake.account("acc-ann").unwrap();
    assert_eq!(account.status(), FakeStatus::Suspended);
    assert!(account.groups.is_empty());

    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    assert_eq!(answer["cancelled"], json!([chain[2]]), "{answer}");
    let undo = answer["undo"].as_array().expect("undo jobs");
    let actions: Vec<&str> = undo.iter().map(|j| j["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["add_to_group", "restore_access"],
        "reverse order: {answer}"
    );
    assert!(
        undo.iter().all(|j| j["account_id"] == "acc-ann"),
        "{answer}"
    );
    assert_eq!(undo[0]["params"]["group_id"], "g-1");
    assert_eq!(answer["irreversible"], json!([]), "{answer}");
    assert_eq!(answer["jobs"], json!([]), "{answer}");
    let ids: Vec<String> = undo
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let before = h.fake.requests().len();
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let searched = h.fake.requests()[before..]
        .iter()
        .any(|r| r.path.ends_with("/users/search"));
    assert!(
        !searched,
        "the inverses act on the recorded account, without a search"
    );
    let account = h.fake.account("acc-ann").unwrap();
    assert_eq!(account.status(), FakeStatus::Active);
    assert!(account.groups.contains("g-1"));

    // Again: nothing is given back twice, and an inverse is never undone.
    let again = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com", "again": true }),
        )
        .await;
    assert_eq!(again["undo"], json!([]), "{again}");
    assert_eq!(again["cancelled"], json!([]), "{again}");

    // A customer's revoke and delete cannot be given back: listed, not skipped.
    let customer_answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "cus@example.com" }),
        )
        .await;
    assert_eq!(customer_answer["undo"], json!([]));
    let irreversible = customer_answer["irreversible"].as_array().unwrap();
    let listed: Vec<&str> = irreversible
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ["delete_portal_customer", "revoke_portal_access"]);
    assert!(
        irreversible
            .iter()
            .all(|i| i["reason"].as_str().unwrap().len() > 10)
    );
    assert_eq!(irreversible[0]["job"], json!(customer[1]));
    h.stop().await;
}

both_stores!(
    a_rehire_gives_back_what_can_be_given_back_on,
    a_rehire_gives_back_what_can_be_given_back
);

/// One live job per (action, email, target) (README): a rule that removes a person from two
/// groups makes a job per group, the worker runs both, and a rehire gives both groups back,
/// the one removed last first.
async fn two_groups_are_two_jobs_and_a_rehire_gives_both_back(db: TestDb) {
    let settings = leaver_then_rehire(
        r#"[{ action = "remove_from_group", group_id = "g-1" },
             { action = "remove_from_group", group_id = "g-2" }]"#,
    );
    let mut ann = FakeAccount::managed("acc-ann", "ann@example.com");
    ann.groups.extend(["g-1".to_owned(), "g-2".to_owned()]);
    let h = Harness::start(&db, settings, vec![ann]).await;

    let removed = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    assert_eq!(removed.len(), 2, "a job per group: {removed:?}");
    let groups: Vec<String> = h
        .wait_all_final(&removed)
        .await
        .iter()
        .map(|job| {
            assert_succeeded(job, Outcome::Done);
            job.job.param("group_id").unwrap().to_owned()
        })
        .collect();
    assert_eq!(groups, ["g-1", "g-2"]);
    assert!(h.fake.account("acc-ann").unwrap().groups.is_empty());

    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    let undo = answer["undo"].as_array().expect("undo jobs");
    let given_back: Vec<(&str, &str)> = undo
        .iter()
        .map(|j| {
            (
                j["action"].as_str().unwrap(),
                j["params"]["group_id"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        given_back,
        [("add_to_group", "g-2"), ("add_to_group", "g-1")],
        "{answer}"
    );
    assert_eq!(answer["irreversible"], json!([]), "{answer}");
    assert_eq!(answer["jobs"], json!([]), "{answer}");
    let ids: Vec<String> = undo
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let groups = h.fake.account("acc-ann").unwrap().groups;
    assert!(
        groups.contains("g-1") && groups.contains("g-2"),
        "{groups:?}"
    );
    h.stop().await;
}

both_stores!(
    two_groups_are_two_jobs_and_a_rehire_gives_both_back_on,
    two_groups_are_two_jobs_and_a_rehire_gives_both_back
);

/// With `approval = true` on the undo rule, the inverses are created awaiting approval and
/// give nothing back until a person approves them.
async fn an_undo_with_approval_waits_for_a_person(db: TestDb) {
    let rules = r#"
  [[sources.rules]]
  name = "leaver"
  when = { "/type" = "leaver" }
  email = "/email"
  actions = ["suspend_access"]

  [[sources.rules]]
  name = "rehired"
  when = { "/type" = "rehired" }
  email = "/email"
  cancel = true
  undo = true
  approval = true
"#;
    let settings = Settings {
        rules: rules.to_owned(),
        ..Settings::default()
    };
    let accounts = vec![FakeAccount::managed("acc-bo", "bo@example.com")];
    let h = Harness::start(&db, settings, accounts).await;
    let suspended = h
        .run_one(json!({ "type": "leaver", "email": "bo@example.com" }))
        .await;
    assert_succeeded(&suspended, Outcome::Done);
    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "bo@example.com" }),
        )
        .await;
    let undo = answer["undo"].as_array().expect("undo jobs");
    assert_eq!(undo.len(), 1, "{answer}");
    assert_eq!(undo[0]["action"], "restore_access");
    assert_eq!(undo[0]["state"], "awaiting_approval", "{answer}");
    let id = undo[0]["id"].as_str().unwrap().to_owned();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.states(std::slice::from_ref(&id)).await,
        [JobState::AwaitingApproval]
    );
    assert_eq!(
        h.fake.account("acc-bo").unwrap().status(),
        FakeStatus::Suspended
    );
    h.app
        .store
        .approve(id.parse().unwrap(), "test")
        .await
        .unwrap();
    assert_succeeded(&h.app.wait_final(&id, WAIT).await, Outcome::Done);
    assert_eq!(
        h.fake.account("acc-bo").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    an_undo_with_approval_waits_for_a_person_on,
    an_undo_with_approval_waits_for_a_person
);

/// An HR rehire gives back only what HR did (README, "Undo on rehire"): a suspension an
/// admin made by hand (console, API) stays, listed with the source that made it, unless the
/// rule names that source in `undo_sources`.
async fn a_rehire_gives_back_only_its_own_sources_steps(db: TestDb) {
    rehire_after_a_suspension_by_hand(db, "").await;
}

both_stores!(
    a_rehire_gives_back_only_its_own_sources_steps_on,
    a_rehire_gives_back_only_its_own_sources_steps
);

async fn undo_sources_give_back_the_named_sources_steps(db: TestDb) {
    rehire_after_a_suspension_by_hand(db, "undo_sources = [\"api\"]").await;
}

both_stores!(
    undo_sources_give_back_the_named_sources_steps_on,
    undo_sources_give_back_the_named_sources_steps
);

async fn rehire_after_a_suspension_by_hand(db: TestDb, undo_sources: &str) {
    let mut settings =
        leaver_then_rehire(r#"[{ action = "remove_from_group", group_id = "g-1" }]"#);
    settings.rules = settings.rules.replace(
        "  undo = true\n",
        &format!("  undo = true\n  {undo_sources}\n"),
    );
    let mut ann = FakeAccount::managed("acc-ann", "ann@example.com");
    ann.groups.insert("g-1".to_owned());
    let h = Harness::start(&db, settings, vec![ann]).await;
    let hr = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    // The admin suspends her by hand, for security.
    let by_hand = enqueue_by_hand(
        &h.app,
        json!([{ "action": "suspend_access", "email": "ann@example.com", "account_id": "acc-ann" }]),
    )
    .await;
    for job in h
        .wait_all_final(&[hr.clone(), by_hand.clone()].concat())
        .await
    {
        assert_succeeded(&job, Outcome::Done);
    }

    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    let undo = answer["undo"].as_array().expect("undo jobs");
    let mut actions: Vec<&str> = undo.iter().map(|j| j["action"].as_str().unwrap()).collect();
    actions.sort();
    let ids: Vec<String> = undo
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let account = h.fake.account("acc-ann").unwrap();
    assert!(
        account.groups.contains("g-1"),
        "HR's own step is given back"
    );
    if undo_sources.is_empty() {
        assert_eq!(actions, ["add_to_group"], "{answer}");
        let left = answer["irreversible"].as_array().unwrap();
        assert_eq!(left.len(), 1, "{answer}");
        assert_eq!(left[0]["job"], json!(by_hand[0]));
        assert_eq!(left[0]["action"], "suspend_access");
        let reason = left[0]["reason"].as_str().unwrap();
        assert!(
            reason.contains("source `api`") && reason.contains("undo_sources"),
            "{reason}"
        );
        assert_eq!(
            account.status(),
            FakeStatus::Suspended,
            "the admin's suspension stays"
        );
    } else {
        assert_eq!(actions, ["add_to_group", "restore_access"], "{answer}");
        assert_eq!(answer["irreversible"], json!([]), "{answer}");
        assert_eq!(account.status(), FakeStatus::Active);
    }
    h.stop().await;
}

/// A source whose `leaver` event runs `actions` and whose `rehired` event cancels and undoes.
fn leaver_then_rehire(actions: &str) -> Settings {
    let rules = format!(
        r#"
  [[sources.rules]]
  name = "leaver"
  when = {{ "/type" = "leaver" }}
  email = "/email"
  actions = {actions}

  [[sources.rules]]
  name = "rehired"
  when = {{ "/type" = "rehired" }}
  email = "/email"
  cancel = true
  undo = true
"#
    );
    Settings {
        rules,
        ..Settings::default()
    }
}

/// The usual rehire (issue: outcomes observed): suspend → deactivate → delete, then a
/// rehire gives back cancel-delete → enable → restore, and the fake's account ends active,
/// not scheduled for deletion, and active in the directory. Enable finds the account active
/// after the cancel-delete (which "restores and activates" it) and reads that back from the
/// account's own status, not the composite one, which says `suspended` until the restore.
async fn the_usual_rehire_gives_the_account_back(db: TestDb) {
    let settings =
        leaver_then_rehire(r#"["suspend_access", "deactivate_account", "delete_account"]"#);
    let ann = FakeAccount::managed("acc-ann", "ann@example.com");
    let h = Harness::start(&db, settings, vec![ann]).await;
    let chain = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    for job in h.wait_all_final(&chain).await {
        assert_succeeded(&job, Outcome::Done);
    }
    assert_eq!(
        h.fake.account("acc-ann").unwrap().status(),
        FakeStatus::PendingDelete
    );

    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    let undo = answer["undo"].as_array().expect("undo jobs");
    let actions: Vec<&str> = undo.iter().map(|j| j["action"].as_str().unwrap()).collect();
    assert_eq!(
        actions,
        ["cancel_delete_account", "enable_account", "restore_access"],
        "{answer}"
    );
    let ids: Vec<String> = undo
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .collect();
    let jobs = h.wait_all_final(&ids).await;
    assert_succeeded(&jobs[0], Outcome::Done);
    assert_succeeded(&jobs[1], Outcome::AlreadyDone);
    assert_succeeded(&jobs[2], Outcome::Done);
    let account = h.fake.account("acc-ann").unwrap();
    assert_eq!(account.account_status, AccountStatus::Active);
    assert!(!account.for_deletion);
    assert_eq!(account.membership(DIRECTORY_ID), Some(Membership::Active));
    h.stop().await;
}

both_stores!(
    the_usual_rehire_gives_the_account_back_on,
    the_usual_rehire_gives_the_account_back
);

/// A rehire while a step is running: the step is planned for giving back, its inverse waits
/// for it, and gives back once it ends `done`.
async fn a_step_running_during_a_rehire_is_given_back_once_done(db: TestDb) {
    let settings = leaver_then_rehire(r#"["suspend_access"]"#);
    let h = Harness::start(
        &db,
        settings,
        vec![FakeAccount::managed("acc-ann", "ann@example.com")],
    )
    .await;
    h.fake.inject(Fault::once(
        Matcher::PathContains("/suspend".into()),
        FaultKind::HoldAnswer,
    ));
    let chain = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    // The suspend is carried out, its answer held: the job is running.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.fake.account("acc-ann").unwrap().status() != FakeStatus::Suspended {
        assert!(tokio::time::Instant::now() < deadline, "no suspend");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.states(&chain).await, [JobState::Running]);

    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    let undo = answer["undo"].as_array().expect("undo jobs");
    assert_eq!(undo.len(), 1, "{answer}");
    assert_eq!(undo[0]["action"], "restore_access");
    assert_eq!(undo[0]["params"]["undoes"], json!(chain[0]));
    let ids = [undo[0]["id"].as_str().unwrap().to_owned()];
    // The inverse waits while the original is in flight.
    while !event_log(&h.app.job(&ids[0]).await).contains("waiting for job") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the inverse never waited"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.states(&chain).await, [JobState::Running]);
    h.fake.release_held();
    let restore = h.wait_all_final(&ids).await.remove(0);
    assert_succeeded(&restore, Outcome::Done);
    assert_eq!(
        h.fake.account("acc-ann").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    a_step_running_during_a_rehire_is_given_back_once_done_on,
    a_step_running_during_a_rehire_is_given_back_once_done
);

/// An inverse that a later removal from the directory made impossible is listed, not
/// enqueued; the removal itself is listed with the truth about re-inviting.
async fn an_undo_after_a_directory_removal_lists_what_it_cannot_give(db: TestDb) {
    let settings = leaver_then_rehire(r#"["suspend_access", "remove_from_directory"]"#);
    let h = Harness::start(
        &db,
        settings,
        vec![FakeAccount::managed("acc-ann", "ann@example.com")],
    )
    .await;
    let chain = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    for job in h.wait_all_final(&chain).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let answer = h
        .app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "ann@example.com" }),
        )
        .await;
    assert_eq!(answer["undo"], json!([]), "{answer}");
    let irreversible = answer["irreversible"].as_array().unwrap();
    let listed: Vec<&str> = irreversible
        .iter()
        .map(|i| i["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        ["remove_from_directory", "suspend_access"],
        "{answer}"
    );
    assert!(
        irreversible[0]["reason"]
            .as_str()
            .unwrap()
            .contains("invite")
    );
    assert!(
        irreversible[1]["reason"]
            .as_str()
            .unwrap()
            .contains("removed from the directory afterwards"),
        "{answer}"
    );
    h.stop().await;
}

both_stores!(
    an_undo_after_a_directory_removal_lists_what_it_cannot_give_on,
    an_undo_after_a_directory_removal_lists_what_it_cannot_give
);

/// An import drain at the default `concurrency` (4): each bulk read also names the next due
/// jobs' account ids, and their records answer those jobs when claimed, so the drain costs
/// about one request per job (one delete each, plus a bulk page per ten records).
async fn an_import_drain_reads_its_records_ahead(db: TestDb) {
    // At most `approval_above` (50), so that nothing waits for a person.
    const JOBS: usize = 50;
    let accounts: Vec<FakeAccount> = (0..JOBS)
        .map(|i| FakeAccount::customer(&format!("qm:{i:03}"), &format!("c{i}@example.com")))
        .collect();
    let h = Harness::start(&db, Settings::default(), accounts).await;
    let entries: Vec<Value> = (0..JOBS)
        .map(|i| {
            json!({ "action": "delete_portal_customer", "email": format!("c{i}@example.com"),
                    "account_id": format!("qm:{i:03}") })
        })
        .collect();
    let ids = enqueue_by_hand(&h.app, Value::Array(entries)).await;
    for job in h.wait_all_final(&ids).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let requests = h.fake.requests();
    let single_reads = requests
        .iter()
        .filter(|r| r.path == "/rest/api/3/user")
        .filter(|r| r.method == "GET")
        .count();
    assert_eq!(single_reads, 0, "every record came from a bulk read");
    assert!(
        requests.len() as f64 <= JOBS as f64 * 1.15,
        "{} requests for {JOBS} jobs",
        requests.len()
    );
    h.stop().await;
}

both_stores!(
    an_import_drain_reads_its_records_ahead_on,
    an_import_drain_reads_its_records_ahead
);

/// A second rehire event (HR systems often send two for one change) neither cancels the
/// first one's inverses nor plans them again: with `approval = true` they wait for a person,
/// and once approved they give everything back.
async fn a_second_rehire_keeps_the_first_ones_undo(db: TestDb) {
    let mut settings = leaver_then_rehire(r#"["suspend_access"]"#);
    settings.rules.push_str("  approval = true\n");
    let h = Harness::start(
        &db,
        settings,
        vec![FakeAccount::managed("acc-ann", "ann@example.com")],
    )
    .await;
    let chain = h
        .enqueue(json!({ "type": "leaver", "email": "ann@example.com" }))
        .await;
    for job in h.wait_all_final(&chain).await {
        assert_succeeded(&job, Outcome::Done);
    }
    let rehire = |n: u32| json!({ "type": "rehired", "email": "ann@example.com", "n": n });
    let first = h.app.deliver(SOURCE, &rehire(1)).await;
    let undo = first["undo"].as_array().expect("undo jobs").clone();
    assert_eq!(undo.len(), 1, "{first}");
    let second = h.app.deliver(SOURCE, &rehire(2)).await;
    assert_eq!(second["cancelled"], json!([]), "{second}");
    assert_eq!(second["undo"], json!([]), "{second}");
    let id = undo[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        h.states(std::slice::from_ref(&id)).await,
        [JobState::AwaitingApproval]
    );
    h.app
        .store
        .approve(id.parse().unwrap(), "test")
        .await
        .unwrap();
    let restore = h.wait_all_final(&[id]).await.remove(0);
    assert_succeeded(&restore, Outcome::Done);
    assert_eq!(
        h.fake.account("acc-ann").unwrap().status(),
        FakeStatus::Active
    );
    h.stop().await;
}

both_stores!(
    a_second_rehire_keeps_the_first_ones_undo_on,
    a_second_rehire_keeps_the_first_ones_undo
);

/// The service's `/metrics` text.
async fn metrics_text(h: &Harness) -> String {
    let url = format!("{}/metrics", h.app.base_url);
    h.app
        .http
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// A client of the harness's configuration, for running a verification pass by hand.
fn client_of(h: &Harness) -> offboard::atlassian::Client {
    let config = &h.app.config;
    offboard::atlassian::Client::from_config(
        config.atlassian.as_ref().expect("[atlassian]"),
        config.worker.requests_per_second,
    )
    .expect("client")
}

/// Proof of offboarding (README, "Proof for auditors"): a chain that ended live is read back
/// once and recorded `verified`, with an event on its last job; a day later the recheck
/// finds the account re-activated (an identity provider turned it back on) and marks it.
async fn a_verified_case_that_is_reactivated_is_caught_by_the_recheck(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::with_rule(r#"["suspend_access"]"#),
        vec![FakeAccount::managed("acc-ann", "ann@example.com")],
    )
    .await;
    let job = h.run_one(person("ann@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    let client = client_of(&h);
    let store = h.app.store.as_ref();
    // The worker's own pass may have run first; either way the read is recorded once.
    verification::pass(store, &client, &h.app.config, "test", Utc::now(), None)
        .await
        .expect("pass");
    let verified = store
        .verifications()
        .verifications_of("ann@example.com")
        .await
        .unwrap();
    assert_eq!(verified.len(), 1, "{verified:?}");
    assert_eq!(verified[0].state, VerifiedState::Verified, "{verified:?}");
    assert!(verified[0].seen.contains("suspended"), "{verified:?}");
    let recheck_at = verified[0].recheck_at.expect("a recheck is planned");
    assert!(recheck_at > Utc::now() + chrono::Duration::hours(23));
    let events = h.app.job(&job.job.id.to_string()).await;
    assert!(
        event_log(&events).contains("verified: "),
        "{}",
        event_log(&events)
    );

    // Not due yet: nothing is read again.
    let early = verification::pass(store, &client, &h.app.config, "test", Utc::now(), None)
        .await
        .unwrap();
    assert_eq!(early.rechecked, 0);

    h.fake
        .add_account(FakeAccount::managed("acc-ann", "ann@example.com"));
    let later = recheck_at + chrono::Duration::seconds(1);
    let pass = verification::pass(store, &client, &h.app.config, "test", later, None)
        .await
        .unwrap();
    assert_eq!((pass.rechecked, pass.reactivated), (1, 1), "{pass:?}");
    let rechecked = store
        .verifications()
        .verifications_of("ann@example.com")
        .await
        .unwrap();
    assert!(rechecked[0].reactivated_at.is_some(), "{rechecked:?}");
    // Once only: the next pass has nothing to recheck.
    let again = verification::pass(store, &client, &h.app.config, "test", later, None)
        .await
        .unwrap();
    assert_eq!(again.rechecked, 0);
    let events = h.app.job(&job.job.id.to_string()).await;
    assert!(
        event_log(&events).contains("reactivated: "),
        "{}",
        event_log(&events)
    );
    let metrics = metrics_text(&h).await;
    for name in [
        "offboard_reactivated_total ",
        "offboard_time_to_revoke_seconds_count ",
    ] {
        assert!(metrics.contains(name), "{name} in {metrics}");
    }
    h.stop().await;
}

both_stores!(
    a_verified_case_that_is_reactivated_is_caught_by_the_recheck_on,
    a_verified_case_that_is_reactivated_is_caught_by_the_recheck
);

/// A read that contradicts the chain marks the case `verification_failed`, and plans no
/// recheck.
async fn a_contradicting_read_fails_the_verification(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::with_rule(r#"["suspend_access"]"#),
        vec![FakeAccount::managed("acc-bob", "bob@example.com")],
    )
    .await;
    let job = h.run_one(person("bob@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    // Someone restored the account by hand before the read.
    h.fake
        .add_account(FakeAccount::managed("acc-bob", "bob@example.com"));
    let client = client_of(&h);
    let store = h.app.store.as_ref();
    verification::pass(store, &client, &h.app.config, "test", Utc::now(), None)
        .await
        .unwrap();
    let seen = store
        .verifications()
        .verifications_of("bob@example.com")
        .await
        .unwrap();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].state, VerifiedState::VerificationFailed, "{seen:?}");
    assert_eq!(seen[0].recheck_at, None);
    let metrics = metrics_text(&h).await;
    assert!(
        metrics.contains("offboard_verification_failed_total "),
        "{metrics}"
    );
    h.stop().await;
}

both_stores!(
    a_contradicting_read_fails_the_verification_on,
    a_contradicting_read_fails_the_verification
);

/// Dry-run chains are not verified: nothing was done, so there is nothing to read back.
async fn a_dry_run_chain_is_not_verified(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings {
            dry_run: true,
            ..Settings::with_rule(r#"["suspend_access"]"#)
        },
        vec![FakeAccount::managed("acc-cy", "cy@example.com")],
    )
    .await;
    let job = h.run_one(person("cy@example.com")).await;
    assert_succeeded(&job, Outcome::DryRun);
    let client = client_of(&h);
    let store = h.app.store.as_ref();
    let pass = verification::pass(store, &client, &h.app.config, "test", Utc::now(), None)
        .await
        .unwrap();
    assert_eq!((pass.verified, pass.failed), (0, 0), "{pass:?}");
    assert!(
        store
            .verifications()
            .verifications_of("cy@example.com")
            .await
            .unwrap()
            .is_empty()
    );
    h.stop().await;
}

both_stores!(
    a_dry_run_chain_is_not_verified_on,
    a_dry_run_chain_is_not_verified
);

/// No silent loss (README): deleting a managed account would delete the filters it owns, even
/// shared ones, and its dashboards. A `delete_account` whose leaver still owns some fails
/// `owns_content` before its call, and nothing is deleted.
async fn delete_account_refuses_while_the_leaver_owns_content(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::with_rule(r#"["delete_account"]"#),
        vec![FakeAccount::managed("acc-dee", "dee@example.com")],
    )
    .await;
    // A private filter counts too (`overrideSharePermissions`); another's does not.
    h.fake.add_filter("10001", "acc-dee", true);
    h.fake.add_filter("10002", "acc-dee", false);
    h.fake.add_filter("10003", "acc-someone", true);
    h.fake.add_dashboard("20001", "acc-dee", true);
    let job = h.run_one(person("dee@example.com")).await;
    assert_failed(&job, "owns_content:filters=2,dashboards=1");
    assert_no_mutation(&h.fake);
    let (filters, dashboards) = h.fake.content();
    assert_eq!(filters, ["10001", "10002", "10003"]);
    assert_eq!(dashboards, ["20001"]);
    h.stop().await;
}

both_stores!(
    delete_account_refuses_while_the_leaver_owns_content_on,
    delete_account_refuses_while_the_leaver_owns_content
);

/// `allow_content_loss = true` on the step lets the deletion go ahead, and the fake deletes
/// what the account owned, as Atlassian documents.
async fn allow_content_loss_lets_the_deletion_take_the_content(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::with_rule(r#"[{ action = "delete_account", allow_content_loss = true }]"#),
        vec![FakeAccount::managed("acc-eve", "eve@example.com")],
    )
    .await;
    h.fake.add_filter("10001", "acc-eve", true);
    h.fake.add_filter("10003", "acc-someone", true);
    let job = h.run_one(person("eve@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    assert_eq!(job.job.params["allow_content_loss"], json!(true));
    let (filters, _) = h.fake.content();
    assert_eq!(
        filters,
        ["10003"],
        "the leaver's filter went with the account"
    );
    h.stop().await;
}

both_stores!(
    allow_content_loss_lets_the_deletion_take_the_content_on,
    allow_content_loss_lets_the_deletion_take_the_content
);

/// A leaver who owns nothing is deleted after the two reads, and the reads are paced and
/// recorded like every other request.
async fn delete_account_reads_owned_content_first(db: TestDb) {
    let h = Harness::start(
        &db,
        Settings::with_rule(r#"["delete_account"]"#),
        vec![FakeAccount::managed("acc-fay", "fay@example.com")],
    )
    .await;
    let job = h.run_one(person("fay@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    let paths: Vec<String> = h.fake.requests().iter().map(|r| r.path.clone()).collect();
    let filters = paths.iter().position(|p| p == "/rest/api/3/filter/search");
    let dashboards = paths
        .iter()
        .position(|p| p == "/rest/api/3/dashboard/search");
    let delete = paths
        .iter()
        .position(|p| p.ends_with("/manage/lifecycle/delete"));
    assert!(
        filters < delete && dashboards < delete && filters.is_some() && dashboards.is_some(),
        "{paths:?}"
    );
    h.stop().await;
}

both_stores!(
    delete_account_reads_owned_content_first_on,
    delete_account_reads_owned_content_first
);

/// `[evidence] reenqueue_reactivated = true`: a recheck that finds the account active again
/// enqueues the chain again, awaiting approval, once.
async fn a_reactivated_case_is_enqueued_again_awaiting_approval(db: TestDb) {
    let mut settings = Settings::with_rule(r#"["suspend_access"]"#);
    settings
        .rules
        .push_str("\n[evidence]\nverify_every = \"1h\"\nreenqueue_reactivated = true\n");
    let h = Harness::start(
        &db,
        settings,
        vec![FakeAccount::managed("acc-ray", "ray@example.com")],
    )
    .await;
    let job = h.run_one(person("ray@example.com")).await;
    assert_succeeded(&job, Outcome::Done);
    let client = client_of(&h);
    let store = h.app.store.as_ref();
    verification::pass(store, &client, &h.app.config, "test", Utc::now(), None)
        .await
        .unwrap();
    h.fake
        .add_account(FakeAccount::managed("acc-ray", "ray@example.com"));
    let later = Utc::now() + chrono::Duration::hours(25);
    for _ in 0..2 {
        verification::pass(store, &client, &h.app.config, "test", later, None)
            .await
            .unwrap();
    }
    let jobs = store
        .list_jobs(&offboard::store::JobFilter {
            email: Some("ray@example.com".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let again: Vec<_> = jobs.iter().filter(|j| j.id != job.job.id).collect();
    assert_eq!(again.len(), 1, "enqueued once: {jobs:#?}");
    assert_eq!(again[0].action.as_str(), "suspend_access");
    assert_eq!(again[0].state, JobState::AwaitingApproval);
    assert_eq!(again[0].source.as_deref(), Some("recheck"));
    assert_eq!(again[0].rule.as_deref(), Some("reactivated"));
    h.stop().await;
}

both_stores!(
    a_reactivated_case_is_enqueued_again_awaiting_approval_on,
    a_reactivated_case_is_enqueued_again_awaiting_approval
);
