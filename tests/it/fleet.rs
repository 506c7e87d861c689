//! One rate budget for the fleet, and priority lanes (README, "Running several replicas",
//! "Lanes"), against a fake Atlassian that enforces a per-tenant limit and answers 429 above
//! it.

use std::time::Duration;

use chrono::Utc;
use serde_json::json;
use tokio::time::Instant;

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml};
use crate::support::db::{Backend, TestDb};
use crate::support::fake_atlassian::{FakeAtlassian, Fault, FaultKind, Matcher};
use offboard::domain::{Action, Email, JobState, Lane, NewChain, NewStep};
use offboard::serve::Role;
use offboard::store::{NewDelivery, Store};

const SOURCE: &str = "hr";
const TOKEN: &str = "fleet-token";

fn toml(fake: &FakeAtlassian, rps: f64, concurrency: usize) -> String {
    format!(
        r#"dry_run = false
{atlassian}
[worker]
concurrency = {concurrency}
lease_seconds = 5
requests_per_second = {rps:?}
backoff_base_seconds = 1
backoff_max_seconds = 2

[safety]
max_actions_per_hour = 1000000
approval_above = 1000000

[[sources]]
name = "{SOURCE}"
scheme = "token"
secrets = ["{TOKEN}"]
  [[sources.rules]]
  name = "leaver"
  email = "/email"
  actions = ["suspend_access"]
"#,
        atlassian = atlassian_toml(fake),
    )
}

/// Enqueues `n` due bulk jobs (`suspend_access` of people Atlassian does not know: each is
/// one directory search, then `not_found`), 500 to a delivery.
async fn enqueue_bulk(store: &dyn Store, n: usize, prefix: &str) {
    let people: Vec<usize> = (0..n).collect();
    for (batch, chunk) in people.chunks(500).enumerate() {
        let chains = chunk
            .iter()
            .map(|i| NewChain {
                email: Email::parse(&format!("{prefix}{i}@example.com")).unwrap(),
                account_id: None,
                account_type: None,
                rule: "bulk".into(),
                approval: false,
                steps: vec![NewStep {
                    action: Action::SuspendAccess,
                    params: Default::default(),
                    run_at: Utc::now() - chrono::TimeDelta::seconds(5),
                    lane: Lane::Bulk,
                }],
            })
            .collect();
        store
            .accept_delivery(NewDelivery {
                max_attempts: 8,
                ..NewDelivery::signed("api", &format!("{prefix}-{batch}"), chains)
            })
            .await
            .expect("enqueue");
    }
}

async fn wait_until_done(store: &dyn Store, total: u64, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        let counts = store.count_by_state().await.expect("count");
        let done = counts
            .iter()
            .filter(|(s, _)| matches!(s, JobState::Succeeded | JobState::Failed))
            .map(|(_, n)| *n)
            .sum::<u64>();
        if done >= total {
            return;
        }
        assert!(Instant::now() < deadline, "{counts:?} after {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Three replicas on one Postgres, each configured with the whole budget, drain 3,000 jobs
/// together without one 429, and the fake never serves more than the bucket allows.
async fn three_replicas_share_one_budget(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    if db.backend != Backend::Postgres {
        return;
    }
    const RATE: f64 = 400.0;
    let fake = FakeAtlassian::start().await;
    let toml = toml(&fake, RATE, 16);
    let replicas = [
        TestApp::spawn_with_role(&db, &toml, Role::Worker).await,
        TestApp::spawn_with_role(&db, &toml, Role::Worker).await,
        TestApp::spawn_with_role(&db, &toml, Role::Worker).await,
    ];
    fake.clear_requests();
    fake.set_tenant_limit(RATE, RATE);
    let started = Instant::now();
    enqueue_bulk(replicas[0].store.as_ref(), 3000, "p").await;
    wait_until_done(replicas[0].store.as_ref(), 3000, Duration::from_secs(60)).await;
    let took = started.elapsed();
    assert_eq!(fake.rate_limited_count(), 0, "no 429 in {took:?}");
    let most = fake.max_in_window(Duration::from_secs(1));
    assert!(
        most as f64 <= RATE + RATE,
        "{most} served in one second, above the bucket's {RATE}/s and burst {RATE}"
    );
    let served = fake.served_times().len();
    assert!(served >= 3000, "{served}");
    // Three replicas alone would send three times the rate: together they keep to one.
    assert!(
        took >= Duration::from_secs_f64((served as f64 - RATE) / RATE * 0.95),
        "{served} requests in {took:?}"
    );
    for replica in replicas {
        replica.stop().await;
    }
}

both_stores!(
    three_replicas_share_one_budget_on,
    three_replicas_share_one_budget
);

/// An urgent job enqueued behind 5,000 due bulk jobs makes its first request within 2 s.
async fn an_urgent_job_overtakes_five_thousand_bulk_jobs(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    let fake = FakeAtlassian::start().await;
    let app = TestApp::spawn(&db, &toml(&fake, 20.0, 4)).await;
    enqueue_bulk(app.store.as_ref(), 5000, "b").await;
    // The worker is busy with the bulk jobs.
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 30 {
        assert!(Instant::now() < deadline, "the bulk jobs never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let answer = app
        .deliver(SOURCE, &json!({ "email": "fired@example.com" }))
        .await;
    let enqueued = Instant::now();
    assert_eq!(answer["jobs"][0]["lane"], "urgent", "{answer}");
    loop {
        let asked = fake.requests().iter().any(|r| {
            r.body
                .as_ref()
                .is_some_and(|b| b.to_string().contains("fired@example.com"))
        });
        if asked {
            break;
        }
        assert!(
            enqueued.elapsed() < Duration::from_secs(2),
            "the urgent job made no request within 2 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.stop().await;
}

both_stores!(
    an_urgent_job_overtakes_five_thousand_bulk_jobs_on,
    an_urgent_job_overtakes_five_thousand_bulk_jobs
);

/// A queue of bulk jobs alone uses at least 95% of the budget.
async fn a_bulk_only_queue_uses_the_budget(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    const RATE: f64 = 20.0;
    let fake = FakeAtlassian::start().await;
    let app = TestApp::spawn_with_role(&db, &toml(&fake, RATE, 4), Role::Worker).await;
    enqueue_bulk(app.store.as_ref(), 600, "q").await;
    // After the burst, ten seconds at the rate.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = fake.request_count();
    tokio::time::sleep(Duration::from_secs(10)).await;
    let used = (fake.request_count() - before) as f64 / 10.0;
    assert!(used >= 0.95 * RATE, "{used} requests/s of {RATE}");
    assert!(used <= 1.05 * RATE, "{used} requests/s of {RATE}");
    app.stop().await;
}

both_stores!(
    a_bulk_only_queue_uses_the_budget_on,
    a_bulk_only_queue_uses_the_budget
);

/// A 429 one replica sees holds the family for every replica until its reset.
async fn a_429_holds_every_replica(db: TestDb) {
    let _machine = crate::support::MACHINE.lock().await;
    if db.backend != Backend::Postgres {
        return;
    }
    let fake = FakeAtlassian::start().await;
    let toml = toml(&fake, 50.0, 4);
    let replicas = [
        TestApp::spawn_with_role(&db, &toml, Role::Worker).await,
        TestApp::spawn_with_role(&db, &toml, Role::Worker).await,
    ];
    enqueue_bulk(replicas[0].store.as_ref(), 400, "h").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while fake.request_count() < 20 {
        assert!(Instant::now() < deadline, "the jobs never started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = fake.request_count();
    fake.inject(Fault::once(
        Matcher::Lookup,
        FaultKind::Status429 {
            retry_after: Some(3),
            reset_after: None,
        },
    ));
    let deadline = Instant::now() + Duration::from_secs(10);
    // The fault answers the next lookup.
    let limited_at = loop {
        let limited = fake.requests()[before..]
            .iter()
            .find(|r| r.is_lookup())
            .map(|r| r.received_at);
        if let Some(at) = limited {
            break at;
        }
        assert!(Instant::now() < deadline, "the 429 was never sent");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    tokio::time::sleep(Duration::from_secs(4)).await;
    // Requests already leased may still go out for a moment; after that, nothing until the
    // reset, from either replica.
    let during: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.received_at > limited_at + Duration::from_millis(500)
                && r.received_at < limited_at + Duration::from_millis(2900)
        })
        .collect();
    assert!(
        during.is_empty(),
        "{} requests during the hold",
        during.len()
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.received_at >= limited_at + Duration::from_secs(3)),
        "work went on after the reset"
    );
    for replica in replicas {
        replica.stop().await;
    }
}

both_stores!(a_429_holds_every_replica_on, a_429_holds_every_replica);
