//! A worker process killed with SIGKILL in the middle of a mutating call loses nothing: after
//! its lease runs out, another worker runs the job again, and every job ends succeeded.

use std::io::Write as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml, job_ids};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::{FakeAtlassian, FakeStatus, Fault, FaultKind, Matcher};
use offboard::domain::{JobState, Outcome};
use offboard::serve::Role;
use serde_json::json;
use tokio::time::Instant;

const LEASE_SECONDS: u64 = 5;

/// The enqueueing side: an API-only service with one source whose rule runs `action`.
fn api_toml_for(action: &str) -> String {
    api_toml_for_steps(&format!("[\"{action}\"]"))
}

/// The enqueueing side, whose rule runs `actions` (a TOML array).
fn api_toml_for_steps(actions: &str) -> String {
    format!(
        r#"
[[sources]]
name = "hr"
scheme = "token"
secrets = ["s3cret-token"]
  [[sources.rules]]
  name = "leaver"
  for_each = "/people"
  email = "/email"
  actions = {actions}
"#
    )
}

fn api_toml() -> String {
    api_toml_for("delete_account")
}

/// The worker side: live, one job at a time, a short lease.
fn worker_toml(fake: &FakeAtlassian) -> String {
    format!(
        r#"dry_run = false
{}
[worker]
concurrency = 1
lease_seconds = {LEASE_SECONDS}
requests_per_second = 100.0
backoff_base_seconds = 1
backoff_max_seconds = 2
"#,
        atlassian_toml(fake)
    )
}

/// A worker process over `db` and `fake`, with its config in a temporary directory.
fn worker_process(db: &TestDb, fake: &FakeAtlassian) -> (WorkerProcess, tempfile::TempDir) {
    worker_process_with(db, &worker_toml(fake))
}

/// A worker process over `db` with this configuration (after `listen` and `database_url`).
fn worker_process_with(db: &TestDb, toml: &str) -> (WorkerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("offboard.toml");
    // Port 0: the worker process serves /healthz and /metrics, and the two store variants
    // of each test run at the same time.
    let text = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\n{toml}",
        db.url
    );
    std::fs::File::create(&config)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .expect("write the worker config");
    (WorkerProcess::start(&config, dir.path()), dir)
}

/// Waits until the worker process has sent its mutating call.
async fn wait_for_the_call(fake: &FakeAtlassian) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.mutating_requests().is_empty() {
        assert!(
            Instant::now() < deadline,
            "the worker process never sent its call"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The child process; killed on drop so a failing test leaves no worker behind.
struct WorkerProcess {
    child: Child,
}

impl WorkerProcess {
    fn start(config: &std::path::Path, dir: &std::path::Path) -> WorkerProcess {
        let verbose = std::env::var_os("TEST_LOG").is_some();
        let log = || {
            if verbose {
                Stdio::inherit()
            } else {
                Stdio::null()
            }
        };
        let child = Command::new(env!("CARGO_BIN_EXE_offboard"))
            .args(["serve", "--role", "worker", "--config"])
            .arg(config)
            .current_dir(dir)
            .env_remove("DATABASE_URL")
            .env_remove("OFFBOARD_CONFIG")
            .env_remove("OFFBOARD_LISTEN")
            .env_remove("OFFBOARD_ADMIN_TOKEN")
            .env_remove("OFFBOARD_DRY_RUN")
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .expect("start the offboard binary");
        WorkerProcess { child }
    }

    /// SIGKILL: no drain, no lease release, no result written.
    fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the worker");
        self.child.wait().expect("reap the worker");
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn a_killed_worker_loses_no_job(db: TestDb) {
    // Test builds link two rustls providers (a dev-dependency brings aws-lc), so rustls
    // cannot pick one by itself.
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    let emails = [
        "first@example.com",
        "second@example.com",
        "third@example.com",
    ];
    for (i, email) in emails.iter().enumerate() {
        fake.add_managed(&format!("acc-{i}"), email);
    }
    fake.inject(Fault::once(Matcher::Mutating, FaultKind::Hang));

    let api = TestApp::spawn_with_role(&db, &api_toml(), Role::Api).await;
    let people: Vec<_> = emails.iter().map(|e| json!({ "email": e })).collect();
    let ids = job_ids(&api.deliver("hr", &json!({ "people": people })).await);
    assert_eq!(ids.len(), 3);

    let (mut process, _dir) = worker_process(&db, &fake);
    // The process has sent its mutating call, and the fake holds it open.
    wait_for_the_call(&fake).await;
    let held = fake.mutating_requests()[0].path.clone();
    let mut running = Vec::new();
    for id in &ids {
        if api.job(id).await.job.state == JobState::Running {
            running.push(id.clone());
        }
    }
    assert_eq!(running.len(), 1, "one job is in flight");
    process.kill();
    // Whether or not the held call now reaches "Atlassian", the job must end succeeded.
    fake.release_held();

    let killed_at = Instant::now();
    let worker = TestApp::spawn_with_role(&db, &worker_toml(&fake), Role::Worker).await;
    for id in &ids {
        let job = worker.wait_final(id, Duration::from_secs(30)).await;
        assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
        assert!(
            matches!(job.job.outcome, Some(Outcome::Done | Outcome::AlreadyDone)),
            "{job:#?}"
        );
    }
    let rescued = worker.job(&running[0]).await;
    assert!(
        rescued
            .events
            .iter()
            .any(|e| e.from == Some(JobState::Running) && e.detail.contains("expired")),
        "the killed worker's lease expired: {rescued:#?}"
    );
    assert!(
        killed_at.elapsed() < Duration::from_secs(LEASE_SECONDS * 4),
        "the job was picked up late"
    );

    let counts = worker.store.count_by_state().await.expect("count jobs");
    assert_eq!(counts, vec![(JobState::Succeeded, 3)], "{counts:?}");
    let sent = fake.mutating_requests();
    assert_eq!(sent.len(), 4, "three calls and one repeat: {sent:#?}");
    assert_eq!(sent.iter().filter(|r| r.path == held).count(), 2);
    for (i, _) in emails.iter().enumerate() {
        let account = fake.account(&format!("acc-{i}")).expect("account");
        assert_eq!(
            account.status(),
            crate::support::fake_atlassian::FakeStatus::PendingDelete
        );
    }
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    a_killed_worker_loses_no_job_on,
    a_killed_worker_loses_no_job
);

/// The chaos run that once ended `not_found`: the service dies after its DELETE reached
/// Atlassian and before the result was stored. The deleted customer is no longer found by
/// email, so the re-run must act on the recorded account: it gets the 404 and ends
/// `already_done`, and the audit trail tells the truth.
async fn a_rerun_acts_on_the_recorded_account(db: TestDb) {
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:leaver", "leaver@example.com");
    fake.inject(Fault::once(Matcher::Mutating, FaultKind::HoldAnswer));

    let api =
        TestApp::spawn_with_role(&db, &api_toml_for("delete_portal_customer"), Role::Api).await;
    let body = json!({ "people": [{ "email": "leaver@example.com" }] });
    let ids = job_ids(&api.deliver("hr", &body).await);
    assert_eq!(ids.len(), 1);

    let (mut process, _dir) = worker_process(&db, &fake);
    wait_for_the_call(&fake).await;
    // The DELETE is carried out; its answer is held, and the worker dies waiting for it.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.account("qm:leaver").expect("account").status() != FakeStatus::Deleted {
        assert!(
            Instant::now() < deadline,
            "the DELETE was never carried out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    fake.release_held();

    let worker = TestApp::spawn_with_role(&db, &worker_toml(&fake), Role::Worker).await;
    let job = worker.wait_final(&ids[0], Duration::from_secs(30)).await;
    assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
    assert_eq!(job.job.outcome, Some(Outcome::AlreadyDone), "{job:#?}");
    assert_eq!(job.job.account_id.as_deref(), Some("qm:leaver"));
    let searches = fake
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/user/search"))
        .count();
    assert_eq!(searches, 1, "the re-run does not search again");
    let deletes: Vec<_> = fake
        .mutating_requests()
        .into_iter()
        .map(|r| r.query.unwrap_or_default())
        .collect();
    assert_eq!(deletes, ["accountId=qm%3Aleaver"; 2]);
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    a_rerun_acts_on_the_recorded_account_on,
    a_rerun_acts_on_the_recorded_account
);

/// The chaos run that once left customers alive: the service dies after a revoke reached
/// Atlassian and before it was recorded. The repeated revoke answers 400 (the current spec's
/// "invalid account id"); the re-run reads the user back, finds it inactive, records the
/// revoke `already_done`, and the chain's delete still runs.
async fn a_rerun_of_a_revoke_is_read_back_and_the_delete_follows(db: TestDb) {
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:leaver", "leaver@example.com");
    fake.inject(Fault::once(Matcher::Mutating, FaultKind::HoldAnswer));

    let actions = r#"revoke_portal_access", "delete_portal_customer"#;
    let api = TestApp::spawn_with_role(&db, &api_toml_for(actions), Role::Api).await;
    let body = json!({ "people": [{ "email": "leaver@example.com" }] });
    let ids = job_ids(&api.deliver("hr", &body).await);
    assert_eq!(ids.len(), 2);

    let (mut process, _dir) = worker_process(&db, &fake);
    wait_for_the_call(&fake).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !fake
        .account("qm:leaver")
        .expect("account")
        .portal_access_revoked
    {
        assert!(
            Instant::now() < deadline,
            "the revoke was never carried out"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    fake.release_held();

    let worker = TestApp::spawn_with_role(&db, &worker_toml(&fake), Role::Worker).await;
    let revoke = worker.wait_final(&ids[0], Duration::from_secs(30)).await;
    assert_eq!(
        revoke.job.outcome,
        Some(Outcome::AlreadyDone),
        "{revoke:#?}"
    );
    assert!(
        revoke
            .events
            .iter()
            .any(|e| e.detail.contains("read back") && e.detail.contains("inactive")),
        "{revoke:#?}"
    );
    let delete = worker.wait_final(&ids[1], Duration::from_secs(30)).await;
    assert_eq!(delete.job.outcome, Some(Outcome::Done), "{delete:#?}");
    assert_eq!(
        fake.account("qm:leaver").expect("account").status(),
        FakeStatus::Deleted
    );
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    a_rerun_of_a_revoke_is_read_back_and_the_delete_follows_on,
    a_rerun_of_a_revoke_is_read_back_and_the_delete_follows
);

/// A worker killed in the middle of reassigning 500 issues loses none and moves none twice:
/// the bulk task it started is recorded on the job before it is followed, so the re-run
/// follows that task to its end before it searches again, and finds nothing left to move.
async fn a_killed_hand_over_reassigns_every_issue_exactly_once(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    offboard::install_tls_provider();
    let fake = FakeAtlassian::start().await;
    fake.add_managed("acc-lea", "lea@example.com");
    fake.add_managed("acc-boss", "boss@example.com");
    for n in 1..=500 {
        fake.add_issue(&format!("OPS-{n}"), "OPS", Some("acc-lea"), false);
    }
    // Slow enough that the kill lands while the task runs.
    fake.set_bulk_issues_per_second(150.0);
    let actions = r#"[{ action = "reassign_open_issues", successor_email = "boss@example.com" }]"#;
    let api = TestApp::spawn_with_role(&db, &api_toml_for_steps(actions), Role::Api).await;
    let body = json!({ "people": [{ "email": "lea@example.com" }] });
    let ids = job_ids(&api.deliver("hr", &body).await);
    assert_eq!(ids.len(), 1);

    let (mut process, _dir) = worker_process(&db, &fake);
    let deadline = Instant::now() + Duration::from_secs(30);
    let moved = |fake: &FakeAtlassian| {
        (1..=500)
            .filter(|n| fake.issue_assignee_changes(&format!("OPS-{n}")) > 0)
            .count()
    };
    while moved(&fake) < 50 {
        assert!(Instant::now() < deadline, "the reassignment never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    process.kill();
    let at_kill = moved(&fake);
    assert!(
        at_kill < 500,
        "the kill came after the task ended ({at_kill})"
    );
    let recorded = api.job(&ids[0]).await;
    assert_eq!(recorded.job.state, JobState::Running);

    let worker = TestApp::spawn_with_role(&db, &worker_toml(&fake), Role::Worker).await;
    let job = worker.wait_final(&ids[0], Duration::from_secs(60)).await;
    assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
    assert_eq!(job.job.outcome, Some(Outcome::Done), "{job:#?}");
    for n in 1..=500 {
        let key = format!("OPS-{n}");
        let issue = fake.issue(&key).expect("issue");
        assert_eq!(issue.assignee.as_deref(), Some("acc-boss"), "{key}");
        assert_eq!(
            fake.issue_assignee_changes(&key),
            1,
            "{key} reassigned once"
        );
    }
    assert_eq!(
        fake.bulk_tasks_created(),
        1,
        "the re-run started no second task"
    );
    assert_eq!(fake.bulk_notifications_requested(), 0);
    let done = job.job.handover.as_ref().expect("the hand-over record");
    assert_eq!(done.moved.len(), 500);
    assert!(done.tasks.is_empty(), "{done:?}");
    worker.stop().await;
    api.stop().await;
}

both_stores!(
    a_killed_hand_over_reassigns_every_issue_exactly_once_on,
    a_killed_hand_over_reassigns_every_issue_exactly_once
);

/// A replica killed with SIGKILL while it holds a lease of the fleet's tokens stalls the
/// others no longer than that lease: the survivor soon uses the whole budget alone
/// (README, "Running several replicas").
async fn a_killed_replica_does_not_stall_the_fleet(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    if db.backend != crate::support::db::Backend::Postgres {
        return;
    }
    offboard::install_tls_provider();
    const RATE: f64 = 20.0;
    let fake = FakeAtlassian::start().await;
    let toml = format!(
        r#"dry_run = false
{}
[worker]
concurrency = 4
lease_seconds = {LEASE_SECONDS}
requests_per_second = {RATE:?}
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = 1000000
"#,
        atlassian_toml(&fake)
    );
    let api = TestApp::spawn_with_role(&db, &api_toml_for("suspend_access"), Role::Api).await;
    // Fifty a delivery: more would wait for approval (`approval_above`).
    for batch in 0..12 {
        let people: Vec<_> = (0..50)
            .map(|i| json!({ "email": format!("p{batch}-{i}@example.com") }))
            .collect();
        let ids = job_ids(&api.deliver("hr", &json!({ "people": people })).await);
        assert_eq!(ids.len(), 50);
    }
    let (mut process, _dir) = worker_process_with(&db, &toml);
    let survivor = TestApp::spawn_with_role(&db, &toml, Role::Worker).await;
    fake.set_tenant_limit(RATE, RATE);
    // Both replicas are at work, sharing the budget.
    tokio::time::sleep(Duration::from_secs(3)).await;
    process.kill();
    let killed = Instant::now();
    // After one lease (0.25 s) and some slack, the survivor has the whole budget.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = fake.served_times().len();
    let window = Instant::now();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let rate = (fake.served_times().len() - before) as f64 / window.elapsed().as_secs_f64();
    assert!(
        rate >= 0.9 * RATE,
        "{rate:.1} requests/s of {RATE} from {:?} after the kill",
        killed.elapsed()
    );
    assert_eq!(fake.rate_limited_count(), 0);
    survivor.stop().await;
    api.stop().await;
}

both_stores!(
    a_killed_replica_does_not_stall_the_fleet_on,
    a_killed_replica_does_not_stall_the_fleet
);
