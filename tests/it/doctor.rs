//! `offboard doctor`, `GET /api/v1/doctor` and the check at start, against the fake Atlassian:
//! one line per check, the exit codes, the JSON, read-only, and a failing doctor in the
//! console's header.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::app::{ADMIN_TOKEN, TestApp, atlassian_toml};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{FakeAccount, FakeAtlassian, Fault, FaultKind, Matcher};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use serde_json::{Value, json};

/// Rules that name one group, one service desk and one organization.
const RULES: &str = r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["doctor-test-token-1"]
  [[sources.rules]]
  name = "staff"
  when = { "/kind" = "staff" }
  email = "/email"
  actions = ["suspend_access", { action = "remove_from_group", group_id = "g-1" }]

  [[sources.rules]]
  name = "customer"
  when = { "/kind" = "customer" }
  email = "/email"
  actions = [
    { action = "remove_from_service_desk", service_desk_id = "10" },
    { action = "remove_from_customer_organization", organization_id = "3" },
    "delete_portal_customer",
  ]
"#;

/// A fake where everything the rules name exists.
async fn healthy_fake() -> FakeAtlassian {
    let fake = FakeAtlassian::start().await;
    fake.add_group("g-1");
    fake.add_account(FakeAccount {
        service_desks: ["10".to_owned()].into(),
        organizations: ["3".to_owned()].into(),
        ..FakeAccount::customer("qm:1", "c@example.com")
    });
    fake
}

fn write_config(dir: &Path, text: &str) -> std::path::PathBuf {
    let path = dir.join("offboard.toml");
    let db = dir.join("offboard.db");
    let full = format!("database_url = \"sqlite://{}\"\n{text}", db.display());
    std::fs::write(&path, full).expect("write config");
    path
}

fn doctor(config: &Path, json: bool) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_offboard"));
    command.arg("doctor").arg("--config").arg(config);
    if json {
        command.arg("--json");
    }
    command
        .env_remove("DATABASE_URL")
        .env_remove("OFFBOARD_CONFIG")
        .output()
        .expect("run offboard doctor")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_check_passes_against_a_healthy_site() {
    let fake = healthy_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("{}\n{RULES}", atlassian_toml(&fake)));
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "PASS site_credentials\nPASS site_browse_users\nPASS service_desk:10\n\
         PASS organization:3\nPASS admin_credentials\nPASS directory\nPASS group:g-1\n"
    );
    // Read-only: nothing but reads reached Atlassian.
    assert!(
        fake.mutating_requests().is_empty(),
        "{:#?}",
        fake.mutating_requests()
    );
    let paths: Vec<String> = fake.requests().iter().map(|r| r.path.clone()).collect();
    assert!(
        paths.contains(&"/rest/api/3/myself".to_owned()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"/rest/api/3/mypermissions".to_owned()),
        "{paths:?}"
    );

    let out = doctor(&config, true);
    assert_eq!(out.status.code(), Some(0));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], json!(true));
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 7);
    for check in checks {
        let keys: Vec<&String> = check.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["detail", "name", "ok"], "{check}");
        assert_eq!(check["ok"], json!(true), "{check}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_name_the_check_the_reason_and_the_fix() {
    let fake = healthy_fake().await;
    fake.set_browse_users(false);
    let dir = tempfile::tempdir().unwrap();
    let rules = RULES
        .replace("group_id = \"g-1\"", "group_id = \"g-typo\"")
        .replace("service_desk_id = \"10\"", "service_desk_id = \"11\"");
    let atlassian =
        atlassian_toml(&fake).replace("directory_id = \"dir-1\"", "directory_id = \"dir-x\"");
    let config = write_config(dir.path(), &format!("{atlassian}\n{rules}"));
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 7, "{stdout}");
    assert_eq!(lines[0], "PASS site_credentials");
    for (check, reason) in [
        ("site_browse_users", "Browse users and groups"),
        ("service_desk:11", "no service desk has this id"),
        (
            "directory",
            "dir-x is not a directory of the org (it has: dir-1",
        ),
        ("group:g-typo", "no group has this id"),
    ] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("FAIL {check}: ")))
            .unwrap_or_else(|| panic!("no FAIL line for {check}: {stdout}"));
        assert!(line.contains(reason) && line.contains(" — "), "{line}");
    }
    assert!(
        text(&out.stderr).contains("4 of 7 checks failed"),
        "{}",
        text(&out.stderr)
    );
    assert!(fake.mutating_requests().is_empty());

    let out = doctor(&config, true);
    assert_eq!(out.status.code(), Some(1));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(report["ok"], json!(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_fail_first_and_skip_what_depends_on_them() {
    let fake = healthy_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let atlassian = atlassian_toml(&fake)
        .replace(
            "site_api_token = \"site-token\"",
            "site_api_token = \"wrong-token\"",
        )
        .replace(
            "admin_api_key = \"admin-key\"",
            "admin_api_key = \"wrong-key\"",
        );
    let config = write_config(dir.path(), &format!("{atlassian}\n{RULES}"));
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(
            "FAIL site_credentials: Atlassian rejected the site credentials (HTTP 401) — "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "FAIL admin_credentials: Atlassian rejected the admin credentials (HTTP 401) — "
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("FAIL group:g-1: not checked: the admin credentials failed"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("wrong-token") && !stdout.contains("wrong-key"),
        "{stdout}"
    );
    // One request per family: nothing more is tried with credentials that failed.
    assert_eq!(fake.requests().len(), 2, "{:#?}", fake.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_families_the_rules_use_are_checked() {
    let fake = healthy_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let rules = r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["doctor-test-token-1"]
  [[sources.rules]]
  name = "customer"
  email = "/email"
  actions = ["revoke_portal_access"]
"#;
    // No admin credentials at all, and none needed.
    let site_only: String = atlassian_toml(&fake)
        .lines()
        .filter(|l| {
            !l.starts_with("admin") && !l.starts_with("org_id") && !l.starts_with("directory_id")
        })
        .map(|l| format!("{l}\n"))
        .collect();
    let config = write_config(dir.path(), &format!("{site_only}\n{rules}"));
    let out = doctor(&config, false);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        text(&out.stdout),
        "PASS site_credentials\nPASS site_browse_users\n"
    );

    // A managed action without admin credentials is already a configuration error.
    let config = write_config(
        dir.path(),
        &format!(
            "{site_only}\n{}",
            rules.replace("revoke_portal_access", "suspend_access")
        ),
    );
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(out.stdout.is_empty());
}

/// One rule of managed-account actions only.
fn managed_rules(actions: &str) -> String {
    format!(
        r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["doctor-test-token-1"]
  [[sources.rules]]
  name = "staff"
  email = "/email"
  actions = {actions}
"#
    )
}

/// `-` (all directories) is for reads only: with a rule that writes to the directory the
/// `directory` check fails, lists the org's directories and says how to fix it (where
/// `check` refuses the configuration); with rules that only read it passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn all_directories_fails_only_where_the_rules_write_to_the_directory() {
    let fake = healthy_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let atlassian =
        atlassian_toml(&fake).replace("directory_id = \"dir-1\"", "directory_id = \"-\"");
    let config = write_config(
        dir.path(),
        &format!(
            "{atlassian}\n{}",
            managed_rules(r#"["suspend_access", "delete_account"]"#)
        ),
    );
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", text(&out.stderr));
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL directory: "))
        .unwrap_or_else(|| panic!("no FAIL line for the directory: {stdout}"));
    for needle in [
        "`-` (all directories) is documented for reads only",
        "(suspend_access)",
        "the org's directories: dir-1",
        " — set directory_id to",
    ] {
        assert!(line.contains(needle), "{needle:?} in {line}");
    }
    assert!(stdout.contains("PASS admin_credentials"), "{stdout}");
    assert!(fake.mutating_requests().is_empty());

    let config = write_config(
        dir.path(),
        &format!(
            "{atlassian}\n{}",
            managed_rules(r#"["deactivate_account", "delete_account"]"#)
        ),
    );
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    // delete_account counts the leaver's filters and dashboards with the site credentials
    // first (README, "No silent loss").
    assert_eq!(
        text(&out.stdout),
        "PASS site_credentials\nPASS site_browse_users\nPASS owned_content\n\
         PASS admin_credentials\nPASS directory\n"
    );

    // A deletion that may take the content along needs no site user.
    let config = write_config(
        dir.path(),
        &format!(
            "{atlassian}\n{}",
            managed_rules(
                r#"["deactivate_account", { action = "delete_account", allow_content_loss = true }]"#
            )
        ),
    );
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert_eq!(
        text(&out.stdout),
        "PASS admin_credentials\nPASS directory\n"
    );
}

/// Without a JSM agent licence every service desk API call answers 403 with an empty body:
/// the desk and organization checks say so and how to fix it. A 403 with a body keeps its
/// own reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_user_without_a_jsm_agent_licence_fails_the_desk_checks() {
    let fake = healthy_fake().await;
    fake.set_jsm_agent_licence(false);
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &format!("{}\n{RULES}", atlassian_toml(&fake)));
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("PASS site_credentials\n"), "{stdout}");
    assert!(stdout.contains("PASS site_browse_users\n"), "{stdout}");
    for check in ["service_desk:10", "organization:3"] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("FAIL {check}: ")))
            .unwrap_or_else(|| panic!("no FAIL line for {check}: {stdout}"));
        assert!(
            line.contains(
                "the site user needs a Jira Service Management agent licence (every service \
                 desk API call answers HTTP 403 with an empty body) — give site_email a Jira \
                 Service Management agent licence"
            ),
            "{line}"
        );
    }
    assert!(fake.mutating_requests().is_empty());

    fake.set_jsm_agent_licence(true);
    fake.inject(Fault::once(
        Matcher::PathContains("/servicedesk/10".into()),
        FaultKind::Status403 {
            body: r#"{"errorMessage":"You are not an agent on this desk"}"#.into(),
        },
    ));
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL service_desk:10: "))
        .unwrap_or_else(|| panic!("no FAIL line for the desk: {stdout}"));
    assert!(
        line.contains("HTTP 403") && line.contains("You are not an agent on this desk"),
        "{line}"
    );
    assert!(!line.contains("licence"), "{line}");
    assert!(stdout.contains("PASS organization:3\n"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "[atlassian]\nsite_urll = \"x\"\n");
    let out = doctor(&config, false);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("site_urll"),
        "{}",
        text(&out.stderr)
    );
}

async fn console_page(http: &reqwest::Client, app: &TestApp, cookie: &str) -> String {
    let response = http
        .get(format!("{}/console", app.base_url))
        .header(COOKIE, cookie)
        .send()
        .await
        .unwrap();
    response.text().await.unwrap()
}

/// Live, `serve` runs the checks at start; the console's header shows a failing doctor, and
/// `GET /api/v1/doctor` answers 200 with the same JSON whether or not they pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_checks_at_start_and_the_console_shows_a_failing_doctor() {
    offboard::install_tls_provider();
    let fake = healthy_fake().await;
    let db = TestDb::sqlite();
    let rules = RULES.replace("group_id = \"g-1\"", "group_id = \"g-typo\"");
    let toml = format!("dry_run = false\n{}\n{rules}", atlassian_toml(&fake));
    let app = TestApp::spawn(&db, &toml).await;

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login = http
        .post(format!("{}/console/login", app.base_url))
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), StatusCode::SEE_OTHER);
    assert!(login.headers().get(LOCATION).is_some());
    let cookie = login.headers()[SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let page = console_page(&http, &app, &cookie).await;
    assert!(page.contains("Doctor: 1 failing"), "{page}");
    assert!(page.contains("group:g-typo"), "{page}");

    let unauthorized = http
        .get(format!("{}/api/v1/doctor", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), StatusCode::UNAUTHORIZED);
    fake.add_group("g-typo");
    let answer = http
        .get(format!("{}/api/v1/doctor", app.base_url))
        .bearer_auth(ADMIN_TOKEN)
        .timeout(Duration::from_secs(20))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let report: Value = answer.json().await.unwrap();
    assert_eq!(report["ok"], json!(true), "{report}");
    assert_eq!(report["checks"].as_array().unwrap().len(), 7);
    // The latest report is what the header shows: fixed now.
    let page = console_page(&http, &app, &cookie).await;
    assert!(!page.contains("Doctor:"), "{page}");
    app.stop().await;
}

/// A site user who may not search other people's filters (no *Administer Jira* for
/// `overrideSharePermissions`) fails the `owned_content` check, with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_content_fails_when_the_site_user_may_not_search_filters() {
    let fake = healthy_fake().await;
    fake.inject(Fault::once(
        Matcher::PathContains("/filter/search".into()),
        FaultKind::Status403 {
            body: r#"{"errorMessages":["You do not have permission"]}"#.into(),
        },
    ));
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(
        dir.path(),
        &format!(
            "{}\n{}",
            atlassian_toml(&fake),
            managed_rules(r#"["delete_account"]"#)
        ),
    );
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL owned_content: "))
        .unwrap_or_else(|| panic!("no FAIL line: {stdout}"));
    assert!(
        line.contains("Administer Jira") && line.contains("allow_content_loss"),
        "{line}"
    );
}

/// Where the rules hand over, the doctor checks that the site user can find each kind of
/// item: filters and dashboards, issues, the projects it administers, and automation rules.
/// A site user who administers no project fails `handover:project`, with the permission.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_over_checks_name_what_the_site_user_needs() {
    let fake = healthy_fake().await;
    let dir = tempfile::tempdir().unwrap();
    let actions = r#"["transfer_filters", "transfer_dashboards", "reassign_open_issues",
                      "transfer_project_leads", "report_automation_rules", "suspend_access"]"#;
    let toml = format!(
        "{}\n[handover]\nfallback_successor = \"boss@example.com\"\n{}",
        atlassian_toml(&fake),
        managed_rules(actions)
    );
    let config = write_config(dir.path(), &toml);
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for kind in ["filter", "dashboard", "issue", "rule"] {
        assert!(
            stdout.lines().any(|l| l == format!("PASS handover:{kind}")),
            "handover:{kind}: {stdout}"
        );
    }
    let line = stdout
        .lines()
        .find(|l| l.starts_with("FAIL handover:project: "))
        .unwrap_or_else(|| panic!("no FAIL line: {stdout}"));
    assert!(line.contains("Administer projects"), "{line}");
    // Once it administers one, the check passes.
    fake.add_project("OPS", "30001", "acc-someone");
    let out = doctor(&config, false);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.method != "GET" && !r.path.ends_with("/search/jql")),
        "the doctor only reads"
    );
}
