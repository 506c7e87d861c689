//! A person's case and the time-to-revoke report (README, "Proof for auditors") over a real
//! port on both stores: the case's fields for a live chain and for a dry-run one, the
//! People list's filters and pages, 404, the CLI, and the report's CSV.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml, job_ids};
use crate::support::db::{Backend, TestDb};
use crate::support::fake_atlassian::FakeAtlassian;
use offboard::serve::Role;
use offboard::worker::verification;

const SOURCE: &str = r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["people-token-7c1d"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["revoke_portal_access", "delete_portal_customer"]
"#;

async fn get(app: &TestApp, path: &str) -> (StatusCode, Value) {
    let response = app.admin(Method::GET, path).send().await.expect("GET");
    let status = response.status();
    (status, response.json().await.expect("JSON"))
}

fn time(value: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(value.as_str().unwrap_or_else(|| panic!("a time: {value}")))
        .unwrap()
        .with_timezone(&Utc)
}

/// A live chain: named by one delivery, access removed by its first step, within the SLA.
async fn a_live_chain_makes_a_case(db: TestDb) {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "leaver@example.com");
    let toml = format!("dry_run = false\n{}{SOURCE}", atlassian_toml(&fake));
    let app = TestApp::spawn(&db, &toml).await;
    let answer = app
        .deliver("hr", &json!({ "email": "Leaver@Example.com" }))
        .await;
    let ids = job_ids(&answer);
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(app.wait_final(id, Duration::from_secs(20)).await);
    }
    let (status, case) = get(&app, "/api/v1/people/LEAVER@example.com").await;
    assert_eq!(status, StatusCode::OK, "{case}");
    let keys: Vec<&str> = case
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "email",
        "first_seen",
        "effective_at",
        "access_removed_at",
        "verified_at",
        "verified_state",
        "sla",
        "reactivated_at",
        "jobs",
        "deliveries",
    ] {
        assert!(keys.contains(&key), "{key} missing from {case}");
    }
    assert_eq!(case["email"], "leaver@example.com");
    let (_, deliveries) = get(&app, "/api/v1/deliveries").await;
    let delivery = &deliveries["deliveries"][0];
    assert_eq!(time(&case["first_seen"]), time(&delivery["received_at"]));
    assert_eq!(case["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(
        case["deliveries"][0]["delivery_id"],
        delivery["delivery_id"]
    );
    let first_run = jobs.iter().map(|j| j.job.run_at).min().unwrap();
    assert_eq!(
        time(&case["effective_at"]).timestamp_millis(),
        first_run.timestamp_millis()
    );
    // Access went when the revoke (the first removing step) succeeded.
    let revoked = jobs[0]
        .events
        .iter()
        .find(|e| e.to == offboard::domain::JobState::Succeeded)
        .unwrap()
        .at;
    let removed = time(&case["access_removed_at"]);
    assert!(
        (removed - revoked).num_milliseconds().abs() < 1000,
        "{removed} vs {revoked}"
    );
    assert_eq!(case["sla"], json!({ "target": "1d", "met": true }));
    let took =
        offboard::evidence::people::time_to_revoke_of(app.store.as_ref(), "leaver@example.com")
            .await
            .unwrap()
            .expect("access is removed");
    let start = time(&case["first_seen"]).max(time(&case["effective_at"]));
    // The JSON's times are whole milliseconds.
    let shown = (removed - start).num_milliseconds().max(0);
    assert!(
        (took.num_milliseconds() - shown).abs() <= 1,
        "{took} vs {shown} ms"
    );
    // Jobs in the API's job shape, with their events.
    let listed = case["jobs"].as_array().unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["id"], ids[0].as_str());
    assert_eq!(listed[0]["outcome"], "done");
    assert!(listed[0]["events"].as_array().unwrap().len() >= 3);
    // The worker's verification read (run here by hand rather than waited for) shows in
    // the case, and so does the recheck a day later that finds the customer back.
    let client = offboard::atlassian::Client::from_config(
        app.config.atlassian.as_ref().expect("[atlassian]"),
        app.config.worker.requests_per_second,
    )
    .expect("client");
    let store = app.store.as_ref();
    verification::pass(store, &client, &app.config, "test", Utc::now(), None)
        .await
        .expect("verification pass");
    let (_, case) = get(&app, "/api/v1/people/leaver@example.com").await;
    assert_eq!(case["verified_state"], "verified", "{case}");
    assert!(time(&case["verified_at"]) >= removed);
    assert_eq!(case["reactivated_at"], Value::Null);
    fake.add_customer("qm:1", "leaver@example.com");
    let later = Utc::now() + chrono::Duration::hours(25);
    verification::pass(store, &client, &app.config, "test", later, None)
        .await
        .expect("recheck pass");
    let (_, case) = get(&app, "/api/v1/people/leaver@example.com").await;
    assert!(case["reactivated_at"].is_string(), "{case}");
    let (_, reactivated) = get(&app, "/api/v1/people?reactivated=true").await;
    assert_eq!(reactivated["people"][0]["email"], "leaver@example.com");

    // Unknown: 404 with the error body.
    let (status, body) = get(&app, "/api/v1/people/nobody@example.com").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not_found");
    assert!(body["message"].is_string());
    app.stop().await;
}
both_stores!(a_live_chain_makes_a_case_on, a_live_chain_makes_a_case);

/// A dry-run chain removes no access: it has no access_removed_at, and once its deadline
/// passed it is a missed SLA, in the list and in the report.
async fn a_dry_run_chain_misses_its_sla(db: TestDb) {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "dry@example.com");
    let toml = format!(
        "{}\n[evidence]\nsla = \"1s\"\n{SOURCE}",
        atlassian_toml(&fake)
    );
    let app = TestApp::spawn(&db, &toml).await;
    let answer = app
        .deliver("hr", &json!({ "email": "dry@example.com" }))
        .await;
    for id in job_ids(&answer) {
        let job = app.wait_final(&id, Duration::from_secs(20)).await;
        assert_eq!(job.job.outcome, Some(offboard::domain::Outcome::DryRun));
    }
    let (_, case) = get(&app, "/api/v1/people/dry@example.com").await;
    assert_eq!(case["access_removed_at"], Value::Null, "{case}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, case) = get(&app, "/api/v1/people/dry@example.com").await;
    assert_eq!(case["sla"], json!({ "target": "1s", "met": false }));
    let (status, page) = get(&app, "/api/v1/people?sla=missed").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["people"][0]["email"], "dry@example.com");
    let (_, met) = get(&app, "/api/v1/people?sla=met").await;
    assert_eq!(met["people"], json!([]));
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let path = format!("/api/v1/evidence/report?from={today}&to={today}&format=csv");
    let response = app.admin(Method::GET, &path).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"offboard-evidence-")
    );
    let text = response.text().await.unwrap();
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header = reader.headers().unwrap().clone();
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 1, "{text}");
    let cell = |name: &str| {
        let i = header.iter().position(|h| h == name).unwrap();
        rows[0][i].to_owned()
    };
    assert_eq!(cell("email"), "dry@example.com");
    assert_eq!(cell("sla"), "missed");
    assert_eq!(cell("access_removed_at"), "");
    assert_eq!(
        cell("jobs"),
        "revoke_portal_access=dry_run; delete_portal_customer=dry_run"
    );
    // The report states the audit trail's chain head it was made at.
    offboard::evidence::seal_all(app.store.chain())
        .await
        .unwrap();
    let head = app
        .store
        .chain_head()
        .await
        .unwrap()
        .expect("sealed events");
    let (_, report) = get(
        &app,
        &format!("/api/v1/evidence/report?from={today}&to={today}"),
    )
    .await;
    let stated = report["chain_head"].as_str().expect("a chain head");
    let (seq, sha) = stated.split_once(':').expect("chain_seq:sha256");
    assert!(seq.parse::<i64>().unwrap() >= head.chain_seq, "{stated}");
    assert_eq!(sha.len(), 64, "{stated}");
    assert_eq!(report["cases"][0]["sla"]["met"], false);
    assert_eq!(report["cases"][0]["jobs"][0]["outcome"], "dry_run");
    app.stop().await;
}
both_stores!(
    a_dry_run_chain_misses_its_sla_on,
    a_dry_run_chain_misses_its_sla
);

/// Runs one statement on the test's database, with the backend's way of writing a time.
async fn execute(db: &TestDb, sql: &str, at: DateTime<Utc>, text: &str) {
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(sql)
                .bind(at.timestamp_micros())
                .bind(text)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(sql)
                .bind(at)
                .bind(text)
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
        }
    }
}

/// Records a verification of the person's first job, as the worker would.
async fn verify(db: &TestDb, email: &str, state: &str, reactivated: bool) {
    let sql = format!(
        "INSERT INTO verifications (email, job_id, verified_at, state, seen, reactivated_at) \
         SELECT email, min(id), $1, '{state}', 'customer status=active', {} \
         FROM jobs WHERE email = $2 GROUP BY email",
        if reactivated { "$1" } else { "NULL" }
    );
    execute(db, &sql, Utc::now(), email).await;
}

/// Moves a person's case `days` back, as if named then.
async fn backdate(db: &TestDb, email: &str, days: i64) {
    let at = Utc::now() - chrono::Duration::days(days);
    execute(
        db,
        "UPDATE people SET first_seen = $1, effective_at = $1 WHERE email = $2",
        at,
        email,
    )
    .await;
}

async fn list_filters_and_pages(db: TestDb) {
    let app = TestApp::spawn_with_role(&db, SOURCE, Role::Api).await;
    let emails: Vec<String> = (0..7).map(|i| format!("p{i}@example.com")).collect();
    for email in &emails {
        app.deliver("hr", &json!({ "email": email })).await;
    }
    // Two missed (named three days ago, still not removed), one failed verification, one
    // reactivated; the rest open.
    backdate(&db, "p1@example.com", 3).await;
    backdate(&db, "p4@example.com", 4).await;
    verify(&db, "p2@example.com", "verification_failed", false).await;
    verify(&db, "p3@example.com", "verified", true).await;
    verify(&db, "p5@example.com", "verification_failed", false).await;
    // The newest verification counts: p5's second one passed.
    let sql = "INSERT INTO verifications (email, job_id, verified_at, state, seen) \
               SELECT email, max(id), $1, 'verified', 'customer deleted (404)' \
               FROM jobs WHERE email = $2 GROUP BY email";
    execute(&db, sql, Utc::now(), "p5@example.com").await;

    let emails_of = |page: &Value| -> Vec<String> {
        page["people"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["email"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, missed) = get(&app, "/api/v1/people?sla=missed").await;
    assert_eq!(emails_of(&missed), ["p4@example.com", "p1@example.com"]);
    assert_eq!(missed["next_after"], Value::Null);
    let (_, failed) = get(&app, "/api/v1/people?verification=failed").await;
    assert_eq!(emails_of(&failed), ["p2@example.com"]);
    assert_eq!(failed["people"][0]["verified_state"], "verification_failed");
    let (_, reactivated) = get(&app, "/api/v1/people?reactivated=true").await;
    assert_eq!(emails_of(&reactivated), ["p3@example.com"]);
    assert!(reactivated["people"][0]["reactivated_at"].is_string());
    let (_, open) = get(&app, "/api/v1/people?limit=500").await;
    assert_eq!(open["people"].as_array().unwrap().len(), 7);
    assert!(
        open["people"]
            .as_array()
            .unwrap()
            .iter()
            .filter(
                |p| !["p1@example.com", "p4@example.com"].contains(&p["email"].as_str().unwrap())
            )
            .all(|p| p["sla"]["met"].is_null())
    );

    // Pages of two walk every case once, oldest first seen first.
    let mut walked = Vec::new();
    let mut path = "/api/v1/people?limit=2".to_owned();
    loop {
        let (status, page) = get(&app, &path).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        walked.extend(emails_of(&page));
        match page["next_after"].as_str() {
            Some(after) => path = format!("/api/v1/people?limit=2&after={after}"),
            None => break,
        }
    }
    let mut expected = vec!["p4@example.com".to_owned(), "p1@example.com".to_owned()];
    expected.extend(
        emails
            .iter()
            .filter(|e| !["p1@example.com", "p4@example.com"].contains(&e.as_str()))
            .cloned(),
    );
    assert_eq!(walked, expected);

    // first_seen within a range: the backdated two are outside today.
    let today = Utc::now().format("%Y-%m-%d").to_string();
    let (_, today_only) = get(&app, &format!("/api/v1/people?from={today}&to={today}")).await;
    assert_eq!(today_only["people"].as_array().unwrap().len(), 5);
    let (_, before) = get(
        &app,
        &format!("/api/v1/people?to={}", {
            (Utc::now() - chrono::Duration::days(2)).format("%Y-%m-%d")
        }),
    )
    .await;
    assert_eq!(emails_of(&before), ["p4@example.com", "p1@example.com"]);

    for bad in [
        "sla=late",
        "verification=ok",
        "reactivated=yes",
        "from=yesterday",
        "limit=many",
        "after=nonsense",
    ] {
        let (status, body) = get(&app, &format!("/api/v1/people?{bad}")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {body}");
        assert_eq!(body["error"], "bad_request");
        assert!(body["message"].is_string());
    }
    let response = app
        .http
        .get(format!("{}/api/v1/people", app.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    app.stop().await;
}
both_stores!(list_filters_and_pages_on, list_filters_and_pages);

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

/// `people show` prints the API's case; `evidence report --csv` neutralises hostile emails.
async fn the_cli_shows_a_case_and_writes_a_harmless_report(db: TestDb) {
    let app = TestApp::spawn_with_role(&db, SOURCE, Role::Api).await;
    let hostile = [
        "=1+2@example.com",
        "+sum@example.com",
        "-cmd@example.com",
        "ok@example.com",
    ];
    for email in hostile {
        app.deliver("hr", &json!({ "email": email })).await;
    }
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("offboard.toml");
    std::fs::write(&config, format!("database_url = \"{}\"\n{SOURCE}", db.url)).unwrap();

    let out = offboard(&config, &["people", "show", "OK@example.com", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (_, served) = get(&app, "/api/v1/people/ok@example.com").await;
    assert_eq!(printed, served);

    let out = offboard(&config, &["people", "show", "ok@example.com"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("first_seen"), "{text}");
    assert!(text.contains("timeline:"), "{text}");
    assert!(
        text.contains("revoke_portal_access: new → pending"),
        "{text}"
    );

    let out = offboard(&config, &["people", "show", "nobody@example.com"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no case for nobody@example.com"));

    let today = Utc::now().format("%Y-%m-%d").to_string();
    let out = offboard(
        &config,
        &[
            "evidence", "report", "--from", &today, "--to", &today, "--csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_reader(&out.stdout[..]);
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), hostile.len());
    let mut emails: Vec<&str> = rows
        .iter()
        .map(|row| offboard::cell::from_csv(&row[0]))
        .collect();
    emails.sort_unstable();
    let mut expected = hostile.to_vec();
    expected.sort_unstable();
    assert_eq!(emails, expected);
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would run: {cell}"
            );
        }
    }

    let out = offboard(
        &config,
        &[
            "evidence", "report", "--from", &today, "--to", &today, "--json",
        ],
    );
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["cases"].as_array().unwrap().len(), hostile.len());
    assert!(report.get("chain_head").is_some(), "{report}");

    let out = offboard(
        &config,
        &["evidence", "report", "--from", "tomorrow", "--to", &today],
    );
    assert_eq!(out.status.code(), Some(2));
    app.stop().await;
}
both_stores!(
    the_cli_shows_a_case_and_writes_a_harmless_report_on,
    the_cli_shows_a_case_and_writes_a_harmless_report
);

/// The `people` row is written where jobs are recorded: a repeated delivery moves nothing, a
/// later request planned earlier moves `effective_at` only, and a bulk request (recorded in
/// two chunks on SQLite) names every one of its people.
async fn acceptance_records_people(db: TestDb) {
    let app = TestApp::spawn_with_role(&db, SOURCE, Role::Api).await;
    let body = json!({ "email": "kim@example.com" });
    app.deliver("hr", &body).await;
    let (_, first) = get(&app, "/api/v1/people/kim@example.com").await;
    let again = app.deliver("hr", &body).await;
    assert_eq!(again["duplicate"], true, "{again}");
    let (_, same) = get(&app, "/api/v1/people/kim@example.com").await;
    assert_eq!(same["first_seen"], first["first_seen"]);
    assert_eq!(same["effective_at"], first["effective_at"]);

    let manual = json!({ "jobs": [{
        "action": "deactivate_account",
        "email": "kim@example.com",
        "at": "2026-01-01T00:00:00Z",
    }]});
    let response = app
        .admin(Method::POST, "/api/v1/jobs")
        .json(&manual)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (_, moved) = get(&app, "/api/v1/people/kim@example.com").await;
    assert_eq!(moved["first_seen"], first["first_seen"]);
    assert_eq!(moved["effective_at"], "2026-01-01T00:00:00.000Z");
    assert_eq!(moved["jobs"].as_array().unwrap().len(), 3);
    assert_eq!(moved["deliveries"].as_array().unwrap().len(), 2);

    let many: Vec<Value> = (0..250)
        .map(|i| json!({ "action": "delete_portal_customer", "email": format!("bulk{i}@example.com") }))
        .collect();
    let response = app
        .admin(Method::POST, "/api/v1/jobs")
        .json(&json!({ "jobs": many }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let (_, all) = get(&app, "/api/v1/people?limit=500").await;
    assert_eq!(all["people"].as_array().unwrap().len(), 251, "{all}");
    app.stop().await;
}
both_stores!(acceptance_records_people_on, acceptance_records_people);
