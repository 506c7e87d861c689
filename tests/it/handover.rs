//! Hand-over before removal (README): a leaver's filters, dashboards, open issues, leads and
//! automation rules go to a successor before the account is suspended and deleted, against
//! the fake that behaves as the reference documents.

use std::time::Duration;

use serde_json::{Value, json};

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml, job_ids};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{FakeAccount, FakeAtlassian, FakeStatus};
use offboard::domain::{JobState, JobWithEvents, Outcome};

const SOURCE: &str = "hr";
const TOKEN: &str = "hand-over-token";
const WAIT: Duration = Duration::from_secs(30);
const LEAVER: &str = "acc-lea";
const BOSS: &str = "acc-boss";

/// Every hand-over, then the removal, as an operator would write it: the successor is the
/// manager named in the body, the deletion comes after a (shortened) grace.
const CHAIN: &str = r#"[
    "suspend_access",
    { action = "delete_account", after = "2s" },
    { action = "transfer_filters", successor = "/manager" },
    { action = "transfer_dashboards", successor = "/manager" },
    { action = "reassign_open_issues", successor = "/manager" },
    { action = "transfer_project_leads", successor = "/manager" },
    { action = "report_automation_rules", successor = "/manager" },
]"#;

/// Every hand-over in the action table runs in [`CHAIN`].
#[test]
fn the_chain_runs_every_hand_over() {
    let hand_overs = offboard::domain::Action::ALL
        .into_iter()
        .filter(|action| action.handover().is_some());
    for action in hand_overs {
        assert!(CHAIN.contains(&format!("\"{action}\"")), "{action}");
    }
}

fn toml(fake: &FakeAtlassian, actions: &str, extra: &str) -> String {
    format!(
        r#"dry_run = {dry_run}
{atlassian}
[worker]
concurrency = 4
lease_seconds = 5
requests_per_second = 500.0
backoff_base_seconds = 1
backoff_max_seconds = 2
{extra}
[[sources]]
name = "{SOURCE}"
scheme = "token"
secrets = ["{TOKEN}"]
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
"#,
        dry_run = extra.contains("dry_run_please"),
        atlassian = atlassian_toml(fake),
    )
    .replace("dry_run_please", "")
}

async fn start(db: &TestDb, actions: &str, extra: &str) -> (FakeAtlassian, TestApp) {
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_managed(LEAVER, "lea@example.com");
    fake.add_managed(BOSS, "boss@example.com");
    let app = TestApp::spawn(db, &toml(&fake, actions, extra)).await;
    (fake, app)
}

/// What the leaver owns and leads, beside what others do.
fn furnish(fake: &FakeAtlassian) {
    fake.add_filter("10001", LEAVER, true);
    fake.add_filter("10002", LEAVER, true);
    fake.add_filter("10003", "acc-other", true);
    fake.add_dashboard("20001", LEAVER, true);
    fake.add_dashboard("20002", LEAVER, true);
    for n in 1..=5 {
        fake.add_issue(&format!("OPS-{n}"), "OPS", Some(LEAVER), false);
    }
    fake.add_issue("OPS-6", "OPS", Some(LEAVER), true); // resolved: stays
    fake.add_issue("OPS-7", "OPS", Some("acc-other"), false);
    fake.add_project("OPS", "30001", LEAVER);
    fake.add_project("WEB", "30002", "acc-other");
    fake.add_component("40001", "OPS", Some(LEAVER));
    fake.add_component("40002", "WEB", Some(LEAVER));
    fake.add_component("40003", "WEB", Some("acc-other"));
    fake.add_rule("rule-1", "Close stale", LEAVER, LEAVER);
    fake.add_rule("rule-2", "Triage", "acc-other", "acc-other");
}

fn leaver_body(manager: Value) -> Value {
    json!({ "type": "leaver", "email": "lea@example.com", "manager": manager })
}

async fn run_all(app: &TestApp, ids: &[String]) -> Vec<JobWithEvents> {
    let mut jobs = Vec::new();
    for id in ids {
        jobs.push(app.wait_final(id, WAIT).await);
    }
    jobs
}

fn by_action<'a>(jobs: &'a [JobWithEvents], action: &str) -> &'a JobWithEvents {
    jobs.iter()
        .find(|j| j.job.action.as_str() == action)
        .unwrap_or_else(|| panic!("no {action} job in {jobs:#?}"))
}

#[track_caller]
fn moved(job: &JobWithEvents) -> Vec<String> {
    let mut items = job
        .job
        .handover
        .as_ref()
        .expect("a hand-over record")
        .moved
        .clone();
    items.sort();
    items
}

/// The whole chain: everything moves to the manager, nothing is deleted with the account,
/// no notification is asked for, and the trail names every item.
async fn a_leavers_work_is_handed_over_before_the_account_is_deleted(db: TestDb) {
    let (fake, app) = start(&db, CHAIN, "").await;
    furnish(&fake);
    let ids = job_ids(
        &app.deliver(SOURCE, &leaver_body(json!("boss@example.com")))
            .await,
    );
    assert_eq!(ids.len(), 7);
    let jobs = run_all(&app, &ids).await;
    let order: Vec<&str> = jobs.iter().map(|j| j.job.action.as_str()).collect();
    assert_eq!(
        order,
        [
            "transfer_filters",
            "transfer_dashboards",
            "reassign_open_issues",
            "transfer_project_leads",
            "report_automation_rules",
            "suspend_access",
            "delete_account"
        ],
        "hand-over steps run first, in the order written"
    );
    for job in &jobs[..4] {
        assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
        assert_eq!(job.job.outcome, Some(Outcome::Done), "{job:#?}");
        assert_eq!(job.job.successor_account_id.as_deref(), Some(BOSS));
    }
    // The fake ignores an actor change (UNCONFIRMED): the rule is listed to move by hand.
    let rules = by_action(&jobs, "report_automation_rules");
    assert_eq!(rules.job.state, JobState::Succeeded, "{rules:#?}");
    assert!(rules.job.handover.as_ref().unwrap().kept[0].item == "rule:rule-1");
    assert!(
        rules
            .events
            .iter()
            .any(|e| e.detail.contains("rule:rule-1 \"Close stale\"")),
        "{rules:#?}"
    );
    for job in &jobs[5..] {
        assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
    }
    assert_eq!(
        fake.account(LEAVER).unwrap().status(),
        FakeStatus::PendingDelete
    );

    assert_eq!(
        moved(by_action(&jobs, "transfer_filters")),
        ["filter:10001", "filter:10002"]
    );
    assert_eq!(
        moved(by_action(&jobs, "transfer_dashboards")),
        ["dashboard:20001", "dashboard:20002"]
    );
    assert_eq!(moved(by_action(&jobs, "reassign_open_issues")).len(), 5);
    assert_eq!(
        moved(by_action(&jobs, "transfer_project_leads")),
        ["component:40001", "component:40002", "project:OPS"]
    );
    // Nothing was deleted with the account: it all belongs to the successor.
    let (filters, dashboards) = fake.content();
    assert_eq!(filters, ["10001", "10002", "10003"]);
    assert_eq!(dashboards, ["20001", "20002"]);
    for id in ["10001", "10002"] {
        assert_eq!(fake.filter(id).unwrap().owner, BOSS);
    }
    assert_eq!(fake.filter("10003").unwrap().owner, "acc-other");
    for id in ["20001", "20002"] {
        assert_eq!(fake.dashboard(id).unwrap().item.owner, BOSS);
    }
    for n in 1..=5 {
        let key = format!("OPS-{n}");
        assert_eq!(fake.issue(&key).unwrap().assignee.as_deref(), Some(BOSS));
        assert_eq!(fake.issue_assignee_changes(&key), 1);
    }
    assert_eq!(
        fake.issue("OPS-6").unwrap().assignee.as_deref(),
        Some(LEAVER)
    );
    assert_eq!(
        fake.issue("OPS-7").unwrap().assignee.as_deref(),
        Some("acc-other")
    );
    assert_eq!(fake.bulk_notifications_requested(), 0);
    assert_eq!(fake.project_lead("OPS").as_deref(), Some(BOSS));
    assert_eq!(fake.project_lead("WEB").as_deref(), Some("acc-other"));
    assert_eq!(fake.component_lead("40001").as_deref(), Some(BOSS));
    assert_eq!(fake.component_lead("40002").as_deref(), Some(BOSS));
    assert_eq!(fake.component_lead("40003").as_deref(), Some("acc-other"));
    // The trail names each item.
    let filters = by_action(&jobs, "transfer_filters");
    for item in ["filter:10001", "filter:10002"] {
        assert!(
            filters.events.iter().any(|e| e.detail.contains(item)),
            "{item} in {filters:#?}"
        );
    }

    // A rehire lists the transfers, item by item, for an operator to give back by hand.
    let answer = app
        .deliver(
            SOURCE,
            &json!({ "type": "rehired", "email": "lea@example.com" }),
        )
        .await;
    let irreversible = answer["irreversible"].as_array().expect("irreversible");
    let filters_listed = irreversible
        .iter()
        .find(|i| i["action"] == "transfer_filters")
        .unwrap_or_else(|| panic!("{answer}"));
    assert_eq!(
        filters_listed["items"],
        json!(["filter:10001", "filter:10002"])
    );
    assert!(
        irreversible
            .iter()
            .any(|i| i["action"] == "reassign_open_issues"
                && i["items"].as_array().is_some_and(|items| items.len() == 5)),
        "{answer}"
    );

    // The person's page shows them too.
    let case: Value = app
        .admin(reqwest::Method::GET, "/api/v1/people/lea@example.com")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let handed: Vec<&Value> = case["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|j| j["handover"].is_object())
        .collect();
    assert_eq!(handed.len(), 5, "{case}");
    app.stop().await;
}

both_stores!(
    a_leavers_work_is_handed_over_before_the_account_is_deleted_on,
    a_leavers_work_is_handed_over_before_the_account_is_deleted
);

/// A successor that cannot receive fails the step, and the removal after it does not run.
async fn a_missing_inactive_or_self_successor_fails_the_step(db: TestDb) {
    let actions = r#"[{ action = "transfer_filters", successor = "/manager" }, "delete_account"]"#;
    let (fake, app) = start(&db, actions, "").await;
    fake.add_account(
        FakeAccount::managed("acc-gone", "gone@example.com").in_state(FakeStatus::Deactivated),
    );
    fake.add_filter("10001", LEAVER, true);
    for (manager, error) in [
        (json!(null), "no_successor"),
        (json!("nobody@example.com"), "no_successor"),
        (json!("gone@example.com"), "successor_inactive"),
        (json!("lea@example.com"), "successor_is_leaver"),
    ] {
        let ids = job_ids(&app.deliver(SOURCE, &leaver_body(manager.clone())).await);
        let jobs = run_all(&app, &ids).await;
        assert_eq!(jobs[0].job.state, JobState::Failed, "{manager}: {jobs:#?}");
        assert_eq!(jobs[0].job.last_error.as_deref(), Some(error), "{manager}");
        assert_eq!(jobs[1].job.state, JobState::Cancelled, "{manager}");
    }
    assert_eq!(fake.filter("10001").unwrap().owner, LEAVER);
    assert_eq!(fake.account(LEAVER).unwrap().status(), FakeStatus::Active);
    app.stop().await;
}

both_stores!(
    a_missing_inactive_or_self_successor_fails_the_step_on,
    a_missing_inactive_or_self_successor_fails_the_step
);

/// `[handover] fallback_successor` receives when the body names nobody.
async fn the_fallback_successor_receives_when_the_body_names_nobody(db: TestDb) {
    let actions = r#"[{ action = "transfer_dashboards", successor = "/manager" }]"#;
    let (fake, app) = start(
        &db,
        actions,
        "[handover]\nfallback_successor = \"boss@example.com\"\n",
    )
    .await;
    fake.add_dashboard("20001", LEAVER, true);
    let ids = job_ids(&app.deliver(SOURCE, &leaver_body(json!(""))).await);
    let job = app.wait_final(&ids[0], WAIT).await;
    assert_eq!(job.job.outcome, Some(Outcome::Done), "{job:#?}");
    assert_eq!(job.job.successor_account_id.as_deref(), Some(BOSS));
    assert_eq!(fake.dashboard("20001").unwrap().item.owner, BOSS);
    app.stop().await;
}

both_stores!(
    the_fallback_successor_receives_when_the_body_names_nobody_on,
    the_fallback_successor_receives_when_the_body_names_nobody
);

/// An item the site user may not move stays with the leaver, the step fails
/// `handover_incomplete`, and the deletion after it does not run: nothing is lost. A private
/// filter is found (the search's override) but whether an admin may then move it is
/// UNCONFIRMED: the fake answers 404, and it stays, listed.
async fn an_item_that_cannot_move_stops_the_removal(db: TestDb) {
    let actions = r#"[{ action = "transfer_filters", successor_email = "boss@example.com" }, "delete_account"]"#;
    let (fake, app) = start(&db, actions, "").await;
    fake.add_filter("10001", LEAVER, true);
    fake.add_filter_refusing("10002", LEAVER);
    fake.add_filter("10003", LEAVER, false);
    let ids = job_ids(&app.deliver(SOURCE, &leaver_body(json!(null))).await);
    let jobs = run_all(&app, &ids).await;
    assert_eq!(jobs[0].job.state, JobState::Failed, "{jobs:#?}");
    assert_eq!(
        jobs[0].job.last_error.as_deref(),
        Some("handover_incomplete:kept=2")
    );
    let done = jobs[0].job.handover.as_ref().unwrap();
    assert_eq!(done.moved, ["filter:10001"]);
    assert_eq!(done.kept[0].item, "filter:10002");
    assert!(done.kept[0].reason.contains("403"), "{done:?}");
    assert_eq!(done.kept[1].item, "filter:10003");
    assert!(done.kept[1].reason.contains("404"), "{done:?}");
    assert_eq!(jobs[1].job.state, JobState::Cancelled);
    assert_eq!(fake.filter("10001").unwrap().owner, BOSS);
    assert_eq!(fake.filter("10002").unwrap().owner, LEAVER);
    assert_eq!(fake.account(LEAVER).unwrap().status(), FakeStatus::Active);
    app.stop().await;
}

both_stores!(
    an_item_that_cannot_move_stops_the_removal_on,
    an_item_that_cannot_move_stops_the_removal
);

/// In dry run a hand-over lists what would move, and moves nothing.
async fn a_dry_run_lists_what_would_move(db: TestDb) {
    let actions = r#"[{ action = "reassign_open_issues", successor_account_id = "acc-boss" }]"#;
    let (fake, app) = start(&db, actions, "dry_run_please").await;
    fake.add_issue("OPS-1", "OPS", Some(LEAVER), false);
    fake.add_issue("OPS-2", "OPS", Some(LEAVER), false);
    let ids = job_ids(&app.deliver(SOURCE, &leaver_body(json!(null))).await);
    let job = app.wait_final(&ids[0], WAIT).await;
    assert_eq!(job.job.outcome, Some(Outcome::DryRun), "{job:#?}");
    let detail = &job.events.last().unwrap().detail;
    assert!(detail.contains("would give 2 item(s)"), "{detail}");
    assert!(
        detail.contains("issue:10000") && detail.contains("issue:10001"),
        "{detail}"
    );
    assert_eq!(fake.bulk_tasks_created(), 0);
    assert_eq!(
        fake.issue("OPS-1").unwrap().assignee.as_deref(),
        Some(LEAVER)
    );
    app.stop().await;
}

both_stores!(
    a_dry_run_lists_what_would_move_on,
    a_dry_run_lists_what_would_move
);

/// A manual job names its successor; a successor on another action is refused.
async fn a_manual_job_names_its_successor(db: TestDb) {
    let (fake, app) = start(&db, r#"["suspend_access"]"#, "").await;
    fake.add_project("OPS", "30001", LEAVER);
    let answer: Value = app
        .admin(reqwest::Method::POST, "/api/v1/jobs")
        .json(&json!({ "jobs": [{
            "action": "transfer_project_leads",
            "email": "lea@example.com",
            "successor": "boss@example.com",
        }] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids = job_ids(&answer);
    assert_eq!(ids.len(), 1, "{answer}");
    let job = app.wait_final(&ids[0], WAIT).await;
    assert_eq!(job.job.outcome, Some(Outcome::Done), "{job:#?}");
    assert_eq!(fake.project_lead("OPS").as_deref(), Some(BOSS));
    let refused = app
        .admin(reqwest::Method::POST, "/api/v1/jobs")
        .json(&json!({ "jobs": [{
            "action": "suspend_access",
            "email": "lea@example.com",
            "successor": "boss@example.com",
        }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("takes no successor"),
        "{body}"
    );
    app.stop().await;
}

both_stores!(
    a_manual_job_names_its_successor_on,
    a_manual_job_names_its_successor
);
