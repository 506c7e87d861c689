//! Jobs enqueued by hand (README, "Manual and bulk jobs"), on both stores: `POST /api/v1/jobs`
//! with its `Idempotency-Key`, and `offboard jobs add` / `jobs import` with the real binary.
//! Each goes through the guards a webhook goes through, and refuses as one.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::both_stores;
use crate::support::app::{ADMIN_TOKEN, TestApp, job_ids};
use crate::support::db::TestDb;
use offboard::domain::JobState;
use offboard::store::JobFilter;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// No `[atlassian]`: the worker stays idle, so jobs stay where the request put them. A
/// webhook source with the same people, to compare with.
const CONFIG: &str = r#"
[safety]
protected_emails = ["it-admin@example.com"]
protected_domains = ["admins.example.com"]
approval_above = 3

[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]
  [[sources.rules]]
  name = "leaver"
  for_each = "/people"
  email = ""
  actions = ["delete_portal_customer"]
"#;

async fn post_jobs(app: &TestApp, key: Option<&str>, body: &Value) -> (StatusCode, Value) {
    let mut request = app.admin(Method::POST, "/api/v1/jobs").json(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("POST /api/v1/jobs");
    (response.status(), response.json().await.expect("JSON"))
}

async fn all_jobs(app: &TestApp) -> Vec<offboard::domain::Job> {
    let filter = JobFilter {
        state: None,
        email: None,
        action: None,
        before: None,
        limit: 500,
    };
    app.store.list_jobs(&filter).await.expect("list jobs")
}

fn entry(action: &str, email: &str) -> Value {
    json!({ "action": action, "email": email })
}

async fn the_api_enqueues_through_the_webhook_guards(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let body = json!({ "jobs": [
        entry("delete_portal_customer", "Ann@Example.com"),
        entry("delete_portal_customer", "it-admin@example.com"),
        entry("delete_portal_customer", "x@sub.admins.example.com"),
    ]});
    let (status, first) = post_jobs(&app, Some("batch-1"), &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["delivery_id"], "batch-1");
    let jobs = first["jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{first}");
    assert_eq!(jobs[0]["email"], "ann@example.com");
    assert_eq!(jobs[0]["source"], "api");
    assert_eq!(jobs[0]["rule"], "manual");
    assert_eq!(jobs[0]["state"], "pending");

    // Protected people are refused in bulk exactly as a webhook refuses them one by one.
    let webhook = app
        .deliver(
            "hr",
            &json!({ "people": ["it-admin@example.com", "x@sub.admins.example.com"] }),
        )
        .await;
    assert_eq!(first["refused"], webhook["refused"], "{first} vs {webhook}");
    assert_eq!(first["refused"].as_array().unwrap().len(), 2);

    // The creation event names the API as the actor.
    let id = jobs[0]["id"].as_str().unwrap();
    let created = app.job(id).await;
    assert_eq!(created.events[0].actor, "api");
    assert_eq!(created.events[0].from, None);

    // The same key again replays the first answer and creates nothing.
    let (status, again) = post_jobs(&app, Some("batch-1"), &body).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["jobs"], first["jobs"]);
    assert_eq!(all_jobs(&app).await.len(), 1);

    // One live job per (action, email): a new request finds the live one.
    let (status, other) = post_jobs(
        &app,
        None,
        &json!({ "jobs": [entry("delete_portal_customer", "ann@example.com")] }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(other["jobs"][0]["id"], jobs[0]["id"]);
    assert_eq!(all_jobs(&app).await.len(), 1);
    app.stop().await;
}

both_stores!(
    the_api_enqueues_through_the_webhook_guards_on,
    the_api_enqueues_through_the_webhook_guards
);

fn remove_from_group(email: &str, group_id: &str) -> Value {
    json!({ "action": "remove_from_group", "email": email, "params": { "group_id": group_id } })
}

/// One live job per (action, email, target): a request removing a person from two groups
/// makes two jobs, and names each group once however often it asks; a later request finds
/// the live job of its group. Each group counts towards `approval_above` (3).
async fn each_group_of_a_manual_request_is_a_job_of_its_own(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let (status, first) = post_jobs(
        &app,
        None,
        &json!({ "jobs": [
            remove_from_group("ann@example.com", "g-1"),
            remove_from_group("ann@example.com", "g-2"),
            remove_from_group("ann@example.com", "g-1"),
        ]}),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{first}");
    let groups: Vec<&str> = first["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|job| job["params"]["group_id"].as_str().unwrap())
        .collect();
    assert_eq!(groups, ["g-1", "g-2"], "{first}");
    assert!(first.get("approval_required").is_none(), "{first}");

    let (_, again) = post_jobs(
        &app,
        None,
        &json!({ "jobs": [remove_from_group("ann@example.com", "g-2")] }),
    )
    .await;
    assert_eq!(job_ids(&again), [first["jobs"][1]["id"].as_str().unwrap()]);

    let four: Vec<Value> = (1..=4)
        .map(|i| remove_from_group("bob@example.com", &format!("g-{i}")))
        .collect();
    let (_, held) = post_jobs(&app, None, &json!({ "jobs": four })).await;
    assert_eq!(job_ids(&held).len(), 4, "{held}");
    assert!(held["approval_required"].is_string(), "{held}");
    assert_eq!(all_jobs(&app).await.len(), 6);
    app.stop().await;
}

both_stores!(
    each_group_of_a_manual_request_is_a_job_of_its_own_on,
    each_group_of_a_manual_request_is_a_job_of_its_own
);

async fn approval_and_mass_offboarding_hold_for_manual_jobs(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let (status, asked) = post_jobs(
        &app,
        None,
        &json!({ "jobs": [entry("suspend_access", "a@example.com")], "approval": true }),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{asked}");
    assert_eq!(asked["jobs"][0]["state"], "awaiting_approval");
    assert!(asked.get("approval_required").is_none());

    // More than `approval_above` (3): every job waits for a person, and the answer says why.
    let many: Vec<Value> = (0..4)
        .map(|i| entry("suspend_access", &format!("p{i}@example.com")))
        .collect();
    let (status, mass) = post_jobs(&app, None, &json!({ "jobs": many })).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{mass}");
    let states: Vec<&str> = mass["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["awaiting_approval"; 4]);
    assert!(mass["approval_required"].as_str().unwrap().contains('3'));
    app.stop().await;
}

both_stores!(
    approval_and_mass_offboarding_hold_for_manual_jobs_on,
    approval_and_mass_offboarding_hold_for_manual_jobs
);

async fn an_invalid_entry_enqueues_nothing(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let cases = [
        (
            json!({ "jobs": [
                entry("suspend_access", "ok@example.com"),
                entry("fly_away", "x@example.com"),
                entry("suspend_access", "not-an-email"),
            ]}),
            vec!["jobs[1]", "jobs[2]", "unknown action"],
        ),
        (
            json!({ "jobs": [{ "action": "remove_from_group", "email": "a@example.com" }] }),
            vec!["jobs[0]", "group_id"],
        ),
        (
            json!({ "jobs": [{ "action": "suspend_access", "email": "a@example.com", "at": "soon" }] }),
            vec!["jobs[0]", "at"],
        ),
        (
            json!({ "jobs": [{ "action": "suspend_access", "email": "a@example.com", "acount_id": "x" }] }),
            vec!["jobs[0]", "acount_id"],
        ),
        (json!({ "jobs": [] }), vec!["empty"]),
        (json!({ "jobs": [], "extra": 1 }), vec!["extra"]),
        (json!([1, 2]), vec!["object"]),
        (
            json!({ "jobs": [entry("suspend_access", "\u{212A}im@example.com")] }),
            vec!["jobs[0]"],
        ),
    ];
    for (body, needles) in cases {
        let (status, error) = post_jobs(&app, None, &body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {error}");
        assert_eq!(error["error"], "invalid_request", "{error}");
        let message = error["message"].as_str().unwrap();
        for needle in needles {
            assert!(message.contains(needle), "{needle:?} in {message:?}");
        }
    }
    let too_many: Vec<Value> = (0..10_001)
        .map(|i| entry("suspend_access", &format!("p{i}@example.com")))
        .collect();
    let (status, error) = post_jobs(&app, None, &json!({ "jobs": too_many })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        error["message"].as_str().unwrap().contains("10000"),
        "{error}"
    );

    // A repeated key is refused as JSON is, and a bad key is refused.
    let response = app
        .admin(Method::POST, "/api/v1/jobs")
        .header("content-type", "application/json")
        .body(r#"{"jobs":[{"action":"suspend_access","email":"a@x.co","email":"victim@x.co"}]}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let error: Value = response.json().await.unwrap();
    assert_eq!(error["error"], "invalid_json");
    let (status, _) = post_jobs(
        &app,
        Some(&"k".repeat(201)),
        &json!({ "jobs": [entry("suspend_access", "a@example.com")] }),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(all_jobs(&app).await.is_empty(), "nothing was enqueued");

    // Without the token: 401, nothing read.
    let response = app
        .http
        .post(format!("{}/api/v1/jobs", app.base_url))
        .json(&json!({ "jobs": [entry("suspend_access", "a@example.com")] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert!(all_jobs(&app).await.is_empty());
    app.stop().await;
}

both_stores!(
    an_invalid_entry_enqueues_nothing_on,
    an_invalid_entry_enqueues_nothing
);

/// `directory_id = "-"` is for reads only: with rules that only read, the service runs, and
/// an entry whose action writes to the directory is refused like any invalid entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_cannot_write_through_all_directories() {
    let db = TestDb::sqlite();
    let atlassian = r#"
[atlassian]
site_url = "https://example.atlassian.net"
site_email = "bot@example.com"
site_api_token = "site-token"
admin_api_key = "admin-key"
org_id = "org-1"
directory_id = "-"
"#;
    let app = TestApp::spawn(&db, &format!("{atlassian}{CONFIG}")).await;
    let body = json!({ "jobs": [
        entry("deactivate_account", "a@example.com"),
        entry("suspend_access", "b@example.com"),
        { "action": "remove_from_group", "email": "c@example.com",
          "params": { "group_id": "g-1" } },
    ]});
    let (status, error) = post_jobs(&app, None, &body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(error["error"], "invalid_request", "{error}");
    let message = error["message"].as_str().unwrap();
    for needle in [
        "jobs[1]: suspend_access writes to the directory, but directory_id is `-`",
        "jobs[2]: remove_from_group writes to the directory",
        "offboard doctor",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message:?}");
    }
    assert!(!message.contains("jobs[0]"), "{message}");
    assert!(all_jobs(&app).await.is_empty(), "nothing was enqueued");

    // What only reads the directory (its search) is taken.
    let body = json!({ "jobs": [entry("deactivate_account", "a@example.com")] });
    let (status, answer) = post_jobs(&app, None, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    app.stop().await;
}

fn write_config(dir: &Path, db: &TestDb) -> PathBuf {
    let path = dir.join("offboard.toml");
    let text = format!(
        "database_url = \"{}\"\nadmin_token = \"{ADMIN_TOKEN}\"\n{CONFIG}",
        db.url
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn offboard(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env_remove("OFFBOARD_CONFIG")
        .output()
        .expect("run offboard")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

async fn the_cli_imports_all_or_nothing_and_once(db: TestDb) {
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db);
    let csv_path = dir.path().join("leavers.csv");

    // One bad row rejects the whole file, naming its line.
    std::fs::write(
        &csv_path,
        "account_id,email,display_name,active,service_desks\n\
         qm:1,ann@example.com,Ann,true,1\n\
         qm:2,not-an-email,Bob,true,1\n\
         qm:3,cy@example.com,Cy,false,1;2\n",
    )
    .unwrap();
    let path = csv_path.to_str().unwrap();
    let out = offboard(
        &config,
        &["jobs", "import", path, "--action", "delete_portal_customer"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("line 3: invalid email"), "{stderr}");
    assert!(stderr.contains("nothing was enqueued"), "{stderr}");
    assert!(store.list_jobs(&all()).await.unwrap().is_empty());

    // A good file: created and refused are counted; protected people are refused.
    std::fs::write(
        &csv_path,
        "account_id,email,display_name,active,service_desks\n\
         qm:1,ann@example.com,Ann,true,1\n\
         qm:2,it-admin@example.com,Admin,true,1\n\
         qm:3,cy@example.com,Cy,false,1;2\n",
    )
    .unwrap();
    let args = ["jobs", "import", path, "--action", "delete_portal_customer"];
    let out = offboard(&config, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("created 2, existing 0, refused 1"),
        "{stdout}"
    );
    assert!(
        stdout.contains("refused it-admin@example.com: protected_email"),
        "{stdout}"
    );
    let jobs = store.list_jobs(&all()).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.source.as_deref() == Some("cli")));
    assert!(jobs.iter().any(|j| j.account_id.as_deref() == Some("qm:3")));

    // The same file again creates nothing.
    let out = offboard(&config, &args);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("created 0, existing 2, refused 1"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(store.list_jobs(&all()).await.unwrap().len(), 2);

    // `jobs import --json` prints the answer `POST /api/v1/jobs` gives.
    let json_csv = dir.path().join("one.csv");
    std::fs::write(&json_csv, "email\neve@example.com\n").unwrap();
    let out = offboard(
        &config,
        &[
            "jobs",
            "import",
            json_csv.to_str().unwrap(),
            "--action",
            "suspend_access",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["duplicate"], false);
    assert!(
        answer["delivery_id"]
            .as_str()
            .unwrap()
            .starts_with("import:")
    );
    assert_eq!(answer["jobs"][0]["email"], "eve@example.com");
    assert_eq!(answer["jobs"][0]["source"], "cli");
    assert_eq!(answer["refused"], json!([]));

    // `jobs add`, with --json printing the API's answer.
    let out = offboard(
        &config,
        &[
            "jobs",
            "add",
            "--action",
            "remove_from_group",
            "--email",
            "dee@example.com",
            "--param",
            "group_id=g-1",
            "--approval",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let answer: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(answer["jobs"][0]["state"], "awaiting_approval");
    assert_eq!(answer["jobs"][0]["params"]["group_id"], "g-1");
    assert_eq!(job_ids(&answer).len(), 1);
    let out = offboard(
        &config,
        &[
            "jobs",
            "add",
            "--action",
            "remove_from_group",
            "--email",
            "dee@example.com",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "a missing group_id is a usage error"
    );
    assert!(
        text(&out.stderr).contains("group_id"),
        "{}",
        text(&out.stderr)
    );
    let pending = store
        .list_jobs(&JobFilter {
            state: Some(JobState::AwaitingApproval),
            ..all()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
}

both_stores!(
    the_cli_imports_all_or_nothing_and_once_on,
    the_cli_imports_all_or_nothing_and_once
);

fn all() -> JobFilter {
    JobFilter {
        state: None,
        email: None,
        action: None,
        before: None,
        limit: 500,
    }
}

/// Ids no entry point takes (README, "Manual and bulk jobs"), with what the refusal says.
fn bad_ids() -> Vec<(String, &'static str)> {
    vec![
        ("g".repeat(129), "longer than 128"),
        ("g/1".into(), "'/'"),
        ("g%2F1".into(), "'%'"),
        ("g 1".into(), "' '"),
        // Cyrillic `а` and fullwidth `ｇ`.
        ("g\u{0430}1".into(), "contains"),
        ("\u{FF47}1".into(), "contains"),
    ]
}

/// Each id of an entry, set to `id`.
fn entries_with_id(id: &str) -> Vec<(Value, &'static str)> {
    let email = "a@example.com";
    vec![
        (
            json!({ "action": "remove_from_group", "email": email, "params": { "group_id": id } }),
            "group_id",
        ),
        (
            json!({ "action": "remove_from_service_desk", "email": email, "params": { "service_desk_id": id } }),
            "service_desk_id",
        ),
        (
            json!({ "action": "remove_from_customer_organization", "email": email, "params": { "organization_id": id } }),
            "organization_id",
        ),
        (
            json!({ "action": "suspend_access", "email": email, "account_id": id }),
            "account_id",
        ),
    ]
}

async fn the_api_refuses_ids_that_are_not_plain(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let mut cases = bad_ids();
    cases.push((String::new(), ""));
    for (id, why) in cases {
        for (bad, key) in entries_with_id(&id) {
            let body = json!({ "jobs": [entry("suspend_access", "ok@example.com"), bad] });
            let (status, error) = post_jobs(&app, None, &body).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{id:?} {key}: {error}");
            assert_eq!(error["error"], "invalid_request", "{error}");
            let message = error["message"].as_str().unwrap();
            assert!(message.contains("jobs[1]: "), "{message}");
            assert!(message.contains(key) && message.contains(why), "{message}");
            assert!(!message.contains("jobs[0]"), "{message}");
            assert!(
                id.len() < 100 || !message.contains(&id),
                "the id is not repeated"
            );
        }
    }
    assert!(all_jobs(&app).await.is_empty(), "nothing was enqueued");

    // At the limit, an id is taken.
    let longest = "g".repeat(128);
    let body = json!({ "jobs": entries_with_id(&longest).into_iter().map(|(e, _)| e).collect::<Vec<_>>() });
    let (status, answer) = post_jobs(&app, None, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    assert_eq!(all_jobs(&app).await.len(), 4);
    app.stop().await;
}

both_stores!(
    the_api_refuses_ids_that_are_not_plain_on,
    the_api_refuses_ids_that_are_not_plain
);

async fn the_cli_refuses_ids_that_are_not_plain(db: TestDb) {
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &db);

    // An import names every bad row by its line.
    let mut csv =
        String::from("email,action,account_id,group_id,service_desk_id,organization_id\n");
    let mut expected = Vec::new();
    for (id, why) in bad_ids() {
        let id = id.replace('"', "");
        for (row, key) in [
            (
                format!("a@example.com,remove_from_group,,{id},,"),
                "group_id",
            ),
            (
                format!("a@example.com,remove_from_service_desk,,,{id},"),
                "service_desk_id",
            ),
            (
                format!("a@example.com,remove_from_customer_organization,,,,{id}"),
                "organization_id",
            ),
            (
                format!("a@example.com,suspend_access,{id},,,"),
                "account_id",
            ),
        ] {
            csv.push_str(&row);
            csv.push('\n');
            expected.push((csv.lines().count(), key, why));
        }
    }
    let path = dir.path().join("ids.csv");
    std::fs::write(&path, &csv).unwrap();
    let out = offboard(&config, &["jobs", "import", path.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    for (line, key, why) in expected {
        let said = stderr
            .lines()
            .find(|l| l.contains(&format!("line {line}: ")))
            .unwrap_or_else(|| panic!("line {line} in {stderr}"));
        assert!(
            said.contains(&format!("invalid {key}: it")) && said.contains(why),
            "{said}"
        );
    }

    // `jobs add` refuses each as a usage error.
    for (id, why) in bad_ids().into_iter().chain([(String::new(), "empty")]) {
        let param = format!("group_id={id}");
        let out = offboard(
            &config,
            &[
                "jobs",
                "add",
                "--action",
                "remove_from_group",
                "--email",
                "a@example.com",
                "--param",
                &param,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{id:?}: {}", text(&out.stderr));
        assert!(
            text(&out.stderr).contains("group_id"),
            "{}",
            text(&out.stderr)
        );
        let out = offboard(
            &config,
            &[
                "jobs",
                "add",
                "--action",
                "suspend_access",
                "--email",
                "a@example.com",
                "--account-id",
                &id,
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{id:?}: {}", text(&out.stderr));
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("invalid account_id") && stderr.contains(why),
            "{stderr}"
        );
    }
    assert!(store.list_jobs(&all()).await.unwrap().is_empty());
}

both_stores!(
    the_cli_refuses_ids_that_are_not_plain_on,
    the_cli_refuses_ids_that_are_not_plain
);

async fn a_key_reused_for_another_body_is_refused(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let first = json!({ "jobs": [entry("suspend_access", "ann@example.com")] });
    let (status, answer) = post_jobs(&app, Some("key-1"), &first).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");

    // The same key and body: a repeat.
    let (status, again) = post_jobs(&app, Some("key-1"), &first).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["jobs"], answer["jobs"]);

    // The same key with another body: refused, nothing enqueued, every time.
    let other = json!({ "jobs": [entry("suspend_access", "bob@example.com")] });
    for _ in 0..2 {
        let (status, error) = post_jobs(&app, Some("key-1"), &other).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{error}");
        assert_eq!(error["error"], "idempotency_key_reused", "{error}");
        assert!(
            error["message"]
                .as_str()
                .unwrap()
                .contains("nothing was enqueued")
        );
    }
    let jobs = all_jobs(&app).await;
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].email, "ann@example.com");

    // The first body is still a repeat, and another key takes the other body.
    let (status, _) = post_jobs(&app, Some("key-1"), &first).await;
    assert_eq!(status, StatusCode::OK);
    let (status, created) = post_jobs(&app, Some("key-2"), &other).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{created}");
    assert_eq!(all_jobs(&app).await.len(), 2);
    app.stop().await;
}

both_stores!(
    a_key_reused_for_another_body_is_refused_on,
    a_key_reused_for_another_body_is_refused
);

/// A manual job is `bulk` unless its request names a lane; a webhook's job due now is
/// `urgent` (README, "Lanes"). An unknown lane is a 400.
async fn a_manual_job_is_bulk_unless_it_names_its_lane(db: TestDb) {
    let app = TestApp::spawn(&db, CONFIG).await;
    let mut urgent = entry("delete_portal_customer", "urgent@example.com");
    urgent["lane"] = json!("urgent");
    let body = json!({ "jobs": [entry("delete_portal_customer", "bulk@example.com"), urgent] });
    let (status, answer) = post_jobs(&app, None, &body).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let lanes: Vec<&str> = answer["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["lane"].as_str().unwrap())
        .collect();
    assert_eq!(lanes, ["bulk", "urgent"], "{answer}");
    let webhook = app
        .deliver("hr", &json!({ "people": ["now@example.com"] }))
        .await;
    assert_eq!(webhook["jobs"][0]["lane"], "urgent", "{webhook}");
    let mut wrong = entry("delete_portal_customer", "x@example.com");
    wrong["lane"] = json!("asap");
    let (status, refused) = post_jobs(&app, None, &json!({ "jobs": [wrong] })).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("asap") && message.contains("urgent"),
        "{refused}"
    );
    app.stop().await;
}
both_stores!(
    a_manual_job_is_bulk_unless_it_names_its_lane_on,
    a_manual_job_is_bulk_unless_it_names_its_lane
);
