//! The console in a real browser: headless Chromium driven over WebDriver (chromedriver)
//! signs in through the form, approves one job and cancels another through the buttons and
//! confirmation pages; the admin API then confirms the states. It also leaves screenshots of
//! the pages it saw under `target/` (`console-jobs.png`: the jobs list in several states).
//! A second scenario imports a CSV (a bad file first, which creates nothing), approves the
//! jobs it created, and enqueues jobs for customers selected on the Customers page, read
//! from the fake Atlassian (`console-import-checked.png`, `console-customers.png`).
//! A third walks the People pages: the list and its filters, a person's timeline, and the
//! Evidence download (`console-people.png`, `console-people-missed.png`,
//! `console-person.png`, `console-evidence.png`).
//!
//! Needs Debian's `chromium` and `chromium-driver`; `.ci/run` installs them. Without them the
//! test prints a notice and passes, except with `CI=true`, where it fails.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::support::app::{ADMIN_TOKEN, TestApp, atlassian_toml, job_ids};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{FakeAccount, FakeAtlassian};
use fantoccini::{Client, ClientBuilder, Locator};
use offboard::domain::Outcome;
use offboard::serve::Role;
use reqwest::Method;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// Generous: a cold Chromium start on a busy two-core CI machine takes seconds.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(120);

/// No [atlassian] section: the worker idles, so jobs stay where the test puts them.
const CONFIG: &str = r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["hr-token"]

  [[sources.rules]]
  name = "manager-approval"
  when = { "/kind" = "approve" }
  email = "/email"
  approval = true
  actions = ["delete_portal_customer"]

  [[sources.rules]]
  name = "contract-ended"
  when = { "/kind" = "later" }
  email = "/email"
  delay = "3d"
  actions = ["revoke_portal_access", { action = "delete_portal_customer", after = "30d" }]

  [[sources.rules]]
  name = "immediate"
  when = { "/kind" = "now" }
  email = "/email"
  actions = ["revoke_portal_access"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_approves_and_cancels_in_a_real_browser() {
    in_a_browser(scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_imports_a_csv_and_enqueues_customers_in_a_real_browser() {
    in_a_browser(bulk_scenario).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_auditor_walks_the_people_and_downloads_the_evidence_in_a_real_browser() {
    in_a_browser(people_scenario).await;
}

/// Runs `scenario` in a fresh headless Chromium, within `SCENARIO_TIMEOUT`, and quits the
/// browser whatever happened before it reports.
async fn in_a_browser<F, Fut>(scenario: F)
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if !browser_installed() {
        return;
    }
    // Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls
    // cannot pick one by itself; every HTTP client here needs one, even for plain HTTP.
    offboard::install_tls_provider();
    let driver = ChromeDriver::start();
    let profile = tempfile::tempdir().expect("temp profile dir");
    let client = connect(&driver, profile.path()).await;
    let run = tokio::spawn(scenario(client.clone()));
    let outcome = tokio::time::timeout(SCENARIO_TIMEOUT, run).await;
    let _ = client.close().await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(failed)) => std::panic::resume_unwind(failed.into_panic()),
        Err(_) => panic!("the browser scenario took longer than {SCENARIO_TIMEOUT:?}"),
    }
}

async fn bulk_scenario(browser: Client) {
    let fake = FakeAtlassian::start().await;
    fake.add_service_desk("10");
    for (id, email) in [
        ("qm:ann", "ann@leavers.example.com"),
        ("qm:bob", "bob@leavers.example.com"),
        ("qm:cy", "cy@stays.example.com"),
    ] {
        let mut account = FakeAccount::customer(id, email);
        account.service_desks.insert("10".to_owned());
        fake.add_account(account);
    }
    let db = TestDb::sqlite();
    // API only: no worker, so approved jobs stay where the test puts them.
    let config = format!("{CONFIG}\n{}", atlassian_toml(&fake));
    let app = TestApp::spawn_with_role(&db, &config, Role::Api).await;
    sign_in(&browser, &app).await;
    let dir = tempfile::tempdir().expect("temp dir");

    // A file with a bad row: every row is shown checked, the bad one marked, nothing created.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "email,action,at\nimp1@example.com,suspend_access,2099-01-01\nnot-an-email,suspend_access,\n",
    )
    .expect("write bad.csv");
    upload(&browser, &app, &bad).await;
    let checked = browser.source().await.expect("checked page");
    assert!(checked.contains("invalid email"), "the bad row is marked");
    assert!(
        !checked.contains("/console/import/confirm"),
        "no confirm button"
    );
    save_screenshot(&browser, "console-import-bad.png").await;
    assert!(
        all_job_ids(&app).await.is_empty(),
        "a bad file creates nothing"
    );

    // A good file: checked, confirmed, created awaiting approval (the default), approved.
    let good = dir.path().join("leavers.csv");
    std::fs::write(
        &good,
        "email,action,at\nimp1@example.com,suspend_access,2099-01-01\nimp2@example.com,suspend_access,2099-01-01\n",
    )
    .expect("write leavers.csv");
    upload(&browser, &app, &good).await;
    save_screenshot(&browser, "console-import-checked.png").await;
    let gap = browser
        .execute(
            "const f = document.querySelector(\"form[action='/console/import/confirm']\"); \
             return f.querySelector('a.back').getBoundingClientRect().left \
                 - f.querySelector('button').getBoundingClientRect().right;",
            vec![],
        )
        .await
        .expect("measure the confirmation");
    assert!(
        gap.as_f64().is_some_and(|gap| gap >= 8.0),
        "the way back touches the import button: {gap}px apart"
    );
    click(
        &browser,
        "form[action='/console/import/confirm'] button[type='submit']",
    )
    .await;
    wait_for_path(&browser, "/console/import/confirm").await;
    let outcome = browser.source().await.expect("outcome page");
    assert!(
        outcome.contains("created 2, existing 0, refused 0"),
        "{outcome}"
    );
    save_screenshot(&browser, "console-import-done.png").await;
    let imported = all_job_ids(&app).await;
    assert_eq!(imported.len(), 2);
    for id in &imported {
        let job = api_job(&app, id).await;
        assert_eq!(job["state"], "awaiting_approval", "{job}");
        assert_eq!(job["source"], "console", "{job}");
        assert_eq!(job["events"][0]["actor"], "console", "{job}");
    }
    for id in &imported {
        browser
            .goto(&format!("{}/console?state=awaiting_approval", app.base_url))
            .await
            .expect("jobs awaiting approval");
        transition(&browser, &app, id, "approve").await;
        assert_state(&app, id, "pending").await;
    }

    // The Customers page: search a domain, select both, review, enqueue.
    browser
        .goto(&format!(
            "{}/console/customers?q=%40leavers.example.com",
            app.base_url
        ))
        .await
        .expect("customers page");
    let listed = browser.source().await.expect("customers page");
    assert!(listed.contains("ann@leavers.example.com"), "{listed}");
    assert!(
        !listed.contains("cy@stays.example.com"),
        "the search filters by domain"
    );
    for person in [
        "qm:ann ann@leavers.example.com",
        "qm:bob bob@leavers.example.com",
    ] {
        click(&browser, &format!("input[name='person'][value='{person}']")).await;
    }
    browser
        .find(Locator::Css("select[name='action']"))
        .await
        .expect("the action")
        .select_by_value("delete_portal_customer")
        .await
        .expect("choose the action");
    save_screenshot(&browser, "console-customers.png").await;
    click(
        &browser,
        "form[action='/console/customers/review'] button[type='submit']",
    )
    .await;
    wait_for_path(&browser, "/console/customers/review").await;
    save_screenshot(&browser, "console-customers-review.png").await;
    click(&browser, "section.confirm button[type='submit']").await;
    wait_for_path(&browser, "/console/customers/enqueue").await;
    let outcome = browser.source().await.expect("outcome page");
    assert!(
        outcome.contains("created 2, existing 0, refused 0"),
        "{outcome}"
    );
    let all = all_job_ids(&app).await;
    assert_eq!(all.len(), 4);
    for id in all.iter().filter(|id| !imported.contains(id)) {
        let job = api_job(&app, id).await;
        assert_eq!(job["state"], "awaiting_approval", "{job}");
        assert_eq!(job["action"], "delete_portal_customer", "{job}");
        assert!(
            job["account_id"].as_str().unwrap().starts_with("qm:"),
            "{job}"
        );
    }
    app.stop().await;
}

/// The Import page's form, with `file` chosen.
async fn upload(browser: &Client, app: &TestApp, file: &Path) {
    browser
        .goto(&format!("{}/console/import", app.base_url))
        .await
        .expect("import page");
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("input[type='file'][name='file']"))
        .await
        .expect("the file field")
        .send_keys(file.to_str().expect("a UTF-8 path"))
        .await
        .expect("choose the file");
    click(
        browser,
        "form[action='/console/import'] button[type='submit']",
    )
    .await;
    wait_for_path(browser, "/console/import").await;
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("table.import"))
        .await
        .expect("the checked rows");
}

async fn all_job_ids(app: &TestApp) -> Vec<String> {
    let page: Value = app
        .admin(Method::GET, "/api/v1/jobs?limit=500")
        .send()
        .await
        .expect("GET jobs")
        .json()
        .await
        .expect("JSON");
    page["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|job| job["id"].as_str().expect("id").to_owned())
        .collect()
}

fn browser_installed() -> bool {
    let missing: Vec<&str> = [CHROMIUM, CHROMEDRIVER]
        .into_iter()
        .filter(|path| !Path::new(path).exists())
        .collect();
    if missing.is_empty() {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but {missing:?} is missing: the browser test must run in CI");
    }
    // Written past the test harness's capture so the skip is visible.
    let _ = writeln!(
        std::io::stderr(),
        "notice: {missing:?} not found (apt-get install chromium chromium-driver); skipping the console browser test"
    );
    false
}

/// chromedriver on a free port, ended when dropped.
struct ChromeDriver {
    child: Child,
    url: String,
}

impl ChromeDriver {
    fn start() -> ChromeDriver {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        ChromeDriver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let status = http.get(format!("{}/status", self.url)).send().await;
            if status.is_ok_and(|r| r.status().is_success()) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chromedriver did not answer on {}",
                self.url
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn connect(driver: &ChromeDriver, profile: &Path) -> Client {
    driver.wait_ready().await;
    let args = [
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-first-run".to_owned(),
        "--window-size=1440,1000".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": { "binary": CHROMIUM, "args": args },
    });
    let Value::Object(capabilities) = capabilities else {
        unreachable!("a JSON object literal")
    };
    ClientBuilder::rustls()
        .expect("WebDriver HTTP client")
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("a headless Chromium session")
}

async fn scenario(browser: Client) {
    let db = TestDb::sqlite();
    let app = TestApp::spawn(&db, CONFIG).await;
    finished_jobs(&app).await;
    let approve = awaiting(&app, "alice.approve@example.com").await;
    let cancel = awaiting(&app, "bob.cancel@example.com").await;
    awaiting(&app, "carol.waits@example.com").await;
    app.deliver(
        "hr",
        &json!({ "kind": "later", "email": "dave.later@example.com" }),
    )
    .await;

    sign_in(&browser, &app).await;
    let source = browser.source().await.expect("page source");
    for email in ["alice.approve@example.com", "bob.cancel@example.com"] {
        assert!(source.contains(email), "{email} on the jobs page");
    }

    transition(&browser, &app, &approve, "approve").await;
    // Back to the list, through the awaiting-approval tab this time.
    click(&browser, "header nav a[href='/console']").await;
    click(
        &browser,
        "nav.tabs a[href='/console?state=awaiting_approval']",
    )
    .await;
    transition(&browser, &app, &cancel, "cancel").await;

    assert_state(&app, &approve, "pending").await;
    assert_state(&app, &cancel, "cancelled").await;

    click(&browser, "header nav a[href='/console/deliveries']").await;
    wait_for_path(&browser, "/console/deliveries").await;
    let deliveries = browser.source().await.expect("deliveries page");
    assert!(deliveries.contains(&format!("href=\"/console/jobs/{approve}\"")));
    save_screenshot(&browser, "console-deliveries.png").await;

    browser
        .goto(&format!("{}/console", app.base_url))
        .await
        .expect("jobs page");
    save_screenshot(&browser, "console-jobs.png").await;
    // Every column, the outcome or error last, is seen without scrolling sideways on a
    // laptop's screen.
    let overflow = browser
        .execute(
            "const s = document.querySelector('main .scroll'); return s.scrollWidth - s.clientWidth;",
            vec![],
        )
        .await
        .expect("measure the jobs table");
    assert_eq!(
        overflow.as_i64(),
        Some(0),
        "the jobs table overflows its page by {overflow}px"
    );
    app.stop().await;
}

/// A succeeded (dry run) and a failed job, finished the way the worker would finish them.
async fn finished_jobs(app: &TestApp) {
    for email in ["erin.done@example.com", "frank.fails@example.com"] {
        app.deliver("hr", &json!({ "kind": "now", "email": email }))
            .await;
    }
    let claimed = app
        .store
        .claim_due("browser-test", 10, Duration::from_secs(60))
        .await
        .expect("claim");
    for job in &claimed {
        if job.email.starts_with("erin") {
            app.store
                .complete(job, Outcome::DryRun, "dry run: would revoke portal access")
                .await
                .expect("complete");
        } else {
            app.store
                .fail(
                    job,
                    "api_error:403",
                    "403 Forbidden: the account is managed by an IdP",
                )
                .await
                .expect("fail");
        }
    }
}

async fn awaiting(app: &TestApp, email: &str) -> String {
    let body = app
        .deliver("hr", &json!({ "kind": "approve", "email": email }))
        .await;
    job_ids(&body)[0].clone()
}

async fn sign_in(browser: &Client, app: &TestApp) {
    browser
        .goto(&format!("{}/console", app.base_url))
        .await
        .expect("open the console");
    let url = browser.current_url().await.expect("url");
    assert_eq!(
        url.path(),
        "/console/login",
        "signed out, the console asks for the token"
    );
    browser
        .find(Locator::Css("input[name='token']"))
        .await
        .expect("the token field")
        .send_keys(ADMIN_TOKEN)
        .await
        .expect("type the token");
    click(browser, "section.login button[type='submit']").await;
    wait_for_path(browser, "/console").await;
}

/// From the jobs list: the job's page, its button, the confirmation page, the final button.
async fn transition(browser: &Client, app: &TestApp, id: &str, name: &str) {
    click(browser, &format!("table.jobs a[href='/console/jobs/{id}']")).await;
    wait_for_path(browser, &format!("/console/jobs/{id}")).await;
    click(
        browser,
        &format!("div.actions a[href='/console/jobs/{id}/{name}']"),
    )
    .await;
    wait_for_path(browser, &format!("/console/jobs/{id}/{name}")).await;
    let confirm = browser.source().await.expect("confirmation page");
    assert!(confirm.contains("Back, change nothing"));
    assert_ne!(
        api_state(app, id).await,
        if name == "approve" {
            "pending"
        } else {
            "cancelled"
        },
        "the confirmation page alone changes nothing"
    );
    save_screenshot(browser, &format!("console-confirm-{name}.png")).await;
    click(browser, "section.confirm button[type='submit']").await;
    wait_for_path(browser, &format!("/console/jobs/{id}")).await;
    let page = browser.source().await.expect("job page");
    assert!(
        page.contains("<td>console</td>"),
        "the audit trail names the console"
    );
    save_screenshot(browser, &format!("console-job-after-{name}.png")).await;
}

async fn click(browser: &Client, css: &str) {
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css}: {e}"))
        .click()
        .await
        .unwrap_or_else(|e| panic!("click {css}: {e}"));
}

async fn wait_for_path(browser: &Client, path: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let url = browser.current_url().await.expect("url");
        if url.path() == path {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {path}, the browser is at {url}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn api_job(app: &TestApp, id: &str) -> Value {
    app.admin(Method::GET, &format!("/api/v1/jobs/{id}"))
        .send()
        .await
        .expect("GET job")
        .json()
        .await
        .expect("JSON")
}

async fn api_state(app: &TestApp, id: &str) -> String {
    api_job(app, id).await["state"]
        .as_str()
        .expect("state")
        .to_owned()
}

async fn assert_state(app: &TestApp, id: &str, expected: &str) {
    let job = api_job(app, id).await;
    assert_eq!(job["state"], expected, "{job}");
    let last = job["events"]
        .as_array()
        .and_then(|e| e.last())
        .expect("events");
    assert_eq!(last["actor"], "console", "{job}");
}

/// Kept under `target/` for a person to look at; not compared against anything.
async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.expect("screenshot");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    std::fs::create_dir_all(&target).expect("target dir");
    std::fs::write(target.join(name), png).expect("write the screenshot");
}

/// Cases in every condition the People page filters on, then the pages an auditor walks.
async fn people_scenario(browser: Client) {
    let db = TestDb::sqlite();
    let app = TestApp::spawn_with_role(&db, CONFIG, Role::Api).await;
    for email in [
        "gina.verified@example.com",
        "hank.late@example.com",
        "ivy.failed@example.com",
    ] {
        app.deliver("hr", &json!({ "kind": "now", "email": email }))
            .await;
    }
    app.deliver(
        "hr",
        &json!({ "kind": "later", "email": "jo.due@example.com" }),
    )
    .await;
    let claimed = app
        .store
        .claim_due("browser-test", 10, Duration::from_secs(60))
        .await
        .expect("claim");
    for job in &claimed {
        if !job.email.starts_with("hank") {
            app.store
                .complete(job, Outcome::Done, "portal access revoked (204)")
                .await
                .expect("complete");
        }
    }
    let pool = sqlx::SqlitePool::connect(&db.url).await.expect("sqlite");
    let now = chrono::Utc::now().timestamp_micros();
    let hour = 3_600_000_000_i64;
    for (email, state, seen, recheck, reactivated) in [
        (
            "gina.verified@example.com",
            "verified",
            "customer status=inactive",
            Some("customer status=active"),
            true,
        ),
        (
            "ivy.failed@example.com",
            "verification_failed",
            "customer status=active, expected revoked",
            None,
            false,
        ),
    ] {
        sqlx::query(
            "INSERT INTO verifications (email, job_id, verified_at, state, seen, rechecked_at, \
             recheck_seen, reactivated_at) \
             SELECT email, min(id), $1, $2, $3, $4, $5, $6 FROM jobs WHERE email = $7 GROUP BY email",
        )
        .bind(now)
        .bind(state)
        .bind(seen)
        .bind(recheck.map(|_| now))
        .bind(recheck)
        .bind(reactivated.then_some(now))
        .bind(email)
        .execute(&pool)
        .await
        .expect("insert a verification");
    }
    // Gina's step handed work over (as `Store::record_handover` writes it): her page lists
    // what moved and what stayed, for an operator to give back by hand.
    sqlx::query(
        "UPDATE jobs SET successor_account_id = 'acc-boss', handover = $1 WHERE email = $2",
    )
    .bind(
        json!({
            "moved": ["filter:10001", "dashboard:20001"],
            "kept": [{ "item": "filter:10002", "reason": "HTTP 403: not the owner" }],
        })
        .to_string(),
    )
    .bind("gina.verified@example.com")
    .execute(&pool)
    .await
    .expect("a hand-over record");
    // Hank was named two days ago and still has access: a missed SLA.
    sqlx::query("UPDATE people SET first_seen = $1, effective_at = $1 WHERE email = $2")
        .bind(now - 48 * hour)
        .bind("hank.late@example.com")
        .execute(&pool)
        .await
        .expect("backdate");
    pool.close().await;

    sign_in(&browser, &app).await;
    click(&browser, "header nav a[href='/console/people']").await;
    wait_for_path(&browser, "/console/people").await;
    let list = browser.source().await.expect("people page");
    for email in [
        "gina.verified@example.com",
        "hank.late@example.com",
        "ivy.failed@example.com",
        "jo.due@example.com",
    ] {
        assert!(list.contains(email), "{email} on the People page");
    }
    save_screenshot(&browser, "console-people.png").await;

    click(
        &browser,
        "nav.tabs a[href='/console/people?show=sla_missed']",
    )
    .await;
    let missed = browser.source().await.expect("missed page");
    assert!(missed.contains("hank.late@example.com"));
    assert!(!missed.contains("gina.verified@example.com"));
    save_screenshot(&browser, "console-people-missed.png").await;
    click(
        &browser,
        "nav.tabs a[href='/console/people?show=verification_failed']",
    )
    .await;
    let failed = browser.source().await.expect("failed page");
    assert!(failed.contains("ivy.failed@example.com"));
    assert!(!failed.contains("hank.late@example.com"));
    click(
        &browser,
        "nav.tabs a[href='/console/people?show=reactivated']",
    )
    .await;
    let reactivated = browser.source().await.expect("reactivated page");
    assert!(reactivated.contains("gina.verified@example.com"));
    assert!(!reactivated.contains("ivy.failed@example.com"));

    click(
        &browser,
        "table.people a[href='/console/people/gina.verified%40example.com']",
    )
    .await;
    let person = browser.source().await.expect("person page");
    for moment in ["delivery", "verification", "recheck", "reactivated"] {
        assert!(person.contains(moment), "{moment} on the timeline");
    }
    assert!(person.contains("portal access revoked (204)"));
    let handed = browser
        .find(Locator::Css("table.handover"))
        .await
        .expect("the Handed over table")
        .text()
        .await
        .expect("its text");
    for shown in [
        "acc-boss",
        "filter:10001",
        "dashboard:20001",
        "filter:10002",
        "not the owner",
    ] {
        assert!(handed.contains(shown), "{shown} in {handed}");
    }
    save_screenshot(&browser, "console-person.png").await;

    click(&browser, "header nav a[href='/console/people']").await;
    let link = browser
        .find(Locator::Css(
            "a.button[href^='/console/evidence.csv?from=']",
        ))
        .await
        .expect("the Evidence link")
        .attr("href")
        .await
        .expect("href")
        .expect("an href");
    // The browser's session downloads it; the same request from here, with its cookie.
    let cookies: Vec<String> = browser
        .get_all_cookies()
        .await
        .expect("cookies")
        .iter()
        .map(|c| format!("{}={}", c.name(), c.value()))
        .collect();
    let response = app
        .http
        .get(format!("{}{link}", app.base_url))
        .header("cookie", cookies.join("; "))
        .send()
        .await
        .expect("download the CSV");
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .starts_with("attachment")
    );
    let csv = response.text().await.expect("CSV");
    assert!(csv.starts_with("email,first_seen,"), "{csv}");
    assert!(csv.contains("hank.late@example.com"), "{csv}");
    let anonymous = app
        .http
        .get(format!("{}{link}", app.base_url))
        .send()
        .await
        .expect("without a session");
    // Without a session the console sends the login page instead.
    assert_eq!(anonymous.url().path(), "/console/login");
    assert!(
        !anonymous
            .text()
            .await
            .expect("login page")
            .contains("hank.late@example.com"),
        "the CSV needs a session"
    );
    browser
        .goto(&format!("{}/console/evidence", app.base_url))
        .await
        .expect("evidence page");
    save_screenshot(&browser, "console-evidence.png").await;
    app.stop().await;
}
