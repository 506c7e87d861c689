//! What a hand-over costs in Atlassian requests, against the in-process fake Atlassian.
//!
//! ```sh
//! cargo run --release --example handover_bench -- [--items 10,100,1000]
//! ```
//!
//! For each kind of item (filters, dashboards, open issues, project leads, automation rules)
//! and each count N, one leaver owns N items; one hand-over job moves them all to a
//! successor, on a fresh SQLite store, and the fake counts every request it answered: the
//! two directory lookups (leaver and successor), the searches, the moves and their
//! read-backs. Each line prints the total, split into reads and writes, and the time taken
//! with no latency and no rate limit. Project leads count one component per project; the
//! fake's bulk issue tasks run at 100,000 issues/s, so polling costs one read per task.

#[path = "../tests/support/fake_atlassian/mod.rs"]
mod fake_atlassian;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use fake_atlassian::FakeAtlassian;
use offboard::config::{Config, ConfigOrigin};
use offboard::domain::{Action, Email, JobState, NewChain, NewStep};
use offboard::serve::{Role, Service};
use offboard::store::{self, NewDelivery, StoreOptions};

/// Atlassian requests per hand-over of N items of each kind.
#[derive(Parser)]
struct Args {
    /// The item counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [10, 100, 1000])]
    items: Vec<usize>,
}

const LEAVER: &str = "acc-leaver";
const SUCCESSOR: &str = "acc-successor";

/// Gives the leaver `n` items of the kind the action moves (for project leads, `n` projects
/// and one component of each); how many items that is.
fn furnish(fake: &FakeAtlassian, action: Action, n: usize) -> usize {
    for i in 0..n {
        match action {
            Action::TransferFilters => fake.add_filter(&format!("{}", 10_000 + i), LEAVER, true),
            Action::TransferDashboards => {
                fake.add_dashboard(&format!("{}", 20_000 + i), LEAVER, true);
            }
            Action::ReassignOpenIssues => {
                fake.add_issue(&format!("OPS-{i}"), "OPS", Some(LEAVER), false);
            }
            Action::TransferProjectLeads => {
                let key = format!("P{i}");
                fake.add_project(&key, &format!("{}", 30_000 + i), LEAVER);
                fake.add_component(&format!("{}", 40_000 + i), &key, Some(LEAVER));
            }
            Action::ReportAutomationRules => {
                fake.add_rule(&format!("rule-{i}"), &format!("Rule {i}"), LEAVER, LEAVER);
            }
            other => panic!("{other} is not a hand-over"),
        }
    }
    if action == Action::TransferProjectLeads {
        2 * n
    } else {
        n
    }
}

fn config(db: &str, fake: &FakeAtlassian) -> Config {
    let text = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{db}"
dry_run = false

{atlassian}
[worker]
concurrency = 1
requests_per_second = 100000.0

[evidence]
verify_every = "1h"
"#,
        atlassian = fake.atlassian_toml(),
    );
    Config::from_toml(&text, ConfigOrigin::Defaults, &|_| None).expect("bench config")
}

/// One hand-over of `n` items: (items, reads, writes, time).
async fn hand_over(action: Action, n: usize) -> (usize, usize, usize, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = format!("sqlite://{}", dir.path().join("bench.db").display());
    let fake = FakeAtlassian::start().await;
    fake.add_managed(LEAVER, "leaver@example.com");
    fake.add_managed(SUCCESSOR, "successor@example.com");
    fake.set_bulk_issues_per_second(100_000.0);
    let items = furnish(&fake, action, n);
    let store = store::open_migrated(&db, &StoreOptions::default())
        .await
        .expect("open the store");
    let params = [("successor_email".to_owned(), "successor@example.com".into())];
    store
        .accept_delivery(NewDelivery {
            max_attempts: 8,
            ..NewDelivery::signed(
                "bench",
                &format!("d-{}", rand::random::<u64>()),
                vec![NewChain {
                    email: Email::parse("leaver@example.com").expect("email"),
                    account_id: None,
                    account_type: None,
                    rule: "bench".into(),
                    approval: false,
                    steps: vec![NewStep {
                        action,
                        params: params.into_iter().collect(),
                        run_at: Utc::now(),
                        lane: offboard::domain::Lane::Bulk,
                    }],
                }],
            )
        })
        .await
        .expect("enqueue");
    fake.clear_requests();
    let started = Instant::now();
    let service =
        Service::start_with_store(Arc::new(config(&db, &fake)), store.clone(), Role::Worker)
            .await
            .expect("start the worker");
    let state = loop {
        let counts = store.count_by_state().await.expect("count");
        if let Some((state, _)) = counts
            .iter()
            .find(|(s, _)| matches!(s, JobState::Succeeded | JobState::Failed))
        {
            break *state;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let took = started.elapsed();
    service.stop().await.expect("stop");
    let requests = fake.requests();
    let reads = requests.iter().filter(|r| r.is_lookup()).count();
    // A rule's automation hand-over is expected to be kept (the fake ignores an actor
    // change, as the less convenient reading of the reference); everything else must move.
    assert!(
        state == JobState::Succeeded,
        "{action} of {n} items ended {state:?}"
    );
    (items, reads, requests.len() - reads, took)
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let args = Args::parse();
    offboard::install_tls_provider();
    println!(
        "hand-over benchmark: Atlassian requests for one leaver's N items (fresh SQLite store each)"
    );
    for action in Action::ALL.into_iter().filter(|a| a.handover().is_some()) {
        for &n in &args.items {
            let (items, reads, writes, took) = hand_over(action, n).await;
            println!(
                "{action:<24} N = {n:>5} ({items:>4} items): {:>5} requests ({reads} reads, {writes} writes), {:.3} per item, {:.2} s",
                reads + writes,
                (reads + writes) as f64 / items as f64,
                took.as_secs_f64()
            );
        }
    }
}
