//! The command line as an operator uses it (README, "Command line"): the jobs commands and their exit
//! codes, and `serve` writing JSON logs that never carry a secret.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use crate::support::app::{TestApp, job_ids};
use crate::support::db::TestDb;
use offboard::serve::Role;
use serde_json::{Value, json};

const SECRET: &str = "cli-secret-token-3f9a";

fn source_toml() -> String {
    format!(
        r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["{SECRET}"]
  [[sources.rules]]
  name = "needs-approval"
  email = "/email"
  approval = true
  actions = ["delete_portal_customer"]
"#
    )
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_commands_move_jobs_and_exit_with_the_documented_codes() {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_role(&db, &source_toml(), Role::Api).await;
    let a = job_ids(
        &app.deliver("hr", &json!({ "email": "a@example.com" }))
            .await,
    )[0]
    .clone();
    let b = job_ids(
        &app.deliver("hr", &json!({ "email": "b@example.com" }))
            .await,
    )[0]
    .clone();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(
        &config,
        format!("database_url = \"{}\"\n{}", db.url, source_toml()),
    )
    .unwrap();

    let listed = offboard(&config, &["jobs", "list", "--json"]);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    let listed: Value = serde_json::from_slice(&listed.stdout).expect("--json prints JSON");
    let ids: Vec<&str> = listed["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [b.as_str(), a.as_str()], "newest first");

    let table = offboard(
        &config,
        &[
            "jobs",
            "list",
            "--state",
            "awaiting_approval",
            "--email",
            "A@example.com",
        ],
    );
    assert_eq!(table.status.code(), Some(0));
    let table = text(&table.stdout);
    assert!(
        table.contains("a@example.com") && !table.contains("b@example.com"),
        "{table}"
    );

    let shown = offboard(&config, &["jobs", "show", &a, "--json"]);
    let shown: Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["events"][0]["from"], Value::Null);
    assert_eq!(shown["state"], "awaiting_approval");

    let approved = offboard(&config, &["jobs", "approve", &a]);
    assert_eq!(
        approved.status.code(),
        Some(0),
        "{}",
        text(&approved.stderr)
    );
    assert!(text(&approved.stdout).contains("pending"));
    let again = offboard(&config, &["jobs", "approve", &a]);
    assert_eq!(
        again.status.code(),
        Some(1),
        "a refused transition is a runtime failure"
    );
    assert!(
        text(&again.stderr).contains("cannot approve"),
        "{}",
        text(&again.stderr)
    );

    assert_eq!(
        offboard(&config, &["jobs", "cancel", &b]).status.code(),
        Some(0)
    );
    assert_eq!(
        offboard(&config, &["jobs", "retry", &b]).status.code(),
        Some(1)
    );
    assert_eq!(
        offboard(&config, &["jobs", "show", "999999"]).status.code(),
        Some(1)
    );
    assert_eq!(
        offboard(&config, &["jobs", "show", "abc"]).status.code(),
        Some(2)
    );
    assert_eq!(
        offboard(&config, &["jobs", "list", "--state", "bogus"])
            .status
            .code(),
        Some(2)
    );

    let after = app.job(&b).await;
    let last = after.events.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), after.job.state.as_str()),
        ("cli", "cancelled")
    );

    std::fs::write(&config, "dry_rn = false\n").unwrap();
    let typo = offboard(&config, &["check"]);
    assert_eq!(typo.status.code(), Some(2));
    assert!(text(&typo.stderr).contains("dry_rn"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_logs_json_with_request_ids_and_never_a_secret() {
    offboard::install_tls_provider();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let db = dir.path().join("offboard.db");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\n{}",
            db.display(),
            source_toml()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("OFFBOARD_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start offboard serve");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut logged = Vec::new();
    let addr = loop {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("serve logs that it is listening");
        let event: Value =
            serde_json::from_str(&line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        logged.push(line);
        if event["message"] == "listening" {
            break event["addr"].as_str().expect("addr field").to_owned();
        }
    };

    let http = reqwest::Client::new();
    let url = format!("http://{addr}/hooks/hr");
    for (token, expected) in [(SECRET, 202), ("wrong-token-value", 401)] {
        let response = http
            .post(&url)
            .header("authorization", format!("Bearer {token}"))
            .header("x-request-id", "trace-cli-1")
            .body(json!({ "email": "logged@example.com" }).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), expected);
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(interrupt.unwrap().success());
    let status = child.wait().unwrap();
    assert!(status.success(), "serve exits 0 after SIGINT: {status:?}");
    reader.join().unwrap();
    logged.extend(received.try_iter());

    for line in &logged {
        serde_json::from_str::<Value>(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(
            !line.contains(SECRET),
            "a log line carries the secret: {line}"
        );
        assert!(
            !line.contains("wrong-token-value"),
            "a log line carries a token: {line}"
        );
        assert!(
            !line.contains("logged@example.com"),
            "a log line carries the raw body: {line}"
        );
    }
    let recorded = logged
        .iter()
        .find(|l| l.contains("webhook recorded"))
        .expect("the accepted delivery is logged");
    for field in ["trace-cli-1", "\"source\":\"hr\"", "delivery_id"] {
        assert!(recorded.contains(field), "{field} missing from {recorded}");
    }
    assert!(
        logged
            .iter()
            .any(|l| l.contains("rejected webhook") && l.contains("invalid_signature"))
    );
}

/// Human-readable logs written to a pipe or a file carry no ANSI colour codes: colour is for
/// a terminal, and escape bytes in a log file break grep and line-based collectors.
#[test]
fn plain_logs_to_a_pipe_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let db = dir.path().join("offboard.db");
    std::fs::write(
        &config,
        format!(
            "listen = \"127.0.0.1:0\"\ndatabase_url = \"sqlite://{}\"\n{}",
            db.display(),
            source_toml()
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("OFFBOARD_LOG_FORMAT")
        .env_remove("NO_COLOR")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start offboard serve");
    let (lines, received) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines.send(line);
        }
    });
    let mut logged = Vec::new();
    loop {
        let line = received
            .recv_timeout(Duration::from_secs(20))
            .expect("serve logs that it is listening");
        let listening = line.contains("listening");
        logged.push(line);
        if listening {
            break;
        }
    }
    let interrupt = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    assert!(interrupt.unwrap().success());
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    logged.extend(received.try_iter());

    assert!(
        logged.iter().any(|l| l.contains("INFO")),
        "the plain format names each line's level: {logged:#?}"
    );
    for line in &logged {
        assert!(!line.contains('\u{1b}'), "a colour code in {line:?}");
    }
}

/// Runs the binary as an operator would, without the environment of whoever runs the tests.
fn run(args: &[&str], config: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(args)
        .arg("--config")
        .arg(config)
        .env_remove("DATABASE_URL")
        .env_remove("OFFBOARD_CONFIG")
        .env_remove("OFFBOARD_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run offboard")
}

/// `offboard sign` names the delivery under the source's `id_header`, not under the scheme's
/// own header (Jira's `X-Atlassian-Webhook-Identifier`), which such a source never reads: the
/// service then records the id that `sign` printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_names_the_delivery_under_the_sources_id_header() {
    let source = format!(
        r#"
[[sources]]
name = "relay"
scheme = "hub-signature"
secrets = ["{SECRET}"]
id_header = "X-Relay-Delivery"
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["delete_portal_customer"]
"#
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, &source).unwrap();
    let body_path = dir.path().join("body.json");
    let body = json!({ "email": "relayed@example.com" }).to_string();
    std::fs::write(&body_path, &body).unwrap();

    let output = run(
        &["sign", "--source", "relay", body_path.to_str().unwrap()],
        &config,
    );
    let stdout = text_of(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text_of(&output.stderr));
    let headers: Vec<(String, String)> = stdout
        .lines()
        .map(|line| {
            let (name, value) = line.split_once(": ").expect("`Name: value`");
            (name.to_owned(), value.to_owned())
        })
        .collect();
    assert!(
        !stdout
            .to_ascii_lowercase()
            .contains("x-atlassian-webhook-identifier"),
        "{stdout}"
    );
    let id = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("X-Relay-Delivery"))
        .map(|(_, value)| value.clone())
        .unwrap_or_else(|| panic!("no X-Relay-Delivery line: {stdout}"));

    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, &source).await;
    let response = app.post_hook("relay", body, &headers).await;
    assert_eq!(response.status().as_u16(), 202);
    let deliveries: Value = app
        .admin(reqwest::Method::GET, "/api/v1/deliveries")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deliveries["deliveries"][0]["delivery_id"], id.as_str());
    app.stop().await;
}

/// A secret written where a list belongs, or left in an unclosed string, must not come back
/// from `check`, `serve` or `sign`; the error still points at the key or the line.
#[test]
fn config_errors_never_print_the_offending_value() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let body = dir.path().join("body.json");
    std::fs::write(&body, "{}").unwrap();
    let source = "[[sources]]\nname = \"hr\"\nscheme = \"token\"\n";
    for (text, place) in [
        (
            format!("{source}secrets = \"TOKEN-LEAK\"\n"),
            "at `sources.secrets`, line 4, column 11",
        ),
        (
            format!("{source}secrets = [\"TOKEN-LEAK]\n"),
            "invalid TOML at line 4",
        ),
        (
            format!("admin_token = \"TOKEN-LEAK-0123456789\n{source}"),
            "invalid TOML at line 1",
        ),
    ] {
        std::fs::write(&config, &text).unwrap();
        let body = body.to_str().unwrap();
        for args in [
            &["check"][..],
            &["serve"],
            &["sign", "--source", "hr", body],
        ] {
            let output = run(args, &config);
            let (stdout, stderr) = (text_of(&output.stdout), text_of(&output.stderr));
            assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
            for shown in [&stdout, &stderr] {
                assert!(!shown.contains("TOKEN-LEAK"), "{args:?} leaked: {shown}");
            }
            assert!(
                stderr.contains(place),
                "{args:?} should say {place}: {stderr}"
            );
        }
    }
}

/// `directory_id = "-"` is documented for reads only: `check` and `serve` refuse it (exit 2)
/// when a rule writes to the directory, naming the rule and `offboard doctor`; with rules
/// that only read it passes, and `jobs add` still refuses an action that writes.
#[test]
fn all_directories_is_refused_where_rules_write_to_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let write = |actions: &str| {
        let text = format!(
            r#"database_url = "sqlite://{db}"
[atlassian]
admin_api_key = "admin-key"
org_id = "org-1"
directory_id = "-"

[[sources]]
name = "hr"
scheme = "token"
secrets = ["{SECRET}"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = {actions}
"#,
            db = dir.path().join("offboard.db").display()
        );
        std::fs::write(&config, text).unwrap();
    };
    write(
        r#"["suspend_access", { action = "delete_account", after = "30d", allow_content_loss = true }]"#,
    );
    for args in [&["check"][..], &["serve"]] {
        let output = run(args, &config);
        let stderr = text_of(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        for needle in [
            "atlassian.directory_id: `-` (all directories) is documented for reads only",
            "source `hr` rule `leaver` uses suspend_access",
            "`offboard doctor` lists them",
        ] {
            assert!(stderr.contains(needle), "{args:?}: {needle:?} in {stderr}");
        }
        assert!(!stderr.contains("delete_account"), "{stderr}");
    }

    // Lifecycle calls act on the account; the directory is only searched.
    write(
        r#"["deactivate_account", { action = "delete_account", after = "30d", allow_content_loss = true }]"#,
    );
    let output = run(&["check"], &config);
    assert_eq!(output.status.code(), Some(0), "{}", text_of(&output.stderr));
    assert!(
        text_of(&output.stdout).contains("directory -"),
        "{}",
        text_of(&output.stdout)
    );
    let output = run(
        &[
            "jobs",
            "add",
            "--action",
            "suspend_access",
            "--email",
            "x@example.com",
        ],
        &config,
    );
    let stderr = text_of(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("suspend_access writes to the directory, but directory_id is `-`"),
        "{stderr}"
    );
    assert!(
        !dir.path().join("offboard.db").exists(),
        "nothing was enqueued"
    );
}

fn text_of(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn check_refuses_a_short_admin_token() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, "admin_token = \"short-token\"\n").unwrap();
    let output = run(&["check"], &config);
    let stderr = text_of(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("admin_token: must be at least 16 characters"),
        "{stderr}"
    );
    assert!(!stderr.contains("short-token"), "{stderr}");
    std::fs::write(&config, "admin_token = \"a-long-enough-token\"\n").unwrap();
    assert_eq!(run(&["check"], &config).status.code(), Some(0));
}

/// A Jira admin webhook source that undoes on rehire without checking the body's timestamp
/// loads (exit 0) with a warning on stderr naming the key; setting the pointer silences it.
#[test]
fn check_warns_about_an_undo_rule_without_timestamp_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let source = |extra: &str| {
        format!(
            r#"
[[sources]]
name = "jira"
scheme = "hub-signature"
secrets = ["{SECRET}"]
{extra}
  [[sources.rules]]
  name = "rehired"
  email = "/user/emailAddress"
  cancel = true
  undo = true
"#
        )
    };
    std::fs::write(&config, source("")).unwrap();
    let output = run(&["check"], &config);
    let stderr = text_of(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: sources[0].timestamp_pointer: source `jira` has the undo rule `rehired`"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");

    std::fs::write(&config, source("timestamp_pointer = \"/timestamp\"")).unwrap();
    let output = run(&["check"], &config);
    let stderr = text_of(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
}

/// `?password=` is a password like the userinfo one: masked in `check`, in the start-up log
/// and in the error when the store cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_password_in_the_database_url_query_is_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    let unreachable = "postgres://offboard@127.0.0.1:1/offboard?sslmode=disable&password=HUNTER2";
    std::fs::write(&config, format!("database_url = \"{unreachable}\"\n")).unwrap();
    let checked = run(&["check"], &config);
    let summary = text_of(&checked.stdout);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        text_of(&checked.stderr)
    );
    assert!(
        summary.contains(
            "store: postgres://offboard@127.0.0.1:1/offboard?sslmode=disable&password=***"
        ),
        "{summary}"
    );
    let served = run(&["serve"], &config);
    let printed = format!("{}{}", text_of(&served.stdout), text_of(&served.stderr));
    assert_eq!(served.status.code(), Some(1), "{printed}");
    assert!(printed.contains("password=***"), "{printed}");
    assert!(!printed.contains("HUNTER2"), "{printed}");

    // A store that answers: the start-up log line shows the masked URL.
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let url = format!("{}&password=HUNTER2", db.url);
    assert!(
        db.url.contains('?'),
        "the test schema is a query parameter: {}",
        db.url
    );
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:0\"\ndatabase_url = \"{url}\"\n"),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_offboard"))
        .args(["serve", "--config"])
        .arg(&config)
        .env_remove("DATABASE_URL")
        .env_remove("OFFBOARD_ADMIN_TOKEN")
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start offboard serve");
    // Only the start-up lines matter, so the process is killed once it listens; stderr is
    // read to its end, never closed while the process may still write to it.
    let mut logged = Vec::new();
    for line in BufReader::new(child.stderr.take().unwrap())
        .lines()
        .map_while(Result::ok)
    {
        if line.contains("listening") {
            child.kill().unwrap();
        }
        logged.push(line);
    }
    child.wait().unwrap();
    let logged = logged.join("\n");
    assert!(logged.contains("listening"), "{logged}");
    assert!(logged.contains("password=***"), "{logged}");
    assert!(!logged.contains("HUNTER2"), "{logged}");
}

/// What the Postgres driver does not read it would print in its own start-up warning: a
/// `?sslpassword=`, an unknown parameter with a secret-looking value, and a `#password=`
/// fragment are refused by every command before any driver sees the URL, and never printed.
#[test]
fn database_url_parts_the_driver_would_print_are_refused_unprinted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    for (url, why) in [
        (
            "postgres://offboard@127.0.0.1:1/offboard?sslmode=disable&sslpassword=HUNTER2",
            "unknown Postgres connection parameter `sslpassword`",
        ),
        (
            "postgres://offboard@127.0.0.1:1/offboard?api_key=sk_live_HUNTER2",
            "unknown Postgres connection parameter `api_key`",
        ),
        (
            "postgres://offboard@127.0.0.1:1/offboard#password=HUNTER2",
            "has a `#` fragment",
        ),
    ] {
        std::fs::write(&config, format!("database_url = \"{url}\"\n")).unwrap();
        for args in [&["check"][..], &["serve"], &["jobs", "list"], &["migrate"]] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_offboard"));
            let output = command
                .args(args)
                .arg("--config")
                .arg(&config)
                .env_remove("DATABASE_URL")
                .env_remove("OFFBOARD_CONFIG")
                .env_remove("OFFBOARD_ADMIN_TOKEN")
                .env("RUST_LOG", "trace")
                .stdin(Stdio::null())
                .output()
                .expect("run offboard");
            let printed = format!("{}{}", text_of(&output.stdout), text_of(&output.stderr));
            assert_eq!(output.status.code(), Some(2), "{args:?} {url}: {printed}");
            assert!(printed.contains(why), "{args:?} {url}: {printed}");
            assert!(!printed.contains("HUNTER2"), "{args:?}: {printed}");
        }
    }
}
