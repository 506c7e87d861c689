//! The store contract: every operation of `Store`, run once against SQLite and once against
//! Postgres. Both backends must give the same answers; where they differ, this suite is the
//! judge.

use offboard::domain::{
    Job, JobId, JobWithEvents, NewCancel, NewChain, NewStep, PauseReason, Transition,
};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::both_stores;
use crate::support::db::{Backend, TestDb};
use chrono::{DateTime, TimeDelta, Utc};
use offboard::domain::{AccountId, Email};
use offboard::domain::{Action, JobState, Outcome};
use offboard::store::{
    AccountRecord, Completion, Dedupe, DeliveryContent, DeliveryReceipt, DeliveryStatus, JobFilter,
    NewDelivery, Refusal, Store, StoreError, StoreResult,
};
use serde_json::{Map, Value, json};
use sqlx::Connection;
use tokio::sync::Notify;

/// Long enough that no lease expires during a test unless the test wants it to.
const LEASE: Duration = Duration::from_secs(60);
const WORKER: &str = "w1";
const OPERATOR: &str = "admin:alice";

static NEXT_DELIVERY: AtomicU64 = AtomicU64::new(1);

fn fresh_delivery_id() -> String {
    format!("d-{}", NEXT_DELIVERY.fetch_add(1, Ordering::Relaxed))
}

/// A `run_at` that is already due.
fn due() -> DateTime<Utc> {
    Utc::now() - TimeDelta::minutes(1)
}

/// A `run_at` that is not due during the test.
fn later() -> DateTime<Utc> {
    Utc::now() + TimeDelta::hours(1)
}

fn params_for(action: Action) -> Map<String, Value> {
    let mut params = Map::new();
    if let Some(name) = action.required_param() {
        params.insert(name.to_owned(), json!("x-1"));
    }
    params
}

/// One rule's steps for one person, in order, without approval.
fn chain(email: &str, actions: &[Action], run_at: DateTime<Utc>) -> NewChain {
    NewChain {
        email: Email::parse(email).expect("valid email"),
        account_id: None,
        account_type: None,
        rule: "offboard".to_owned(),
        approval: false,
        steps: actions
            .iter()
            .map(|&action| NewStep {
                action,
                params: params_for(action),
                run_at,
                lane: offboard::domain::Lane::Bulk,
            })
            .collect(),
    }
}

fn accepted(cancels: Vec<NewCancel>, chains: Vec<NewChain>) -> DeliveryContent {
    DeliveryContent::Accepted {
        cancels,
        chains,
        refused: Vec::new(),
        approval_required: None,
        undo: None,
    }
}

fn delivery(source: &str, delivery_id: &str, content: DeliveryContent) -> NewDelivery {
    NewDelivery {
        source: source.to_owned(),
        delivery_id: delivery_id.to_owned(),
        body_sha256: "ab".repeat(32),
        dedupe: Dedupe::SignedId,
        received_at: Utc::now(),
        max_attempts: 3,
        content,
    }
}

/// Accepts a fresh delivery from `hr` carrying these chains.
async fn accept(store: &dyn Store, chains: Vec<NewChain>) -> DeliveryReceipt {
    store
        .accept_delivery(delivery(
            "hr",
            &fresh_delivery_id(),
            accepted(vec![], chains),
        ))
        .await
        .expect("accept delivery")
}

fn receipt_ids(receipt: &DeliveryReceipt) -> Vec<JobId> {
    receipt
        .job_ids()
        .iter()
        .map(|id| id.parse().expect("numeric job id"))
        .collect()
}

/// Enqueues one job and returns it as stored.
async fn enqueue(store: &dyn Store, email: &str, action: Action, run_at: DateTime<Utc>) -> Job {
    let receipt = accept(store, vec![chain(email, &[action], run_at)]).await;
    let ids = receipt_ids(&receipt);
    assert_eq!(ids.len(), 1, "{}", receipt.body());
    show(store, ids[0]).await.job
}

async fn show(store: &dyn Store, id: JobId) -> JobWithEvents {
    store
        .get_job(id)
        .await
        .expect("get job")
        .unwrap_or_else(|| panic!("job {id} exists"))
}

async fn all_jobs(store: &dyn Store) -> Vec<Job> {
    store
        .list_jobs(&JobFilter {
            limit: 10_000,
            ..JobFilter::default()
        })
        .await
        .expect("list jobs")
}

/// Claims, asserting that exactly this job is due.
async fn claim_exactly(store: &dyn Store, id: JobId, lease: Duration) -> Job {
    let claimed = store.claim_due(WORKER, 10, lease).await.expect("claim");
    let ids: Vec<JobId> = claimed.iter().map(|j| j.id).collect();
    assert_eq!(ids, vec![id], "exactly job {id} should be claimable");
    claimed.into_iter().next().expect("one job")
}

/// A job in `state`, for `email` and `action`; pending and awaiting jobs are not due.
async fn job_in_state(store: &dyn Store, state: JobState, email: &str, action: Action) -> Job {
    let id = match state {
        JobState::Pending => enqueue(store, email, action, later()).await.id,
        JobState::AwaitingApproval => {
            let receipt = accept(
                store,
                vec![NewChain {
                    approval: true,
                    ..chain(email, &[action], later())
                }],
            )
            .await;
            receipt_ids(&receipt)[0]
        }
        JobState::Cancelled => {
            let job = enqueue(store, email, action, later()).await;
            store.cancel(job.id, OPERATOR, "setup").await.unwrap();
            job.id
        }
        JobState::Running | JobState::Succeeded | JobState::Failed => {
            let job = enqueue(store, email, action, due()).await;
            let claimed = claim_exactly(store, job.id, LEASE).await;
            if state == JobState::Succeeded {
                assert!(store.complete(&claimed, Outcome::Done, "ok").await.unwrap());
            } else if state == JobState::Failed {
                assert!(store.fail(&claimed, "api_error:500", "boom").await.unwrap());
            }
            job.id
        }
    };
    let job = show(store, id).await.job;
    assert_eq!(job.state, state);
    job
}

/// Nothing about the job, its events included, differs from `before`.
async fn assert_unchanged(store: &dyn Store, before: &JobWithEvents) {
    let after = show(store, before.job.id).await;
    assert_eq!(format!("{after:?}"), format!("{before:?}"));
}

fn assert_invalid(result: StoreResult<Job>, id: JobId, transition: Transition, state: JobState) {
    match result {
        Err(StoreError::InvalidTransition {
            id: got_id,
            transition: got_transition,
            state: got_state,
        }) => {
            assert_eq!((got_id, got_transition, got_state), (id, transition, state));
        }
        other => panic!("expected InvalidTransition({transition} from {state}), got {other:?}"),
    }
}

fn sorted(mut ids: Vec<JobId>) -> Vec<JobId> {
    ids.sort_unstable();
    ids
}

fn string_ids(value: &Value) -> Vec<JobId> {
    value
        .as_array()
        .expect("array of ids")
        .iter()
        .map(|id| id.as_str().expect("id string").parse().expect("numeric id"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// accept_delivery

async fn accept_records_delivery_and_jobs(db: TestDb) {
    let store = db.store().await;
    let run_at = due();
    let mut suspend_then_delete = chain(
        "leaver@example.com",
        &[Action::SuspendAccess, Action::RemoveFromGroup],
        run_at,
    );
    suspend_then_delete.account_id = Some(AccountId::stored("acc-1".to_owned()));
    let refused = vec![Refusal {
        email: "ceo@example.com".to_owned(),
        reason: "protected_email".to_owned(),
    }];
    let new = delivery(
        "hr",
        "evt-1",
        DeliveryContent::Accepted {
            cancels: vec![],
            chains: vec![
                suspend_then_delete,
                chain("other@example.com", &[Action::DeleteAccount], run_at),
            ],
            refused,
            approval_required: None,
            undo: None,
        },
    );
    let new = NewDelivery {
        max_attempts: 5,
        ..new
    };
    let receipt = store.accept_delivery(new).await.unwrap();

    assert!(!receipt.duplicate);
    assert_eq!(receipt.status, DeliveryStatus::Accepted);
    let body = &receipt.body();
    assert_eq!(body["delivery_id"], "evt-1");
    assert_eq!(body["duplicate"], false);
    assert_eq!(body["cancelled"], json!([]));
    assert_eq!(
        body["refused"],
        json!([{ "email": "ceo@example.com", "reason": "protected_email" }])
    );
    let jobs = body["jobs"].as_array().expect("jobs array");
    assert_eq!(jobs.len(), 3, "{body}");
    assert!(jobs.iter().all(|j| j["id"].is_string()), "{body}");
    assert_eq!(jobs[0]["action"], "suspend_access");
    assert_eq!(jobs[0]["state"], "pending");
    assert_eq!(jobs[0]["depends_on"], Value::Null);
    assert_eq!(jobs[1]["action"], "remove_from_group");
    assert_eq!(
        jobs[1]["depends_on"], jobs[0]["id"],
        "second step waits for the first"
    );
    assert_eq!(
        jobs[2]["depends_on"],
        Value::Null,
        "a new chain starts fresh"
    );

    let ids = receipt_ids(&receipt);
    // The answer shows each job exactly as the API shows it when read back (Postgres builds
    // the answer in SQL, so its shape is checked here, field by field).
    for (answered, id) in jobs.iter().zip(&ids) {
        let stored = serde_json::to_value(show(&*store, *id).await.job).unwrap();
        assert_eq!(answered, &stored);
    }
    let first = show(&*store, ids[0]).await;
    assert_eq!(first.job.email, "leaver@example.com");
    assert_eq!(first.job.account_id.as_deref(), Some("acc-1"));
    assert_eq!(first.job.source.as_deref(), Some("hr"));
    assert_eq!(first.job.rule.as_deref(), Some("offboard"));
    assert_eq!(first.job.delivery_id.as_deref(), Some("evt-1"));
    assert_eq!(first.job.max_attempts, 5);
    assert_eq!(first.job.attempts, 0);
    assert_eq!(
        first.job.run_at.timestamp_micros(),
        run_at.timestamp_micros()
    );
    let second = show(&*store, ids[1]).await.job;
    assert_eq!(second.depends_on, Some(ids[0]));
    assert_eq!(second.param("group_id"), Some("x-1"));

    assert_eq!(first.events.len(), 1);
    let created = &first.events[0];
    assert_eq!(created.from, None);
    assert_eq!(created.to, JobState::Pending);
    assert_eq!(created.actor, "source:hr");
    assert!(!created.detail.is_empty());

    assert_eq!(all_jobs(&*store).await.len(), 3);
    let deliveries = store.list_deliveries(None, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].source, "hr");
    assert_eq!(deliveries[0].delivery_id, "evt-1");
    assert_eq!(deliveries[0].status, DeliveryStatus::Accepted);
    assert_eq!(deliveries[0].error, None);
    assert_eq!(deliveries[0].job_ids, receipt.job_ids());
}
both_stores!(
    accept_records_delivery_and_jobs_on,
    accept_records_delivery_and_jobs
);

async fn repeated_delivery_replays_first_body(db: TestDb) {
    let store = db.store().await;
    let first = store
        .accept_delivery(delivery(
            "hr",
            "evt-1",
            accepted(
                vec![],
                vec![chain("a@example.com", &[Action::SuspendAccess], due())],
            ),
        ))
        .await
        .unwrap();
    let jobs_before = all_jobs(&*store).await.len();

    // Different content under the same id: the first answer stands and nothing is created.
    let again = store
        .accept_delivery(delivery(
            "hr",
            "evt-1",
            accepted(
                vec![NewCancel {
                    email: Email::parse("a@example.com").unwrap(),
                    rule: "rehire".to_owned(),
                }],
                vec![chain("b@example.com", &[Action::DeleteAccount], due())],
            ),
        ))
        .await
        .unwrap();

    assert!(again.duplicate);
    assert_eq!(again.status, DeliveryStatus::Accepted);
    let mut expected = first.body().clone();
    expected["duplicate"] = json!(true);
    assert_eq!(again.body(), expected);
    assert_eq!(all_jobs(&*store).await.len(), jobs_before);
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 1);
    let job = show(&*store, receipt_ids(&first)[0]).await.job;
    assert_eq!(
        job.state,
        JobState::Pending,
        "the replayed cancel did not run"
    );
}
both_stores!(
    repeated_delivery_replays_first_body_on,
    repeated_delivery_replays_first_body
);

async fn same_delivery_id_from_other_source_is_new(db: TestDb) {
    let store = db.store().await;
    let from_hr = store
        .accept_delivery(delivery(
            "hr",
            "evt-1",
            accepted(
                vec![],
                vec![chain("a@example.com", &[Action::SuspendAccess], due())],
            ),
        ))
        .await
        .unwrap();
    let from_jira = store
        .accept_delivery(delivery(
            "jira",
            "evt-1",
            accepted(
                vec![],
                vec![chain("b@example.com", &[Action::SuspendAccess], due())],
            ),
        ))
        .await
        .unwrap();

    assert!(!from_jira.duplicate);
    assert_eq!(from_jira.body()["duplicate"], false);
    assert_ne!(receipt_ids(&from_jira), receipt_ids(&from_hr));
    assert_eq!(all_jobs(&*store).await.len(), 2);
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 2);
}
both_stores!(
    same_delivery_id_from_other_source_is_new_on,
    same_delivery_id_from_other_source_is_new
);

// ---------------------------------------------------------------------------------------------
// Unsigned delivery ids (README, "HTTP API")

/// A body's SHA-256 as the receiver computes it, for a body named by `text`.
fn body_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// A delivery from `jira` whose id anybody could have written, received now, with a replay
/// window that started `window` ago; one job for `email`.
fn unsigned(id: &str, body: &str, window: TimeDelta, email: &str) -> NewDelivery {
    let received_at = Utc::now();
    NewDelivery {
        source: "jira".to_owned(),
        delivery_id: id.to_owned(),
        body_sha256: body_hash(body),
        dedupe: Dedupe::UnsignedId {
            replay_since: received_at - window,
        },
        received_at,
        max_attempts: 3,
        content: accepted(
            vec![],
            vec![chain(email, &[Action::DeletePortalCustomer], due())],
        ),
    }
}

const MONTH: TimeDelta = TimeDelta::days(30);

async fn unsigned_ids_need_the_same_body_to_be_repeats(db: TestDb) {
    let store = db.store().await;
    let first = store
        .accept_delivery(unsigned("wh-1", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    assert!(!first.duplicate);

    // The same id with another body: a delivery of its own, with its own job, answered as new
    // and showing the sender's id.
    let other = store
        .accept_delivery(unsigned("wh-1", "body-b", MONTH, "b@example.com"))
        .await
        .unwrap();
    assert!(!other.duplicate, "{}", other.body());
    assert_eq!(other.body()["delivery_id"], "wh-1");
    assert_eq!(other.body()["duplicate"], false);
    assert_eq!(receipt_ids(&other).len(), 1);
    assert_ne!(receipt_ids(&other), receipt_ids(&first));

    // The same id with the same body: the first answer again.
    let again = store
        .accept_delivery(unsigned("wh-1", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    assert!(again.duplicate);
    let mut expected = first.body().clone();
    expected["duplicate"] = json!(true);
    assert_eq!(again.body(), expected);

    let listed = store.list_deliveries(None, 10).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed.iter().all(|d| d.delivery_id == "wh-1"));
    assert_eq!(all_jobs(&*store).await.len(), 2);

    // A signed id is unchanged: the same id with another body is a repeat.
    let signed = |body: &str, email: &str| NewDelivery {
        body_sha256: body_hash(body),
        ..delivery(
            "hr",
            "evt-signed",
            accepted(vec![], vec![chain(email, &[Action::SuspendAccess], due())]),
        )
    };
    let first = store
        .accept_delivery(signed("body-c", "c@example.com"))
        .await
        .unwrap();
    let again = store
        .accept_delivery(signed("body-d", "d@example.com"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(again.duplicate);
    assert_eq!(receipt_ids(&again), receipt_ids(&first));
    assert_eq!(all_jobs(&*store).await.len(), 3);
}
both_stores!(
    unsigned_ids_need_the_same_body_on,
    unsigned_ids_need_the_same_body_to_be_repeats
);

async fn a_replayed_body_is_a_repeat_within_the_window_only(db: TestDb) {
    let store = db.store().await;
    let first = store
        .accept_delivery(unsigned("wh-1", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    // The first job finished: a new delivery would create a new one.
    let job = receipt_ids(&first)[0];
    store.cancel(job, OPERATOR, "done with").await.unwrap();

    // A fresh id, the same body, within the window: the first answer, nothing new.
    let replay = store
        .accept_delivery(unsigned("wh-2", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    assert!(replay.duplicate, "{}", replay.body());
    assert_eq!(replay.body()["delivery_id"], "wh-1", "the first answer");
    assert_eq!(receipt_ids(&replay), vec![job]);
    assert_eq!(all_jobs(&*store).await.len(), 1);
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 1);

    // The same with a window that began after the first was received: a new delivery.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let outside = store
        .accept_delivery(unsigned(
            "wh-3",
            "body-a",
            TimeDelta::milliseconds(10),
            "a@example.com",
        ))
        .await
        .unwrap();
    assert!(!outside.duplicate, "{}", outside.body());
    assert_eq!(outside.body()["delivery_id"], "wh-3");
    let new_job = receipt_ids(&outside);
    assert_eq!(new_job.len(), 1);
    assert_ne!(new_job[0], job);
    assert_eq!(show(&*store, new_job[0]).await.job.state, JobState::Pending);

    // Now the newest copy of the body is the one a replay gets.
    let replay = store
        .accept_delivery(unsigned("wh-4", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    assert!(replay.duplicate);
    assert_eq!(replay.body()["delivery_id"], "wh-3");

    // Another source's copy of the body is not this source's, and a signed id never looks
    // at bodies.
    let elsewhere = store
        .accept_delivery(NewDelivery {
            source: "bamboo".to_owned(),
            ..unsigned("wh-4", "body-a", MONTH, "z@example.com")
        })
        .await
        .unwrap();
    assert!(!elsewhere.duplicate);
    let signed = store
        .accept_delivery(NewDelivery {
            dedupe: Dedupe::SignedId,
            ..unsigned("wh-5", "body-a", MONTH, "y@example.com")
        })
        .await
        .unwrap();
    assert!(!signed.duplicate);
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 4);
}
both_stores!(
    a_replayed_body_is_a_repeat_within_the_window_on,
    a_replayed_body_is_a_repeat_within_the_window_only
);

/// Unsigned deliveries arriving together (on Postgres: one batch, plus the copies after it):
/// copies of one body under fresh ids have one winner; deliveries that share only an id are
/// each new; a body recorded before the batch replays its answer.
async fn unsigned_deliveries_arriving_together(db: TestDb) {
    let store = db.store().await;
    let before = store
        .accept_delivery(unsigned("old", "body-old", MONTH, "old@example.com"))
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..30 {
        let new = match i % 3 {
            // One body under ten fresh ids.
            0 => unsigned(
                &format!("fresh-{i}"),
                "body-same",
                MONTH,
                "same@example.com",
            ),
            // One id, ten bodies, ten people.
            1 => unsigned(
                "shared-id",
                &format!("body-{i}"),
                MONTH,
                &format!("p{i}@example.com"),
            ),
            // The body recorded before, under fresh ids.
            _ => unsigned(&format!("again-{i}"), "body-old", MONTH, "old@example.com"),
        };
        let store = store.clone();
        tasks.spawn(async move { (i, store.accept_delivery(new).await.expect("accept")) });
    }
    let receipts = tasks.join_all().await;
    let of = |kind: usize| {
        receipts
            .iter()
            .filter(move |(i, _)| i % 3 == kind)
            .map(|(_, r)| r)
    };

    let same: Vec<_> = of(0).collect();
    assert_eq!(
        same.iter().filter(|r| !r.duplicate).count(),
        1,
        "one winner"
    );
    let winner = same.iter().find(|r| !r.duplicate).unwrap();
    for receipt in &same {
        assert_eq!(receipt.body()["delivery_id"], winner.body()["delivery_id"]);
        assert_eq!(receipt_ids(receipt), receipt_ids(winner));
    }
    let shared: Vec<_> = of(1).collect();
    assert!(shared.iter().all(|r| !r.duplicate));
    let mut jobs: Vec<JobId> = shared.iter().flat_map(|r| receipt_ids(r)).collect();
    jobs.sort();
    jobs.dedup();
    assert_eq!(jobs.len(), 10, "each body its own job");
    for receipt in of(2) {
        assert!(receipt.duplicate);
        assert_eq!(receipt.body()["delivery_id"], "old");
        assert_eq!(receipt_ids(receipt), receipt_ids(&before));
    }
    // old, one of the same body, ten of the shared id.
    assert_eq!(store.list_deliveries(None, 100).await.unwrap().len(), 12);
    assert_eq!(all_jobs(&*store).await.len(), 12);
}
both_stores!(
    unsigned_deliveries_arriving_together_on,
    unsigned_deliveries_arriving_together
);

/// Signed deliveries arriving together (on Postgres: batches, which are written in one
/// statement while all they name is new, and otherwise in a transaction): each new one gets
/// its chain, answered as stored; copies of one id have one winner; deliveries for one
/// person's same action resolve to one live job.
async fn signed_deliveries_arriving_together(db: TestDb) {
    let store = db.store().await;
    let run_at = due();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..45 {
        let new = match i % 3 {
            0 => delivery(
                "hr",
                &format!("new-{i}"),
                accepted(
                    vec![],
                    vec![chain(
                        &format!("p{i}@example.com"),
                        &[Action::SuspendAccess, Action::RemoveFromGroup],
                        run_at,
                    )],
                ),
            ),
            1 => delivery(
                "hr",
                "copied",
                accepted(
                    vec![],
                    vec![chain(
                        "copied@example.com",
                        &[Action::SuspendAccess],
                        run_at,
                    )],
                ),
            ),
            _ => delivery(
                "hr",
                &format!("same-{i}"),
                accepted(
                    vec![],
                    vec![chain("same@example.com", &[Action::DeleteAccount], run_at)],
                ),
            ),
        };
        let store = store.clone();
        tasks.spawn(async move { (i, store.accept_delivery(new).await.expect("accept")) });
    }
    let receipts = tasks.join_all().await;
    let of = |kind: usize| {
        receipts
            .iter()
            .filter(move |(i, _)| i % 3 == kind)
            .map(|(_, r)| r)
    };
    for receipt in of(0) {
        assert!(!receipt.duplicate);
        let ids = receipt_ids(receipt);
        assert_eq!(ids.len(), 2, "{}", receipt.body());
        for (answered, id) in receipt.body()["jobs"].as_array().unwrap().iter().zip(&ids) {
            let stored = show(&*store, *id).await;
            assert_eq!(answered, &serde_json::to_value(&stored.job).unwrap());
            assert_eq!(stored.events.len(), 1, "one creation event");
        }
        assert_eq!(show(&*store, ids[1]).await.job.depends_on, Some(ids[0]));
    }
    let copies: Vec<_> = of(1).collect();
    assert_eq!(copies.iter().filter(|r| !r.duplicate).count(), 1);
    let winner = receipt_ids(copies.iter().find(|r| !r.duplicate).unwrap());
    assert!(copies.iter().all(|r| receipt_ids(r) == winner));
    let same: Vec<JobId> = of(2).flat_map(receipt_ids).collect();
    assert_eq!(same.len(), 15);
    assert!(same.iter().all(|id| *id == same[0]), "{same:?}");
    assert!(of(2).all(|r| !r.duplicate));
    // 15 new, one of the copies, 15 for the same person.
    assert_eq!(store.list_deliveries(None, 100).await.unwrap().len(), 31);
    assert_eq!(all_jobs(&*store).await.len(), 30 + 1 + 1);
}
both_stores!(
    signed_deliveries_arriving_together_on,
    signed_deliveries_arriving_together
);

/// A signed id is a repeat of any delivery of its source recorded under that id, also one
/// recorded while the id was not signed (the source's scheme changed since).
async fn a_signed_id_repeats_a_copy_recorded_unsigned(db: TestDb) {
    let store = db.store().await;
    let first = store
        .accept_delivery(unsigned("wh-7", "body-a", MONTH, "a@example.com"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    let signed = NewDelivery {
        source: "jira".to_owned(),
        ..delivery(
            "jira",
            "wh-7",
            accepted(
                vec![],
                vec![chain("b@example.com", &[Action::SuspendAccess], due())],
            ),
        )
    };
    let again = store.accept_delivery(signed).await.unwrap();
    assert!(again.duplicate, "{}", again.body());
    assert_eq!(receipt_ids(&again), receipt_ids(&first));
    assert_eq!(all_jobs(&*store).await.len(), 1);
}
both_stores!(
    a_signed_id_repeats_a_copy_recorded_unsigned_on,
    a_signed_id_repeats_a_copy_recorded_unsigned
);

/// On a new store, with no statistics yet, batches look for earlier copies through the
/// dedupe key, one probe per delivery, both in one statement and in a transaction. Plans
/// made for the empty table once read every delivery for each batch (or every delivery of
/// the source, through another index), and the connection kept them as the table grew.
/// Postgres only: SQLite's probe is a statement of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_store_looks_for_copies_through_the_dedupe_key() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.store().await;
    let (rounds, together) = (10, 16);
    for round in 0..rounds {
        let mut tasks = tokio::task::JoinSet::new();
        // The first round sends one delivery twice: a batch holding both, or the second,
        // goes through the transaction, whose lookup is then planned on the empty table.
        let copy = usize::from(round == 0);
        for i in 0..together + copy {
            let new = delivery(
                "hr",
                &format!("r{round}-{}", i % together),
                accepted(
                    vec![],
                    vec![chain(
                        &format!("p{round}-{}@example.com", i % together),
                        &[Action::SuspendAccess],
                        due(),
                    )],
                ),
            );
            let store = store.clone();
            tasks.spawn(async move { store.accept_delivery(new).await.expect("accept") });
        }
        let receipts = tasks.join_all().await;
        assert_eq!(receipts.iter().filter(|r| r.duplicate).count(), copy);
    }
    let delivered = (rounds * together) as i64;

    // A session's counts reach the statistics views once it has been idle for a moment.
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let (scans, seq_scans) = loop {
        let scans: HashMap<String, i64> = sqlx::query_as(
            "SELECT indexrelname::text, idx_scan FROM pg_stat_user_indexes \
             WHERE schemaname = current_schema() AND relname = 'deliveries'",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .into_iter()
        .collect();
        let (seq_scans,): (i64,) = sqlx::query_as(
            "SELECT seq_scan FROM pg_stat_user_tables \
             WHERE schemaname = current_schema() AND relname = 'deliveries'",
        )
        .fetch_one(&mut conn)
        .await
        .unwrap();
        if scans["deliveries_dedupe_key"] >= delivered || std::time::Instant::now() > deadline {
            break (scans, seq_scans);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(scans["deliveries_dedupe_key"] >= delivered, "{scans:?}");
    assert_eq!(scans["deliveries_source_body_idx"], 0, "{scans:?}");
    assert_eq!(scans["deliveries_source_id_idx"], 0, "{scans:?}");
    // Every batch reading the table would make one scan a batch, and there were at least
    // as many batches as rounds; the migrations' few scans of the empty table stay below.
    assert!(
        seq_scans < rounds as i64,
        "{seq_scans} sequential scans of deliveries"
    );
}

async fn unmappable_delivery_is_recorded_and_replayed(db: TestDb) {
    let store = db.store().await;
    let unmappable = || {
        delivery(
            "hr",
            "evt-9",
            DeliveryContent::Unmappable {
                error: "/email is missing".to_owned(),
            },
        )
    };
    let first = store.accept_delivery(unmappable()).await.unwrap();
    assert!(!first.duplicate);
    assert_eq!(first.status, DeliveryStatus::Unmappable);
    assert_eq!(
        first.body(),
        json!({ "error": "unmappable", "message": "/email is missing" })
    );

    let again = store.accept_delivery(unmappable()).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.status, DeliveryStatus::Unmappable);
    assert_eq!(again.body(), first.body());

    assert!(all_jobs(&*store).await.is_empty());
    let deliveries = store.list_deliveries(None, 10).await.unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, DeliveryStatus::Unmappable);
    assert_eq!(deliveries[0].error.as_deref(), Some("/email is missing"));
    assert!(deliveries[0].job_ids.is_empty());
}
both_stores!(
    unmappable_delivery_is_recorded_and_replayed_on,
    unmappable_delivery_is_recorded_and_replayed
);

async fn approval_chain_starts_awaiting_approval(db: TestDb) {
    let store = db.store().await;
    let receipt = accept(
        &*store,
        vec![NewChain {
            approval: true,
            ..chain(
                "a@example.com",
                &[Action::SuspendAccess, Action::DeleteAccount],
                due(),
            )
        }],
    )
    .await;
    let ids = receipt_ids(&receipt);
    assert_eq!(ids.len(), 2);
    for id in &ids {
        let job = show(&*store, *id).await;
        assert_eq!(job.job.state, JobState::AwaitingApproval);
        assert_eq!(job.events[0].from, None);
        assert_eq!(job.events[0].to, JobState::AwaitingApproval);
    }
    assert_eq!(receipt.body()["jobs"][0]["state"], "awaiting_approval");
    assert!(
        store.claim_due(WORKER, 10, LEASE).await.unwrap().is_empty(),
        "awaiting jobs are not claimable even when due"
    );
}
both_stores!(
    approval_chain_starts_awaiting_approval_on,
    approval_chain_starts_awaiting_approval
);

/// Mass offboarding (README, "HTTP API"): above the limit every chain starts awaiting approval and
/// the answer and the delivery row say why; at the limit nothing changes. Jobs are counted
/// per (action, person), every step of a chain included.
async fn mass_deliveries_wait_for_approval(db: TestDb) {
    let store = db.store().await;
    let two_steps = |email: &str| {
        chain(
            email,
            &[Action::SuspendAccess, Action::DeleteAccount],
            later(),
        )
    };
    // Three jobs asked for (the repeated chain adds none): exactly the limit.
    let mut at_limit = accepted(
        vec![],
        vec![
            two_steps("x1@example.com"),
            chain("x2@example.com", &[Action::SuspendAccess], later()),
            chain("x1@example.com", &[Action::SuspendAccess], later()),
        ],
    );
    at_limit.require_approval_above(3);
    let DeliveryContent::Accepted {
        chains,
        approval_required,
        ..
    } = &at_limit
    else {
        unreachable!()
    };
    assert!(approval_required.is_none());
    assert!(chains.iter().all(|c| !c.approval));

    // Deliveries arriving together, so Postgres writes them as one batch: held ones, a
    // plain one, and a held one that repeats a person (which goes alone).
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..6 {
        let mut content = match i {
            0 => at_limit.clone(),
            5 => accepted(
                vec![],
                vec![
                    two_steps("y5@example.com"),
                    two_steps("z5@example.com"),
                    two_steps("y5@example.com"),
                ],
            ),
            _ => accepted(
                vec![],
                vec![
                    two_steps(&format!("y{i}@example.com")),
                    two_steps(&format!("z{i}@example.com")),
                ],
            ),
        };
        content.require_approval_above(3);
        let store = store.clone();
        let new = delivery("hr", &format!("mass-{i}"), content);
        tasks.spawn(async move { (i, store.accept_delivery(new).await.expect("accept")) });
    }
    let receipts = tasks.join_all().await;
    for (i, receipt) in &receipts {
        let ids = receipt_ids(receipt);
        let states: Vec<JobState> = {
            let mut states = Vec::new();
            for id in &ids {
                states.push(show(&*store, *id).await.job.state);
            }
            states
        };
        if *i == 0 {
            assert_eq!(ids.len(), 3, "{}", receipt.body());
            assert!(states.iter().all(|s| *s == JobState::Pending), "{states:?}");
            assert!(
                receipt.body().get("approval_required").is_none(),
                "{}",
                receipt.body()
            );
            continue;
        }
        assert_eq!(ids.len(), 4, "{}", receipt.body());
        assert!(
            states.iter().all(|s| *s == JobState::AwaitingApproval),
            "{i}: {states:?}"
        );
        let body = receipt.body();
        let reason = body["approval_required"].as_str().expect("a reason");
        assert!(reason.contains("4 jobs"), "{reason}");
        for job in receipt.body()["jobs"].as_array().unwrap() {
            assert_eq!(job["state"], "awaiting_approval");
        }
        let created = &show(&*store, ids[0]).await.events[0].detail;
        assert!(created.contains(reason), "{created}");
    }
    for listed in store.list_deliveries(None, 10).await.unwrap() {
        assert_eq!(
            listed.approval_required.is_some(),
            listed.delivery_id != "mass-0",
            "{listed:?}"
        );
    }
    // The reason is replayed with the first answer.
    let again = store
        .accept_delivery(delivery("hr", "mass-1", accepted(vec![], vec![])))
        .await
        .unwrap();
    assert!(again.duplicate);
    assert!(
        again.body()["approval_required"].is_string(),
        "{}",
        again.body()
    );
}
both_stores!(
    mass_deliveries_wait_for_approval_on,
    mass_deliveries_wait_for_approval
);

// ---------------------------------------------------------------------------------------------
// One live job per (action, email)

async fn one_live_job_per_person_and_action(db: TestDb) {
    let store = db.store().await;
    let email = "leaver@example.com";
    let first = enqueue(&*store, email, Action::SuspendAccess, due()).await;

    let again = accept(&*store, vec![chain(email, &[Action::SuspendAccess], due())]).await;
    assert_eq!(receipt_ids(&again), vec![first.id], "pending job is reused");
    let other_action = enqueue(&*store, email, Action::DeleteAccount, later()).await;
    assert_ne!(other_action.id, first.id, "another action is another job");
    assert_eq!(all_jobs(&*store).await.len(), 2);

    // Running is live too.
    let claimed = claim_exactly(&*store, first.id, LEASE).await;
    let while_running = accept(&*store, vec![chain(email, &[Action::SuspendAccess], due())]).await;
    assert_eq!(receipt_ids(&while_running), vec![first.id]);

    // Each way of finishing frees the slot for a new job.
    assert!(store.complete(&claimed, Outcome::Done, "ok").await.unwrap());
    let after_success = enqueue(&*store, email, Action::SuspendAccess, due()).await;
    assert_ne!(after_success.id, first.id);

    let claimed = claim_exactly(&*store, after_success.id, LEASE).await;
    assert!(store.fail(&claimed, "api_error:403", "no").await.unwrap());
    let after_failure = enqueue(&*store, email, Action::SuspendAccess, due()).await;
    assert!(![first.id, after_success.id].contains(&after_failure.id));

    store
        .cancel(after_failure.id, OPERATOR, "mistake")
        .await
        .unwrap();
    let after_cancel = enqueue(&*store, email, Action::SuspendAccess, later()).await;
    assert!(![first.id, after_success.id, after_failure.id].contains(&after_cancel.id));

    // Awaiting approval is live: an unapproved request returns it.
    let awaiting = job_in_state(
        &*store,
        JobState::AwaitingApproval,
        email,
        Action::RemoveFromDirectory,
    )
    .await;
    let plain = accept(
        &*store,
        vec![chain(email, &[Action::RemoveFromDirectory], due())],
    )
    .await;
    assert_eq!(receipt_ids(&plain), vec![awaiting.id]);
    assert_eq!(all_jobs(&*store).await.len(), 6);
}
both_stores!(
    one_live_job_per_person_and_action_on,
    one_live_job_per_person_and_action
);

// ---------------------------------------------------------------------------------------------
// One live job per (action, email, target)

/// One rule's steps for one person, each an action with the id it takes (`group_id`, …).
fn targeted(email: &str, steps: &[(Action, &str)], run_at: DateTime<Utc>) -> NewChain {
    NewChain {
        steps: steps
            .iter()
            .map(|&(action, id)| {
                let name = action.required_param().expect("an action that takes an id");
                NewStep {
                    action,
                    params: json!({ name: id }).as_object().cloned().unwrap(),
                    run_at,
                    lane: offboard::domain::Lane::Bulk,
                }
            })
            .collect(),
        ..chain(email, &[], run_at)
    }
}

/// Removing a person from two groups makes two jobs; the same group again finds the live
/// one. On Postgres a plain delivery takes the batch path and one with a cancel goes alone:
/// both key by target.
async fn one_live_job_per_person_action_and_target(db: TestDb) {
    let store = db.store().await;
    let ann = "ann@example.com";
    let group = Action::RemoveFromGroup;
    let both = accept(
        &*store,
        vec![targeted(ann, &[(group, "g-1"), (group, "g-2")], later())],
    )
    .await;
    let ids = receipt_ids(&both);
    assert_eq!(ids.len(), 2, "two groups, two jobs: {}", both.body());
    let (g1, g2) = (
        show(&*store, ids[0]).await.job,
        show(&*store, ids[1]).await.job,
    );
    assert_eq!(
        (g1.param("group_id"), g2.param("group_id")),
        (Some("g-1"), Some("g-2"))
    );
    assert_eq!(
        g2.depends_on,
        Some(g1.id),
        "the second step waits for the first"
    );

    let again = accept(&*store, vec![targeted(ann, &[(group, "g-2")], due())]).await;
    assert_eq!(
        receipt_ids(&again),
        vec![g2.id],
        "the live job of that group"
    );

    let alone = store
        .accept_delivery(delivery(
            "hr",
            &fresh_delivery_id(),
            accepted(
                vec![NewCancel {
                    email: Email::parse("someone-else@example.com").unwrap(),
                    rule: "rehired".to_owned(),
                }],
                vec![targeted(ann, &[(group, "g-1"), (group, "g-3")], due())],
            ),
        ))
        .await
        .unwrap();
    let alone_ids = receipt_ids(&alone);
    assert_eq!(alone_ids.len(), 2, "{}", alone.body());
    assert_eq!(alone_ids[0], g1.id, "g-1 is live already");
    assert!(!ids.contains(&alone_ids[1]), "g-3 is new");

    // One delivery asking twice for one group (it goes alone) gets one job.
    let twice = accept(
        &*store,
        vec![
            targeted(ann, &[(group, "g-4")], later()),
            targeted(ann, &[(group, "g-4")], later()),
        ],
    )
    .await;
    assert_eq!(receipt_ids(&twice).len(), 1, "{}", twice.body());

    // Desks and organizations key the same way; an id is a target of its own action only,
    // and an action without a target keeps one live job per person.
    let customer = "cus@example.com";
    let many = accept(
        &*store,
        vec![
            targeted(
                customer,
                &[
                    (Action::RemoveFromServiceDesk, "10"),
                    (Action::RemoveFromServiceDesk, "11"),
                    (Action::RemoveFromCustomerOrganization, "10"),
                    (Action::AddToServiceDesk, "10"),
                ],
                later(),
            ),
            chain(customer, &[Action::RevokePortalAccess], later()),
            chain(customer, &[Action::RevokePortalAccess], later()),
        ],
    )
    .await;
    assert_eq!(receipt_ids(&many).len(), 5, "{}", many.body());
    assert_eq!(all_jobs(&*store).await.len(), 3 + 1 + 5);
}
both_stores!(
    one_live_job_per_person_action_and_target_on,
    one_live_job_per_person_action_and_target
);

/// A retry runs into another live job only of the same target.
async fn retry_refused_only_by_a_live_job_of_the_same_target(db: TestDb) {
    let store = db.store().await;
    let email = "a@example.com";
    let group = Action::RemoveFromGroup;
    let failed = |id: &'static str| {
        let store = store.clone();
        async move {
            let receipt = accept(&*store, vec![targeted(email, &[(group, id)], due())]).await;
            let claimed = claim_exactly(&*store, receipt_ids(&receipt)[0], LEASE).await;
            assert!(store.fail(&claimed, "api_error:500", "boom").await.unwrap());
            claimed.id
        }
    };
    let g1 = failed("g-1").await;
    let g2 = failed("g-2").await;
    let live = accept(&*store, vec![targeted(email, &[(group, "g-1")], later())]).await;
    assert!(!receipt_ids(&live).contains(&g1));

    let retried = store.retry(g2, OPERATOR).await.expect("no live job of g-2");
    assert_eq!(retried.state, JobState::Pending);
    match store.retry(g1, OPERATOR).await {
        Err(StoreError::LiveJobExists { id, action }) => assert_eq!((id, action), (g1, group)),
        other => panic!("expected LiveJobExists, got {other:?}"),
    }
}
both_stores!(
    retry_refused_only_by_a_live_job_of_the_same_target_on,
    retry_refused_only_by_a_live_job_of_the_same_target
);

/// Deliveries arriving together (one batch, one transaction): a person
/// every one of them removes from two groups and two desks gets one job per group and desk,
/// shared by all of them.
async fn deliveries_arriving_together_key_by_target(db: TestDb) {
    let store = db.store().await;
    let before = accept(
        &*store,
        vec![targeted(
            "shared@example.com",
            &[(Action::RemoveFromServiceDesk, "10")],
            later(),
        )],
    )
    .await;
    let desk_10 = receipt_ids(&before)[0];
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let chains = vec![
                targeted(
                    "shared@example.com",
                    &[
                        (Action::RemoveFromGroup, "g-1"),
                        (Action::RemoveFromGroup, "g-2"),
                    ],
                    due(),
                ),
                targeted(
                    "shared@example.com",
                    &[
                        (Action::RemoveFromServiceDesk, "10"),
                        (Action::RemoveFromServiceDesk, "11"),
                    ],
                    due(),
                ),
                targeted(
                    &format!("own{i}@example.com"),
                    &[(Action::RemoveFromGroup, "g-1")],
                    due(),
                ),
            ];
            store
                .accept_delivery(delivery(
                    "hr",
                    &format!("together-{i}"),
                    accepted(vec![], chains),
                ))
                .await
                .unwrap()
        });
    }
    let mut shared = HashSet::new();
    for receipt in tasks.join_all().await {
        let ids = receipt_ids(&receipt);
        assert_eq!(ids.len(), 5, "{}", receipt.body());
        assert_eq!(ids[2], desk_10, "the live job of desk 10 that was there");
        shared.insert(ids[..4].to_vec());
    }
    assert_eq!(shared.len(), 1, "one job per group and desk: {shared:?}");
    let ids = shared.into_iter().next().unwrap();
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4, "{ids:?}");
    assert_eq!(all_jobs(&*store).await.len(), 4 + 20);
}
both_stores!(
    deliveries_arriving_together_key_by_target_on,
    deliveries_arriving_together_key_by_target
);

// ---------------------------------------------------------------------------------------------
// Cancel rules

async fn cancel_rule_cancels_live_jobs_of_that_email(db: TestDb) {
    let store = db.store().await;
    let x = "rehired@example.com";
    let succeeded = job_in_state(&*store, JobState::Succeeded, x, Action::DeleteAccount).await;
    let failed = job_in_state(&*store, JobState::Failed, x, Action::RemoveFromGroup).await;
    let running = job_in_state(&*store, JobState::Running, x, Action::RemoveFromDirectory).await;
    // Pending with a dependent step, from another source than the cancel.
    let chained = store
        .accept_delivery(delivery(
            "jira",
            &fresh_delivery_id(),
            accepted(
                vec![],
                vec![chain(
                    x,
                    &[Action::SuspendAccess, Action::RevokePortalAccess],
                    later(),
                )],
            ),
        ))
        .await
        .unwrap();
    let chained = receipt_ids(&chained);
    let awaiting = job_in_state(
        &*store,
        JobState::AwaitingApproval,
        x,
        Action::DeactivateAccount,
    )
    .await;
    let bystander = enqueue(&*store, "stays@example.com", Action::SuspendAccess, later()).await;
    let untouched = [succeeded.id, failed.id, running.id, bystander.id];
    let mut before = Vec::new();
    for id in untouched {
        before.push(show(&*store, id).await);
    }

    let receipt = store
        .accept_delivery(delivery(
            "hr2",
            "evt-rehire",
            accepted(
                vec![NewCancel {
                    email: Email::parse(x).unwrap(),
                    rule: "rehire".to_owned(),
                }],
                vec![],
            ),
        ))
        .await
        .unwrap();

    let cancelled = sorted(string_ids(&receipt.body()["cancelled"]));
    assert_eq!(
        cancelled,
        sorted(vec![chained[0], chained[1], awaiting.id]),
        "{}",
        receipt.body()
    );
    assert_eq!(receipt.body()["jobs"], json!([]));
    for id in [chained[0], chained[1], awaiting.id] {
        let job = show(&*store, id).await;
        assert_eq!(job.job.state, JobState::Cancelled, "job {id}");
        let last = job.events.last().unwrap();
        assert_eq!(last.to, JobState::Cancelled);
        assert!(last.from.is_some_and(JobState::is_live));
    }
    let direct = show(&*store, chained[0]).await;
    assert_eq!(
        direct.job.last_error.as_deref(),
        Some("cancelled by rule rehire")
    );
    assert_eq!(direct.events.last().unwrap().actor, "source:hr2");
    assert_eq!(
        show(&*store, awaiting.id).await.events.last().unwrap().from,
        Some(JobState::AwaitingApproval)
    );
    for job in &before {
        assert_unchanged(&*store, job).await;
    }
}
both_stores!(
    cancel_rule_cancels_live_jobs_of_that_email_on,
    cancel_rule_cancels_live_jobs_of_that_email
);

// ---------------------------------------------------------------------------------------------
// claim_due

async fn claim_due_takes_only_claimable_jobs(db: TestDb) {
    let store = db.store().await;
    let ready = enqueue(&*store, "ready@example.com", Action::SuspendAccess, due()).await;
    let not_due = enqueue(&*store, "later@example.com", Action::SuspendAccess, later()).await;
    job_in_state(
        &*store,
        JobState::AwaitingApproval,
        "wait@example.com",
        Action::SuspendAccess,
    )
    .await;
    let chained = accept(
        &*store,
        vec![chain(
            "chain@example.com",
            &[Action::SuspendAccess, Action::DeleteAccount],
            due(),
        )],
    )
    .await;
    let [head, tail] = receipt_ids(&chained)[..] else {
        panic!("two steps");
    };

    let claimed = store.claim_due(WORKER, 10, LEASE).await.unwrap();
    assert_eq!(
        sorted(claimed.iter().map(|j| j.id).collect()),
        sorted(vec![ready.id, head])
    );
    for job in &claimed {
        assert_eq!(job.state, JobState::Running);
        assert_eq!(job.attempts, 1);
        assert_eq!(job.claim_seq, 1);
        assert_eq!(job.lease_owner.as_deref(), Some(WORKER));
        let stored = show(&*store, job.id).await;
        assert_eq!(stored.job.state, JobState::Running);
        assert_eq!(stored.job.claim_seq, 1);
        let event = stored.events.last().unwrap();
        assert_eq!(event.from, Some(JobState::Pending));
        assert_eq!(event.to, JobState::Running);
        assert_eq!(event.actor, format!("worker:{WORKER}"));
    }
    assert!(
        store.claim_due(WORKER, 10, LEASE).await.unwrap().is_empty(),
        "the next step waits while the first is running"
    );
    assert_eq!(show(&*store, not_due.id).await.job.state, JobState::Pending);

    let head_job = claimed.iter().find(|j| j.id == head).unwrap();
    assert!(store.complete(head_job, Outcome::Done, "ok").await.unwrap());
    let next = claim_exactly(&*store, tail, LEASE).await;
    assert_eq!(next.depends_on, Some(head));
}
both_stores!(
    claim_due_takes_only_claimable_jobs_on,
    claim_due_takes_only_claimable_jobs
);

async fn claim_due_respects_limit(db: TestDb) {
    let store = db.store().await;
    let chains = (0..5)
        .map(|i| {
            chain(
                &format!("p{i}@example.com"),
                &[Action::SuspendAccess],
                due(),
            )
        })
        .collect();
    accept(&*store, chains).await;

    let first = store.claim_due(WORKER, 2, LEASE).await.unwrap();
    assert_eq!(first.len(), 2);
    let second = store.claim_due("w2", 2, LEASE).await.unwrap();
    assert_eq!(second.len(), 2);
    let third = store.claim_due(WORKER, 2, LEASE).await.unwrap();
    assert_eq!(third.len(), 1);
    assert!(store.claim_due(WORKER, 2, LEASE).await.unwrap().is_empty());
    let ids: HashSet<JobId> = first
        .iter()
        .chain(&second)
        .chain(&third)
        .map(|j| j.id)
        .collect();
    assert_eq!(ids.len(), 5);
    assert!(
        second
            .iter()
            .all(|j| j.lease_owner.as_deref() == Some("w2"))
    );
}
both_stores!(claim_due_respects_limit_on, claim_due_respects_limit);

// ---------------------------------------------------------------------------------------------
// complete / fail / retry_later

async fn complete_finishes_a_claimed_job(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    let claimed = claim_exactly(&*store, job.id, LEASE).await;

    assert!(
        store
            .complete(&claimed, Outcome::AlreadyDone, "already suspended")
            .await
            .unwrap()
    );
    let done = show(&*store, job.id).await;
    assert_eq!(done.job.state, JobState::Succeeded);
    assert_eq!(done.job.outcome, Some(Outcome::AlreadyDone));
    assert_eq!(done.job.lease_owner, None);
    let event = done.events.last().unwrap();
    assert_eq!(event.from, Some(JobState::Running));
    assert_eq!(event.to, JobState::Succeeded);
    assert_eq!(event.actor, format!("worker:{WORKER}"));
    assert_eq!(event.detail, "already suspended");

    // No longer running: every worker write is refused and changes nothing.
    assert!(
        !store
            .complete(&claimed, Outcome::Done, "again")
            .await
            .unwrap()
    );
    assert!(!store.fail(&claimed, "late", "late").await.unwrap());
    assert!(
        !store
            .retry_later(&claimed, due(), false, Some("late"), "late")
            .await
            .unwrap()
    );
    assert_unchanged(&*store, &done).await;
}
both_stores!(
    complete_finishes_a_claimed_job_on,
    complete_finishes_a_claimed_job
);

async fn fail_cancels_the_rest_of_the_chain(db: TestDb) {
    let store = db.store().await;
    let receipt = accept(
        &*store,
        vec![chain(
            "a@example.com",
            &[
                Action::SuspendAccess,
                Action::RemoveFromDirectory,
                Action::DeleteAccount,
            ],
            due(),
        )],
    )
    .await;
    let ids = receipt_ids(&receipt);
    let unrelated = enqueue(&*store, "b@example.com", Action::SuspendAccess, later()).await;
    let claimed = claim_exactly(&*store, ids[0], LEASE).await;

    assert!(
        store
            .fail(&claimed, "api_error:403", "forbidden: body")
            .await
            .unwrap()
    );
    let failed = show(&*store, ids[0]).await;
    assert_eq!(failed.job.state, JobState::Failed);
    assert_eq!(failed.job.last_error.as_deref(), Some("api_error:403"));
    assert_eq!(failed.job.lease_owner, None);
    let event = failed.events.last().unwrap();
    assert_eq!(
        (event.from, event.to),
        (Some(JobState::Running), JobState::Failed)
    );
    assert_eq!(event.detail, "forbidden: body");

    for id in &ids[1..] {
        let job = show(&*store, *id).await;
        assert_eq!(job.job.state, JobState::Cancelled, "step {id}");
        assert_eq!(job.job.last_error.as_deref(), Some("previous_step_failed"));
        let event = job.events.last().unwrap();
        assert_eq!(
            (event.from, event.to),
            (Some(JobState::Pending), JobState::Cancelled)
        );
    }
    assert_eq!(
        show(&*store, unrelated.id).await.job.state,
        JobState::Pending
    );
}
both_stores!(
    fail_cancels_the_rest_of_the_chain_on,
    fail_cancels_the_rest_of_the_chain
);

async fn retry_later_counts_or_refunds_the_attempt(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;

    let claimed = claim_exactly(&*store, job.id, LEASE).await;
    assert_eq!(claimed.attempts, 1);
    let retry_at = due();
    assert!(
        store
            .retry_later(&claimed, retry_at, false, Some("api_error:500"), "backoff")
            .await
            .unwrap()
    );
    let waiting = show(&*store, job.id).await;
    assert_eq!(waiting.job.state, JobState::Pending);
    assert_eq!(waiting.job.attempts, 1, "the try counted");
    assert_eq!(waiting.job.last_error.as_deref(), Some("api_error:500"));
    assert_eq!(waiting.job.lease_owner, None);
    assert_eq!(
        waiting.job.run_at.timestamp_micros(),
        retry_at.timestamp_micros()
    );
    let event = waiting.events.last().unwrap();
    assert_eq!(
        (event.from, event.to),
        (Some(JobState::Running), JobState::Pending)
    );
    assert_eq!(event.actor, format!("worker:{WORKER}"));
    assert_eq!(event.detail, "backoff");

    let claimed = claim_exactly(&*store, job.id, LEASE).await;
    assert_eq!(claimed.attempts, 2);
    assert_eq!(claimed.claim_seq, 2);
    assert!(
        store
            .retry_later(&claimed, later(), true, None, "rate limited")
            .await
            .unwrap()
    );
    let snoozed = show(&*store, job.id).await.job;
    assert_eq!(snoozed.state, JobState::Pending);
    assert_eq!(snoozed.attempts, 1, "a snooze gives the attempt back");
    assert_eq!(
        snoozed.last_error.as_deref(),
        Some("api_error:500"),
        "no new error keeps the last one"
    );
    assert!(
        store.claim_due(WORKER, 10, LEASE).await.unwrap().is_empty(),
        "snoozed until run_at"
    );
}
both_stores!(
    retry_later_counts_or_refunds_the_attempt_on,
    retry_later_counts_or_refunds_the_attempt
);

async fn stale_claim_cannot_write(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    let stale = claim_exactly(&*store, job.id, Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.rescue_expired().await.unwrap(), vec![job.id]);
    let fresh = claim_exactly(&*store, job.id, LEASE).await;
    assert_eq!(fresh.claim_seq, stale.claim_seq + 1);
    let before = show(&*store, job.id).await;

    assert!(!store.complete(&stale, Outcome::Done, "late").await.unwrap());
    assert!(!store.fail(&stale, "late", "late").await.unwrap());
    assert!(
        !store
            .record_account(&stale, "qm:late", "customer")
            .await
            .unwrap()
    );
    assert!(
        !store
            .retry_later(&stale, due(), false, Some("late"), "late")
            .await
            .unwrap()
    );
    assert!(
        !store
            .retry_later(&stale, due(), true, None, "late")
            .await
            .unwrap()
    );
    assert_unchanged(&*store, &before).await;

    assert!(store.complete(&fresh, Outcome::Done, "ok").await.unwrap());
    assert_eq!(show(&*store, job.id).await.job.state, JobState::Succeeded);
}
both_stores!(stale_claim_cannot_write_on, stale_claim_cannot_write);

/// The account a running job records stays with it: through a lost lease and a re-run, and
/// once finished. It is not part of the enqueued job before.
async fn the_recorded_account_stays_with_the_job(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(
        &*store,
        "a@example.com",
        Action::DeletePortalCustomer,
        due(),
    )
    .await;
    assert_eq!(
        (job.account_id.as_deref(), job.account_type.as_deref()),
        (None, None)
    );
    assert!(
        !store
            .record_account(&job, "qm:1", "customer")
            .await
            .unwrap(),
        "only a running job records its account"
    );
    let claimed = claim_exactly(&*store, job.id, Duration::from_millis(1)).await;
    assert!(
        store
            .record_account(&claimed, "qm:1", "customer")
            .await
            .unwrap()
    );
    let read = store.job(job.id).await.unwrap().expect("the job");
    assert_eq!(read.account_id.as_deref(), Some("qm:1"));
    assert_eq!(read.account_type.as_deref(), Some("customer"));
    assert_eq!(read.state, JobState::Running);

    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.rescue_expired().await.unwrap(), vec![job.id]);
    let rerun = claim_exactly(&*store, job.id, LEASE).await;
    assert_eq!(rerun.account_id.as_deref(), Some("qm:1"));
    assert_eq!(rerun.account_type.as_deref(), Some("customer"));
    assert!(
        store
            .complete(&rerun, Outcome::AlreadyDone, "404")
            .await
            .unwrap()
    );
    let done = show(&*store, job.id).await.job;
    assert_eq!(done.account_id.as_deref(), Some("qm:1"));
    assert_eq!(done.account_type.as_deref(), Some("customer"));
    assert!(store.job(JobId(i64::MAX)).await.unwrap().is_none());
}
both_stores!(
    the_recorded_account_stays_with_the_job_on,
    the_recorded_account_stays_with_the_job
);

/// The email filter folds ASCII case only: a KELVIN SIGN is not a `k`.
async fn the_email_filter_folds_ascii_case_only(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(
        &*store,
        "kelvin@example.com",
        Action::SuspendAccess,
        later(),
    )
    .await;
    let find = |email: &str| JobFilter {
        email: Some(email.to_owned()),
        limit: 10,
        ..JobFilter::default()
    };
    let found = store.list_jobs(&find("KELVIN@Example.com")).await.unwrap();
    assert_eq!(found.iter().map(|j| j.id).collect::<Vec<_>>(), [job.id]);
    let look_alike = store
        .list_jobs(&find("\u{212A}elvin@example.com"))
        .await
        .unwrap();
    assert!(look_alike.is_empty(), "{look_alike:#?}");
}
both_stores!(
    the_email_filter_folds_ascii_case_only_on,
    the_email_filter_folds_ascii_case_only
);

/// Accounts are recorded in batches; each item is answered for its own claim.
async fn accounts_are_recorded_in_batches(db: TestDb) {
    let store = db.store().await;
    let a = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    let b = enqueue(&*store, "b@example.com", Action::SuspendAccess, due()).await;
    let claimed = store.claim_due(WORKER, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let record = |job: &Job, account: &str| AccountRecord {
        job: job.clone(),
        account_id: account.to_owned(),
        account_type: "atlassian".to_owned(),
        successor_account_id: Some(format!("successor-of-{account}")),
    };
    let mut stale = claimed[1].clone();
    stale.claim_seq -= 1;
    let written = store
        .record_accounts(&[record(&claimed[0], "acc-a"), record(&stale, "acc-b")])
        .await
        .unwrap();
    assert_eq!(written, [true, false]);
    assert_eq!(
        show(&*store, a.id).await.job.account_id.as_deref(),
        Some("acc-a")
    );
    assert_eq!(
        show(&*store, a.id)
            .await
            .job
            .successor_account_id
            .as_deref(),
        Some("successor-of-acc-a")
    );
    assert_eq!(show(&*store, b.id).await.job.account_id, None);
    assert!(store.record_accounts(&[]).await.unwrap().is_empty());
    // A record without a successor keeps the one the job has.
    let mut again = record(&claimed[0], "acc-a");
    again.successor_account_id = None;
    assert_eq!(store.record_accounts(&[again]).await.unwrap(), [true]);
    assert_eq!(
        show(&*store, a.id)
            .await
            .job
            .successor_account_id
            .as_deref(),
        Some("successor-of-acc-a")
    );
}

/// A hand-over's progress is written while its claim holds, with an event per batch, and
/// read back with the job; a stale claim writes nothing.
async fn hand_over_progress_is_recorded_with_the_job(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "l@example.com", Action::TransferFilters, due()).await;
    let claimed = store.claim_due(WORKER, 1, LEASE).await.unwrap().remove(0);
    let mut done = offboard::domain::HandedOver::default();
    done.moved("filter:1".into());
    done.kept("filter:2".into(), "HTTP 403".into());
    done.tasks.push("task-9".into());
    assert!(
        store
            .record_handover(&claimed, &done, "gave filter:1")
            .await
            .unwrap()
    );
    let shown = show(&*store, job.id).await;
    assert_eq!(shown.job.handover.as_ref(), Some(&done));
    assert!(
        shown
            .events
            .iter()
            .any(|e| e.detail == "gave filter:1" && e.to == JobState::Running)
    );
    let mut stale = claimed.clone();
    stale.claim_seq -= 1;
    assert!(
        !store
            .record_handover(&stale, &Default::default(), "stale")
            .await
            .unwrap()
    );
    assert_eq!(show(&*store, job.id).await.job.handover, Some(done));
}
both_stores!(
    hand_over_progress_is_recorded_with_the_job_on,
    hand_over_progress_is_recorded_with_the_job
);
both_stores!(
    accounts_are_recorded_in_batches_on,
    accounts_are_recorded_in_batches
);

/// `permission` is a pause reason like the others, kept until a resume.
async fn pause_for_a_missing_permission(db: TestDb) {
    let store = db.store().await;
    let state = store.pause(PauseReason::Permission).await.unwrap();
    assert_eq!(state.reason, Some(PauseReason::Permission));
    let again = store.pause(PauseReason::Auth).await.unwrap();
    assert_eq!(
        again.reason,
        Some(PauseReason::Permission),
        "the first reason stays"
    );
    assert!(store.claim_due(WORKER, 10, LEASE).await.unwrap().is_empty());
    assert!(!store.resume().await.unwrap().paused);
}
both_stores!(
    pause_for_a_missing_permission_on,
    pause_for_a_missing_permission
);

// ---------------------------------------------------------------------------------------------
// rescue_expired

async fn rescue_returns_expired_jobs_to_pending(db: TestDb) {
    let store = db.store().await;
    let held = enqueue(&*store, "held@example.com", Action::SuspendAccess, due()).await;
    let held = claim_exactly(&*store, held.id, LEASE).await;
    let lost = enqueue(&*store, "lost@example.com", Action::SuspendAccess, due()).await;
    let lost_claim = claim_exactly(&*store, lost.id, Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(store.rescue_expired().await.unwrap(), vec![lost.id]);
    let rescued = show(&*store, lost.id).await;
    assert_eq!(rescued.job.state, JobState::Pending);
    assert_eq!(rescued.job.last_error.as_deref(), Some("lease_expired"));
    assert_eq!(rescued.job.lease_owner, None);
    assert_eq!(rescued.job.attempts, 1);
    let event = rescued.events.last().unwrap();
    assert_eq!(
        (event.from, event.to),
        (Some(JobState::Running), JobState::Pending)
    );
    assert_eq!(event.actor, "offboard");
    assert_eq!(show(&*store, held.id).await.job.state, JobState::Running);
    assert!(store.rescue_expired().await.unwrap().is_empty());

    assert!(
        !store
            .complete(&lost_claim, Outcome::Done, "late")
            .await
            .unwrap()
    );
    assert_unchanged(&*store, &rescued).await;
    let again = claim_exactly(&*store, lost.id, LEASE).await;
    assert_eq!(again.attempts, 2);
}
both_stores!(
    rescue_returns_expired_jobs_to_pending_on,
    rescue_returns_expired_jobs_to_pending
);

async fn rescue_fails_jobs_out_of_attempts(db: TestDb) {
    let store = db.store().await;
    let chains = vec![chain(
        "a@example.com",
        &[Action::SuspendAccess, Action::DeleteAccount],
        due(),
    )];
    let one_attempt = NewDelivery {
        max_attempts: 1,
        ..delivery("hr", &fresh_delivery_id(), accepted(vec![], chains))
    };
    let receipt = store.accept_delivery(one_attempt).await.unwrap();
    let ids = receipt_ids(&receipt);
    let claimed = claim_exactly(&*store, ids[0], Duration::from_millis(1)).await;
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert_eq!(store.rescue_expired().await.unwrap(), vec![ids[0]]);
    let failed = show(&*store, ids[0]).await;
    assert_eq!(failed.job.state, JobState::Failed);
    assert_eq!(failed.job.last_error.as_deref(), Some("max_attempts"));
    assert_eq!(
        failed.events.last().map(|e| (e.from, e.to)),
        Some((Some(JobState::Running), JobState::Failed))
    );
    let dependent = show(&*store, ids[1]).await.job;
    assert_eq!(dependent.state, JobState::Cancelled);
    assert_eq!(
        dependent.last_error.as_deref(),
        Some("previous_step_failed")
    );

    assert!(
        !store
            .complete(&claimed, Outcome::Done, "late")
            .await
            .unwrap()
    );
    assert_unchanged(&*store, &failed).await;
}
both_stores!(
    rescue_fails_jobs_out_of_attempts_on,
    rescue_fails_jobs_out_of_attempts
);

// ---------------------------------------------------------------------------------------------
// Operator transitions

async fn operate(store: &dyn Store, transition: Transition, id: JobId) -> StoreResult<Job> {
    match transition {
        Transition::Cancel => store.cancel(id, OPERATOR, "left by mistake").await,
        Transition::Approve => store.approve(id, OPERATOR).await,
        Transition::Retry => store.retry(id, OPERATOR).await,
    }
}

/// README, "Jobs: states and outcomes", written out independently of the store's own table.
fn expected_target(transition: Transition, from: JobState) -> Option<JobState> {
    use JobState::*;
    match (transition, from) {
        (Transition::Cancel, Pending | AwaitingApproval) => Some(Cancelled),
        (Transition::Approve, AwaitingApproval) => Some(Pending),
        (Transition::Retry, Failed) => Some(Pending),
        _ => None,
    }
}

async fn operator_transitions_follow_the_state_machine(db: TestDb) {
    let store = db.store().await;
    // States outer: the running job of each round must be the only due one.
    for from in JobState::ALL {
        for transition in [Transition::Cancel, Transition::Approve, Transition::Retry] {
            let email = format!("{transition}-{from}@example.com");
            let job = job_in_state(&*store, from, &email, Action::SuspendAccess).await;
            let before = show(&*store, job.id).await;
            let result = operate(&*store, transition, job.id).await;
            let Some(to) = expected_target(transition, from) else {
                assert_invalid(result, job.id, transition, from);
                assert_unchanged(&*store, &before).await;
                continue;
            };
            let returned = result.unwrap_or_else(|e| panic!("{transition} from {from}: {e}"));
            assert_eq!(returned.state, to, "{transition} from {from}");
            let after = show(&*store, job.id).await;
            assert_eq!(after.job.state, to);
            assert_eq!(after.events.len(), before.events.len() + 1);
            let event = after.events.last().unwrap();
            assert_eq!((event.from, event.to), (Some(from), to));
            assert_eq!(event.actor, OPERATOR);
            assert!(!event.detail.is_empty());
            if transition == Transition::Cancel {
                assert_eq!(event.detail, "left by mistake");
                assert_eq!(after.job.last_error.as_deref(), Some("left by mistake"));
            }
            if transition == Transition::Retry {
                assert_eq!(after.job.attempts, 0);
                assert_eq!(after.job.last_error, None);
                assert_eq!(after.job.outcome, None);
            }
        }
    }
}
both_stores!(
    operator_transitions_follow_the_state_machine_on,
    operator_transitions_follow_the_state_machine
);

async fn operator_transitions_on_a_missing_job(db: TestDb) {
    let store = db.store().await;
    for transition in [Transition::Cancel, Transition::Approve, Transition::Retry] {
        match operate(&*store, transition, JobId(424_242)).await {
            Err(StoreError::NotFound(JobId(424_242))) => {}
            other => panic!("{transition} of a missing job: {other:?}"),
        }
    }
    assert!(store.get_job(JobId(424_242)).await.unwrap().is_none());
}
both_stores!(
    operator_transitions_on_a_missing_job_on,
    operator_transitions_on_a_missing_job
);

async fn approved_and_retried_jobs_run_again(db: TestDb) {
    let store = db.store().await;
    let receipt = accept(
        &*store,
        vec![NewChain {
            approval: true,
            ..chain("a@example.com", &[Action::SuspendAccess], due())
        }],
    )
    .await;
    let id = receipt_ids(&receipt)[0];
    store.approve(id, OPERATOR).await.unwrap();
    let claimed = claim_exactly(&*store, id, LEASE).await;
    assert!(store.fail(&claimed, "api_error:500", "boom").await.unwrap());

    let retried = store.retry(id, OPERATOR).await.unwrap();
    assert_eq!(retried.state, JobState::Pending);
    assert!(retried.run_at <= Utc::now() + TimeDelta::seconds(1));
    let again = claim_exactly(&*store, id, LEASE).await;
    assert_eq!(again.attempts, 1, "retry resets attempts");
    assert_eq!(again.claim_seq, 2);
}
both_stores!(
    approved_and_retried_jobs_run_again_on,
    approved_and_retried_jobs_run_again
);

async fn operator_cancel_cancels_later_steps(db: TestDb) {
    let store = db.store().await;
    let receipt = accept(
        &*store,
        vec![chain(
            "a@example.com",
            &[Action::SuspendAccess, Action::DeleteAccount],
            later(),
        )],
    )
    .await;
    let ids = receipt_ids(&receipt);
    store
        .cancel(ids[0], OPERATOR, "wrong person")
        .await
        .unwrap();
    let dependent = show(&*store, ids[1]).await.job;
    assert_eq!(dependent.state, JobState::Cancelled);
    assert_eq!(
        dependent.last_error.as_deref(),
        Some("previous_step_failed")
    );
}
both_stores!(
    operator_cancel_cancels_later_steps_on,
    operator_cancel_cancels_later_steps
);

async fn retry_refused_while_another_job_is_live(db: TestDb) {
    let store = db.store().await;
    let email = "a@example.com";
    let failed = job_in_state(&*store, JobState::Failed, email, Action::SuspendAccess).await;
    let live = enqueue(&*store, email, Action::SuspendAccess, later()).await;
    assert_ne!(live.id, failed.id);
    let failed_before = show(&*store, failed.id).await;
    let live_before = show(&*store, live.id).await;

    let result = store.retry(failed.id, OPERATOR).await;
    match result {
        Err(StoreError::LiveJobExists { id, action }) => {
            assert_eq!(id, failed.id);
            assert_eq!(action, failed.action);
        }
        other => panic!("expected LiveJobExists, got {other:?}"),
    }
    assert_unchanged(&*store, &failed_before).await;
    assert_unchanged(&*store, &live_before).await;
}
both_stores!(
    retry_refused_while_another_job_is_live_on,
    retry_refused_while_another_job_is_live
);

// ---------------------------------------------------------------------------------------------
// Reads

async fn list_jobs_filters_and_pages(db: TestDb) {
    let store = db.store().await;
    let ann_suspend = enqueue(&*store, "ann@example.com", Action::SuspendAccess, due()).await;
    let bob_suspend = enqueue(&*store, "bob@example.com", Action::SuspendAccess, later()).await;
    let ann_delete = enqueue(&*store, "ann@example.com", Action::DeleteAccount, later()).await;
    let cid = enqueue(&*store, "cid@example.com", Action::DeleteAccount, later()).await;
    let dee = enqueue(&*store, "dee@example.com", Action::RemoveFromGroup, later()).await;
    claim_exactly(&*store, ann_suspend.id, LEASE).await;
    let list = |filter: JobFilter| {
        let store = store.clone();
        async move {
            let jobs = store.list_jobs(&filter).await.unwrap();
            jobs.iter().map(|j| j.id).collect::<Vec<_>>()
        }
    };
    let all = |limit| JobFilter {
        limit,
        ..JobFilter::default()
    };

    assert_eq!(
        list(all(100)).await,
        vec![
            dee.id,
            cid.id,
            ann_delete.id,
            bob_suspend.id,
            ann_suspend.id
        ],
        "newest first"
    );
    assert_eq!(
        list(JobFilter {
            state: Some(JobState::Running),
            ..all(100)
        })
        .await,
        vec![ann_suspend.id]
    );
    assert_eq!(
        list(JobFilter {
            email: Some("Ann@Example.COM".to_owned()),
            ..all(100)
        })
        .await,
        vec![ann_delete.id, ann_suspend.id]
    );
    assert_eq!(
        list(JobFilter {
            action: Some(Action::DeleteAccount),
            ..all(100)
        })
        .await,
        vec![cid.id, ann_delete.id]
    );
    assert_eq!(
        list(JobFilter {
            email: Some("ann@example.com".to_owned()),
            action: Some(Action::DeleteAccount),
            state: Some(JobState::Pending),
            ..all(100)
        })
        .await,
        vec![ann_delete.id]
    );

    let page1 = list(all(2)).await;
    assert_eq!(page1, vec![dee.id, cid.id]);
    let page2 = list(JobFilter {
        before: Some(page1[1]),
        ..all(2)
    })
    .await;
    assert_eq!(page2, vec![ann_delete.id, bob_suspend.id]);
    let page3 = list(JobFilter {
        before: Some(page2[1]),
        ..all(2)
    })
    .await;
    assert_eq!(page3, vec![ann_suspend.id]);
    assert!(
        list(JobFilter {
            before: Some(ann_suspend.id),
            ..all(2)
        })
        .await
        .is_empty()
    );
}
both_stores!(list_jobs_filters_and_pages_on, list_jobs_filters_and_pages);

async fn get_job_lists_events_oldest_first(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    let claimed = claim_exactly(&*store, job.id, LEASE).await;
    assert!(
        store
            .retry_later(&claimed, due(), false, Some("api_error:502"), "backoff")
            .await
            .unwrap()
    );
    let claimed = claim_exactly(&*store, job.id, LEASE).await;
    assert!(
        store
            .complete(&claimed, Outcome::Done, "done")
            .await
            .unwrap()
    );

    let shown = show(&*store, job.id).await;
    let steps: Vec<_> = shown.events.iter().map(|e| (e.from, e.to)).collect();
    use JobState::*;
    assert_eq!(
        steps,
        vec![
            (None, Pending),
            (Some(Pending), Running),
            (Some(Running), Pending),
            (Some(Pending), Running),
            (Some(Running), Succeeded),
        ]
    );
    assert!(shown.events.windows(2).all(|w| w[0].at <= w[1].at));
    assert_eq!(shown.job.attempts, 2);
}
both_stores!(
    get_job_lists_events_oldest_first_on,
    get_job_lists_events_oldest_first
);

async fn list_deliveries_newest_first(db: TestDb) {
    let store = db.store().await;
    let mut receipts = Vec::new();
    for (i, source) in ["a", "b", "a"].into_iter().enumerate() {
        let new = delivery(
            source,
            &format!("evt-{i}"),
            accepted(
                vec![],
                vec![chain(
                    &format!("p{i}@example.com"),
                    &[Action::SuspendAccess],
                    later(),
                )],
            ),
        );
        receipts.push(store.accept_delivery(new).await.unwrap());
    }

    let all = store.list_deliveries(None, 10).await.unwrap();
    let ids: Vec<&str> = all.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, vec!["evt-2", "evt-1", "evt-0"]);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id));
    for (listed, receipt) in all.iter().zip(receipts.iter().rev()) {
        assert_eq!(listed.job_ids, receipt.job_ids());
    }

    let from_a = store.list_deliveries(Some("a"), 10).await.unwrap();
    let ids: Vec<&str> = from_a.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(ids, vec!["evt-2", "evt-0"]);
    assert!(from_a.iter().all(|d| d.source == "a"));

    let newest = store.list_deliveries(None, 1).await.unwrap();
    assert_eq!(newest.len(), 1);
    assert_eq!(newest[0].delivery_id, "evt-2");
    assert!(
        store
            .list_deliveries(Some("c"), 10)
            .await
            .unwrap()
            .is_empty()
    );
}
both_stores!(
    list_deliveries_newest_first_on,
    list_deliveries_newest_first
);

async fn counts_done_jobs_and_states(db: TestDb) {
    let store = db.store().await;
    let start = Utc::now() - TimeDelta::seconds(5);
    let outcomes = [
        Outcome::Done,
        Outcome::AlreadyDone,
        Outcome::NotFound,
        Outcome::DryRun,
    ];
    for (i, outcome) in outcomes.into_iter().enumerate() {
        let job = enqueue(
            &*store,
            &format!("o{i}@example.com"),
            Action::SuspendAccess,
            due(),
        )
        .await;
        let claimed = claim_exactly(&*store, job.id, LEASE).await;
        assert!(store.complete(&claimed, outcome, "ok").await.unwrap());
    }
    job_in_state(
        &*store,
        JobState::Failed,
        "f@example.com",
        Action::SuspendAccess,
    )
    .await;
    assert_eq!(store.count_done_since(start).await.unwrap(), 1);

    let between = Utc::now();
    let job = enqueue(&*store, "o9@example.com", Action::SuspendAccess, due()).await;
    let claimed = claim_exactly(&*store, job.id, LEASE).await;
    assert!(store.complete(&claimed, Outcome::Done, "ok").await.unwrap());
    assert_eq!(store.count_done_since(start).await.unwrap(), 2);
    assert_eq!(store.count_done_since(between).await.unwrap(), 1);
    assert_eq!(store.count_done_since(later()).await.unwrap(), 0);

    job_in_state(
        &*store,
        JobState::Running,
        "r@example.com",
        Action::SuspendAccess,
    )
    .await;
    job_in_state(
        &*store,
        JobState::Pending,
        "p@example.com",
        Action::SuspendAccess,
    )
    .await;
    job_in_state(
        &*store,
        JobState::Pending,
        "p@example.com",
        Action::DeleteAccount,
    )
    .await;
    job_in_state(
        &*store,
        JobState::AwaitingApproval,
        "w@example.com",
        Action::SuspendAccess,
    )
    .await;
    job_in_state(
        &*store,
        JobState::Cancelled,
        "c@example.com",
        Action::SuspendAccess,
    )
    .await;
    let counts: HashMap<JobState, u64> =
        store.count_by_state().await.unwrap().into_iter().collect();
    let count = |state| counts.get(&state).copied().unwrap_or(0);
    assert_eq!(count(JobState::Succeeded), 5);
    assert_eq!(count(JobState::Failed), 1);
    assert_eq!(count(JobState::Running), 1);
    assert_eq!(count(JobState::Pending), 2);
    assert_eq!(count(JobState::AwaitingApproval), 1);
    assert_eq!(count(JobState::Cancelled), 1);
}
both_stores!(counts_done_jobs_and_states_on, counts_done_jobs_and_states);

// ---------------------------------------------------------------------------------------------
// Console sessions

fn session_digest(n: u8) -> String {
    hex::encode([n; 32])
}

async fn revoked_sessions_are_refused_until_they_expire(db: TestDb) {
    let store = db.store().await;
    let (one, two, stale) = (session_digest(1), session_digest(2), session_digest(3));
    assert!(!store.is_session_revoked(&one).await.unwrap());

    store.revoke_session(&one, later()).await.unwrap();
    store.revoke_session(&one, later()).await.unwrap();
    assert!(store.is_session_revoked(&one).await.unwrap());
    assert!(!store.is_session_revoked(&two).await.unwrap());

    // A session past its expiry needs no row: a later revocation clears it away.
    store
        .revoke_session(&stale, Utc::now() - TimeDelta::seconds(1))
        .await
        .unwrap();
    store.revoke_session(&two, later()).await.unwrap();
    assert!(!store.is_session_revoked(&stale).await.unwrap());
    assert!(store.is_session_revoked(&one).await.unwrap());
    assert!(store.is_session_revoked(&two).await.unwrap());

    // Only digests are kept: anything else (a raw cookie) is refused by the schema.
    let raw = store
        .revoke_session("1767225600.00ff.abcdef", later())
        .await;
    assert!(raw.is_err(), "{raw:?}");
}
both_stores!(
    revoked_sessions_are_refused_until_they_expire_on,
    revoked_sessions_are_refused_until_they_expire
);

// ---------------------------------------------------------------------------------------------
// Worker state and wake-ups

async fn pause_keeps_first_reason_and_resume_clears_it(db: TestDb) {
    let store = db.store().await;
    let initial = store.worker_state().await.unwrap();
    assert!(!initial.paused);
    assert_eq!(initial.reason, None);
    assert_eq!(initial.resumed_at, None);

    let paused = store.pause(PauseReason::Auth).await.unwrap();
    assert!(paused.paused);
    assert_eq!(paused.reason, Some(PauseReason::Auth));
    let again = store.pause(PauseReason::BlastRadius).await.unwrap();
    assert_eq!(
        again.reason,
        Some(PauseReason::Auth),
        "the first reason stays"
    );
    assert_eq!(store.worker_state().await.unwrap(), again);

    let before_resume = Utc::now() - TimeDelta::seconds(1);
    let resumed = store.resume().await.unwrap();
    assert!(!resumed.paused);
    assert_eq!(resumed.reason, None);
    let resumed_at = resumed.resumed_at.expect("resumed_at set");
    assert!(resumed_at >= before_resume && resumed_at <= Utc::now() + TimeDelta::seconds(1));
    assert_eq!(store.worker_state().await.unwrap(), resumed);

    let manual = store.pause(PauseReason::Manual).await.unwrap();
    assert_eq!(manual.reason, Some(PauseReason::Manual));
    assert_eq!(
        manual.resumed_at,
        Some(resumed_at),
        "pause keeps the last resume"
    );
}
both_stores!(
    pause_keeps_first_reason_and_resume_clears_it_on,
    pause_keeps_first_reason_and_resume_clears_it
);

/// Consumes any wake-up already pending, so the next one observed is fresh.
async fn drain(notify: &Notify) {
    while tokio::time::timeout(Duration::from_millis(50), notify.notified())
        .await
        .is_ok()
    {}
}

async fn expect_wakeup(notify: &Notify, what: &str) {
    tokio::time::timeout(Duration::from_secs(2), notify.notified())
        .await
        .unwrap_or_else(|_| panic!("{what} did not signal the wake-up"));
}

async fn enqueue_approve_and_retry_wake_the_worker(db: TestDb) {
    let store = db.store().await;
    let notify = store.wakeup();
    drain(&notify).await;
    enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    expect_wakeup(&notify, "accept_delivery").await;

    let awaiting = job_in_state(
        &*store,
        JobState::AwaitingApproval,
        "b@example.com",
        Action::SuspendAccess,
    )
    .await;
    drain(&notify).await;
    store.approve(awaiting.id, OPERATOR).await.unwrap();
    expect_wakeup(&notify, "approve").await;

    let claimed = store.claim_due(WORKER, 10, LEASE).await.unwrap();
    for job in &claimed {
        assert!(store.fail(job, "api_error:500", "boom").await.unwrap());
    }
    drain(&notify).await;
    store.retry(claimed[0].id, OPERATOR).await.unwrap();
    expect_wakeup(&notify, "retry").await;
}
both_stores!(
    enqueue_approve_and_retry_wake_the_worker_on,
    enqueue_approve_and_retry_wake_the_worker
);

// ---------------------------------------------------------------------------------------------
// What the database itself enforces

/// Runs one statement on a raw connection of its own, bypassing the store.
async fn raw_execute(db: &TestDb, sql: &str, binds: &[&str]) -> Result<u64, sqlx::Error> {
    match db.backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(&db.url).await?;
            let mut query = sqlx::query(sql);
            for value in binds {
                query = query.bind(value.to_string());
            }
            Ok(query.execute(&mut conn).await?.rows_affected())
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(&db.url).await?;
            let sql = (1..=binds.len()).fold(sql.to_owned(), |sql, n| {
                sql.replacen('?', &format!("${n}"), 1)
            });
            let mut query = sqlx::query(&sql);
            for value in binds {
                query = query.bind(value.to_string());
            }
            Ok(query.execute(&mut conn).await?.rows_affected())
        }
    }
}

async fn job_events_are_append_only(db: TestDb) {
    let store = db.store().await;
    let job = enqueue(&*store, "a@example.com", Action::SuspendAccess, due()).await;
    let before = show(&*store, job.id).await;

    for sql in [
        "UPDATE job_events SET detail = 'rewritten'",
        "DELETE FROM job_events",
    ] {
        let Err(err) = raw_execute(&db, sql, &[]).await else {
            panic!("job_events accepted `{sql}`");
        };
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    assert_unchanged(&*store, &before).await;
}
both_stores!(job_events_are_append_only_on, job_events_are_append_only);

async fn check_constraints_reject_invalid_rows(db: TestDb) {
    let store = db.store().await;
    let now = match db.backend {
        Backend::Sqlite => "0",
        Backend::Postgres => "now()",
    };
    let insert = format!(
        "INSERT INTO jobs (action, state, email, run_at, max_attempts, created_at, updated_at) \
         VALUES ('suspend_access', ?, ?, {now}, 3, {now}, {now})"
    );
    raw_execute(&db, &insert, &["pending", "raw@example.com"])
        .await
        .expect("a valid row is accepted: the statement itself is right");

    for (state, email) in [
        ("bogus", "raw1@example.com"),
        ("Pending", "raw2@example.com"),
        ("pending", "Upper@Example.com"),
        ("pending", ""),
        ("running", "raw3@example.com"),   // no lease
        ("succeeded", "raw4@example.com"), // no outcome, not finalized
    ] {
        let err = raw_execute(&db, &insert, &[state, email])
            .await
            .expect_err("invalid row");
        let is_check = err
            .as_database_error()
            .is_some_and(|e| e.is_check_violation());
        assert!(is_check, "({state}, {email}): {err}");
    }
    assert_eq!(all_jobs(&*store).await.len(), 1);
}
both_stores!(
    check_constraints_reject_invalid_rows_on,
    check_constraints_reject_invalid_rows
);

// ---------------------------------------------------------------------------------------------
// Races

async fn concurrent_same_delivery_has_one_winner(db: TestDb) {
    let store = db.store().await;
    let new = delivery(
        "hr",
        "evt-race",
        accepted(
            vec![],
            vec![chain(
                "a@example.com",
                &[Action::SuspendAccess, Action::DeleteAccount],
                later(),
            )],
        ),
    );
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let store = store.clone();
            let new = new.clone();
            tokio::spawn(async move { store.accept_delivery(new).await })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap().expect("accept under contention"));
    }

    assert_eq!(receipts.iter().filter(|r| !r.duplicate).count(), 1);
    let ids = receipts[0].job_ids();
    assert_eq!(ids.len(), 2);
    assert!(receipts.iter().all(|r| r.job_ids() == ids));
    assert!(
        receipts
            .iter()
            .all(|r| r.body()["duplicate"] == json!(r.duplicate))
    );
    assert_eq!(store.list_deliveries(None, 100).await.unwrap().len(), 1);
    assert_eq!(all_jobs(&*store).await.len(), 2);
}
both_stores!(
    concurrent_same_delivery_has_one_winner_on,
    concurrent_same_delivery_has_one_winner
);

async fn concurrent_deliveries_for_one_person_share_one_job(db: TestDb) {
    let store = db.store().await;
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let store = store.clone();
            let new = delivery(
                if i % 2 == 0 { "hr" } else { "jira" },
                &format!("evt-{i}"),
                accepted(
                    vec![],
                    vec![chain("a@example.com", &[Action::SuspendAccess], later())],
                ),
            );
            tokio::spawn(async move { store.accept_delivery(new).await })
        })
        .collect();
    let mut receipts = Vec::new();
    for task in tasks {
        receipts.push(task.await.unwrap().expect("accept under contention"));
    }

    assert!(receipts.iter().all(|r| !r.duplicate));
    let jobs = all_jobs(&*store).await;
    assert_eq!(jobs.len(), 1, "exactly one live job");
    assert!(jobs[0].state.is_live());
    for receipt in &receipts {
        assert_eq!(receipt_ids(receipt), vec![jobs[0].id], "{}", receipt.body());
    }
    assert_eq!(store.list_deliveries(None, 100).await.unwrap().len(), 10);
}
both_stores!(
    concurrent_deliveries_for_one_person_share_one_job_on,
    concurrent_deliveries_for_one_person_share_one_job
);

async fn parallel_claims_never_share_a_job(db: TestDb) {
    let store = db.store().await;
    let chains = (0..100)
        .map(|i| {
            chain(
                &format!("p{i}@example.com"),
                &[Action::SuspendAccess],
                due(),
            )
        })
        .collect();
    accept(&*store, chains).await;

    let tasks: Vec<_> = (0..8)
        .map(|worker| {
            let store = store.clone();
            tokio::spawn(async move {
                let owner = format!("w{worker}");
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_due(&owner, 5, LEASE).await?;
                    if batch.is_empty() {
                        return Ok::<_, StoreError>(mine);
                    }
                    assert!(batch.len() <= 5);
                    mine.extend(batch.iter().map(|j| j.id));
                }
            })
        })
        .collect();
    let mut claimed = Vec::new();
    for task in tasks {
        claimed.extend(task.await.unwrap().expect("claim under contention"));
    }

    let unique: HashSet<JobId> = claimed.iter().copied().collect();
    assert_eq!(unique.len(), claimed.len(), "a job was claimed twice");
    assert_eq!(unique.len(), 100);
    let counts: HashMap<JobState, u64> =
        store.count_by_state().await.unwrap().into_iter().collect();
    assert_eq!(counts.get(&JobState::Running), Some(&100));
    assert!(all_jobs(&*store).await.iter().all(|j| j.claim_seq == 1));
}
both_stores!(
    parallel_claims_never_share_a_job_on,
    parallel_claims_never_share_a_job
);

async fn complete_many_writes_each_claim_it_still_holds(db: TestDb) {
    let store = db.store().await;
    for i in 0..3 {
        enqueue(
            store.as_ref(),
            &format!("batch{i}@example.com"),
            Action::SuspendAccess,
            due(),
        )
        .await;
    }
    let claimed = store
        .claim_due("w", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 3);
    let mut stale = claimed[1].clone();
    stale.claim_seq -= 1;
    let item = |job: Job, outcome| Completion {
        job,
        outcome,
        detail: "batched".into(),
    };
    let written = store
        .complete_many(&[
            item(claimed[0].clone(), Outcome::Done),
            item(stale, Outcome::Done),
            item(claimed[2].clone(), Outcome::AlreadyDone),
        ])
        .await
        .unwrap();
    assert_eq!(written, vec![true, false, true]);
    let first = show(store.as_ref(), claimed[0].id).await;
    assert_eq!(first.job.state, JobState::Succeeded);
    assert_eq!(first.job.outcome, Some(Outcome::Done));
    assert_eq!(first.events.last().unwrap().detail, "batched");
    assert_eq!(
        show(store.as_ref(), claimed[1].id).await.job.state,
        JobState::Running
    );
    let third = show(store.as_ref(), claimed[2].id).await;
    assert_eq!(third.job.outcome, Some(Outcome::AlreadyDone));
    assert!(store.complete_many(&[]).await.unwrap().is_empty());
}
both_stores!(
    complete_many_writes_each_claim_it_still_holds_on,
    complete_many_writes_each_claim_it_still_holds
);

async fn nothing_is_claimed_while_paused(db: TestDb) {
    let store = db.store().await;
    enqueue(
        store.as_ref(),
        "paused@example.com",
        Action::SuspendAccess,
        due(),
    )
    .await;
    store.pause(PauseReason::Manual).await.unwrap();
    let claimed = store
        .claim_due("w", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert!(claimed.is_empty(), "claimed while paused: {claimed:?}");
    store.resume().await.unwrap();
    let claimed = store
        .claim_due("w", 10, Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
}
both_stores!(
    nothing_is_claimed_while_paused_on,
    nothing_is_claimed_while_paused
);

/// A copy of the delivery commits while this one is being accepted: this one must roll back
/// whatever it did and answer with the copy's response (on Postgres the delivery row is
/// written last, so this is the path where its insert conflicts).
async fn a_copy_committed_meanwhile_wins(db: TestDb) {
    let store = db.store().await;
    let winner =
        r#"{"delivery_id":"raced","duplicate":false,"jobs":[],"cancelled":[],"refused":[]}"#;
    let (begin, now) = match db.backend {
        Backend::Sqlite => ("BEGIN IMMEDIATE", "0"),
        Backend::Postgres => ("BEGIN", "now()"),
    };
    let insert = format!(
        "INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, key_body_sha256, \
         status, response) VALUES ('hr', 'raced', {now}, '{}', '', 'accepted', '{winner}')",
        "cd".repeat(32)
    );
    // The copy's transaction: the row exists but is not committed yet.
    let mut copy = RawConn::open(&db).await;
    copy.run(begin).await;
    copy.run(&insert).await;

    let accepting = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .accept_delivery(delivery(
                    "hr",
                    "raced",
                    accepted(
                        vec![],
                        vec![chain("raced@example.com", &[Action::SuspendAccess], due())],
                    ),
                ))
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !accepting.is_finished(),
        "the accept must wait for the copy's transaction"
    );
    copy.run("COMMIT").await;

    let receipt = accepting.await.unwrap().expect("the accept answers");
    assert!(receipt.duplicate);
    assert_eq!(receipt.body()["duplicate"], true);
    assert_eq!(
        receipt.body()["jobs"],
        json!([]),
        "the copy's answer, not a new one"
    );
    assert!(
        all_jobs(&*store).await.is_empty(),
        "the loser's job was rolled back"
    );
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 1);
}
both_stores!(
    a_copy_committed_meanwhile_wins_on,
    a_copy_committed_meanwhile_wins
);

/// Another replica is recording a copy of the same body under another unsigned id and has
/// not committed yet: this delivery must wait for it and then replay its answer, on the
/// batch path and on the one-delivery path (a delivery with a cancel goes alone). On
/// Postgres no unique index can see such a copy, so the wait is the body's transaction lock,
/// which the other replica's accepting function holds.
async fn a_copy_of_the_body_committed_meanwhile_wins(db: TestDb) {
    let store = db.store().await;
    for (round, cancels) in [(0, vec![]), (1, vec!["someone@example.com"])] {
        let body = format!("body-raced-{round}");
        let winner = format!(
            r#"{{"delivery_id":"copy-{round}","duplicate":false,"jobs":[],"cancelled":[],"refused":[]}}"#
        );
        let (begin, now, lock) = match db.backend {
            Backend::Sqlite => (
                "BEGIN IMMEDIATE",
                Utc::now().timestamp_micros().to_string(),
                String::new(),
            ),
            Backend::Postgres => (
                "BEGIN",
                "now()".to_owned(),
                format!(
                    "SELECT pg_advisory_xact_lock(offboard_body_lock('jira', '{}'))",
                    body_hash(&body)
                ),
            ),
        };
        let mut copy = RawConn::open(&db).await;
        copy.run(begin).await;
        if !lock.is_empty() {
            copy.run(&lock).await;
        }
        copy.run(&format!(
            "INSERT INTO deliveries (source, delivery_id, received_at, body_sha256, \
             key_body_sha256, status, response) \
             VALUES ('jira', 'copy-{round}', {now}, '{hash}', '{hash}', 'accepted', '{winner}')",
            hash = body_hash(&body)
        ))
        .await;

        let mut new = unsigned(&format!("fresh-{round}"), &body, MONTH, "raced@example.com");
        if let DeliveryContent::Accepted { cancels: c, .. } = &mut new.content {
            *c = cancels
                .iter()
                .map(|email| NewCancel {
                    email: Email::parse(email).unwrap(),
                    rule: "rehired".to_owned(),
                })
                .collect();
        }
        let accepting = {
            let store = store.clone();
            tokio::spawn(async move { store.accept_delivery(new).await })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !accepting.is_finished(),
            "round {round}: the accept must wait for the copy's transaction"
        );
        copy.run("COMMIT").await;

        let receipt = accepting.await.unwrap().expect("the accept answers");
        assert!(receipt.duplicate, "round {round}: {}", receipt.body());
        assert_eq!(receipt.body()["delivery_id"], format!("copy-{round}"));
    }
    assert!(all_jobs(&*store).await.is_empty(), "no job from a replay");
    assert_eq!(store.list_deliveries(None, 10).await.unwrap().len(), 2);
}
both_stores!(
    a_copy_of_the_body_committed_meanwhile_wins_on,
    a_copy_of_the_body_committed_meanwhile_wins
);

/// A raw connection that runs statements outside the store, for races the store must lose.
enum RawConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

impl RawConn {
    async fn open(db: &TestDb) -> RawConn {
        match db.backend {
            Backend::Sqlite => {
                RawConn::Sqlite(sqlx::SqliteConnection::connect(&db.url).await.unwrap())
            }
            Backend::Postgres => {
                RawConn::Postgres(sqlx::PgConnection::connect(&db.url).await.unwrap())
            }
        }
    }

    async fn run(&mut self, sql: &str) {
        match self {
            RawConn::Sqlite(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
            RawConn::Postgres(conn) => sqlx::raw_sql(sql).execute(conn).await.map(drop),
        }
        .expect(sql);
    }
}

/// A burst of commits is announced to other replicas in notifications at least 25 ms apart
/// (README, "wake other replicas"), each a transaction of the database's, and the burst's
/// end is still announced. A database of its own: `NOTIFY` reaches every schema's listener.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_commits_is_announced_in_spaced_notifications_on_postgres() {
    let Some(db) = TestDb::postgres_database().await else {
        return;
    };
    let store = db.store().await;
    let mut listener = sqlx::postgres::PgListener::connect(&db.url).await.unwrap();
    listener.listen("offboard_jobs").await.unwrap();

    let started = std::time::Instant::now();
    let mut senders = tokio::task::JoinSet::new();
    for sender in 0..8 {
        let store = store.clone();
        senders.spawn(async move {
            for i in 0..25 {
                let email = format!("s{sender}-{i}@example.com");
                enqueue(&*store, &email, Action::SuspendAccess, due()).await;
            }
        });
    }
    senders.join_all().await;
    let elapsed = started.elapsed();

    let mut received = 0u128;
    while let Ok(notification) =
        tokio::time::timeout(Duration::from_millis(500), listener.recv()).await
    {
        notification.unwrap();
        received += 1;
    }
    assert!(received >= 1, "the burst was not announced");
    // One at the start, one every 25 ms, one for what the last spacing gathered.
    let most = elapsed.as_millis() / 25 + 2;
    assert!(
        received <= most,
        "{received} notifications for 200 commits in {elapsed:?}; at most {most}"
    );
}

/// Another replica (a second store on the same database) is woken through LISTEN/NOTIFY by
/// new jobs, approvals, retries and a resume; the notification is sent after the commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_replicas_are_woken_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let api = db.store().await;
    let worker = db.store().await;
    let notify = worker.wakeup();
    // LISTEN is issued by a background task: wait until a notification gets through.
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            api.resume().await.unwrap();
            if tokio::time::timeout(Duration::from_millis(100), notify.notified())
                .await
                .is_ok()
            {
                break;
            }
        }
    })
    .await
    .expect("the second store starts listening");

    drain(&notify).await;
    enqueue(&*api, "a@example.com", Action::SuspendAccess, due()).await;
    expect_wakeup(&notify, "accept_delivery on another store").await;

    let awaiting = job_in_state(
        &*api,
        JobState::AwaitingApproval,
        "b@example.com",
        Action::SuspendAccess,
    )
    .await;
    drain(&notify).await;
    api.approve(awaiting.id, OPERATOR).await.unwrap();
    expect_wakeup(&notify, "approve on another store").await;

    api.pause(PauseReason::Manual).await.unwrap();
    drain(&notify).await;
    api.resume().await.unwrap();
    expect_wakeup(&notify, "resume on another store").await;
}

/// Deliveries that arrive together: on Postgres those of the common shape are written as one
/// batch. Each still gets its own answer, shaped exactly like the job read back; people named
/// by several get one live job, shared; a delivery already recorded replays its answer; a
/// copy inside the same batch replays the first copy's answer.
async fn deliveries_arriving_together_keep_every_rule(db: TestDb) {
    let store = db.store().await;
    let mut shaped = chain("shape@example.com", &[Action::RemoveFromGroup], due());
    shaped.account_id = Some(AccountId::stored("acc-9".to_owned()));
    shaped.approval = true;
    let recorded = store
        .accept_delivery(delivery("hr", "already", accepted(vec![], vec![])))
        .await
        .unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    let mut expected = Vec::new();
    for i in 0..40 {
        let (id, content) = match i {
            0 => ("shaped".to_owned(), accepted(vec![], vec![shaped.clone()])),
            1 | 2 => (
                "copy".to_owned(),
                accepted(
                    vec![],
                    vec![chain("copy@example.com", &[Action::SuspendAccess], due())],
                ),
            ),
            3 => (
                "already".to_owned(),
                accepted(
                    vec![],
                    vec![chain("late@example.com", &[Action::SuspendAccess], due())],
                ),
            ),
            4 => (
                "refusing".to_owned(),
                DeliveryContent::Accepted {
                    cancels: vec![],
                    chains: vec![],
                    refused: vec![Refusal {
                        email: "ceo@example.com".into(),
                        reason: "protected_email".into(),
                    }],
                    approval_required: None,
                    undo: None,
                },
            ),
            // Everyone else names the same person, some with a second person too.
            _ => {
                let mut chains = vec![chain("shared@example.com", &[Action::SuspendAccess], due())];
                if i % 2 == 0 {
                    chains.push(chain(
                        &format!("p{i}@example.com"),
                        &[Action::DeleteAccount],
                        due(),
                    ));
                }
                (format!("d{i}"), accepted(vec![], chains))
            }
        };
        expected.push(id.clone());
        let store = store.clone();
        let mut new = delivery("hr", &id, content);
        if i == 0 {
            new.max_attempts = 4;
        }
        tasks.spawn(async move { (i, store.accept_delivery(new).await.unwrap()) });
    }
    let mut receipts: Vec<(usize, DeliveryReceipt)> = tasks.join_all().await;
    receipts.sort_by_key(|(i, _)| *i);

    // The shaped job is answered exactly as it reads back.
    let shaped_body = &receipts[0].1.body();
    let answered = &shaped_body["jobs"][0];
    let id: JobId = answered["id"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        answered,
        &serde_json::to_value(show(&*store, id).await.job).unwrap()
    );
    assert_eq!(answered["state"], "awaiting_approval");
    assert_eq!(answered["account_id"], "acc-9");
    assert_eq!(answered["params"], json!({ "group_id": "x-1" }));

    // Two copies: one first answer, one replay of it.
    let (first, second) = (&receipts[1].1, &receipts[2].1);
    assert_ne!(first.duplicate, second.duplicate, "exactly one copy is new");
    assert_eq!(first.job_ids(), second.job_ids());
    assert_eq!(first.job_ids().len(), 1);

    // Recorded before: its old answer, and no job for the person it names now.
    assert!(receipts[3].1.duplicate);
    assert_eq!(receipts[3].1.body()["jobs"], recorded.body()["jobs"]);
    assert_eq!(receipts[3].1.body()["duplicate"], true);

    assert_eq!(receipts[4].1.body()["jobs"], json!([]));
    assert_eq!(
        receipts[4].1.body()["refused"][0]["reason"],
        "protected_email"
    );

    // One live job for the shared person, in every answer that named them.
    let shared: HashSet<String> = receipts[5..]
        .iter()
        .map(|(_, r)| r.body()["jobs"][0]["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(shared.len(), 1, "{shared:?}");
    for (i, receipt) in &receipts[5..] {
        assert!(!receipt.duplicate);
        let body = receipt.body();
        let jobs = body["jobs"].as_array().unwrap();
        assert_eq!(
            jobs.len(),
            if i % 2 == 0 { 2 } else { 1 },
            "{}",
            receipt.body()
        );
        if i % 2 == 0 {
            assert_eq!(jobs[1]["email"], format!("p{i}@example.com"));
        }
    }
    let jobs = all_jobs(&*store).await;
    let shared_id: JobId = shared.iter().next().unwrap().parse().unwrap();
    assert_eq!(
        jobs.iter()
            .filter(|j| j.email == "shared@example.com")
            .count(),
        1
    );
    assert!(!jobs.iter().any(|j| j.email == "late@example.com"));
    // 1 shaped + 1 copy + 1 shared + 17 second persons (even i in 5..40).
    assert_eq!(jobs.len(), 20);
    let events = show(&*store, shared_id).await.events;
    assert_eq!(events.len(), 1, "one creation event for the shared job");

    let deliveries = store.list_deliveries(None, 100).await.unwrap();
    let ids: HashSet<&str> = deliveries.iter().map(|d| d.delivery_id.as_str()).collect();
    assert_eq!(deliveries.len(), ids.len(), "no delivery recorded twice");
    for id in &expected {
        assert!(ids.contains(id.as_str()), "{id} recorded");
    }
}
both_stores!(
    deliveries_arriving_together_keep_every_rule_on,
    deliveries_arriving_together_keep_every_rule
);

/// A delivery the database refuses fails alone, even when it arrived together with others
/// and was first written in the same batch: the others are recorded and answered.
async fn a_refused_delivery_fails_only_itself(db: TestDb) {
    let store = db.store().await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..24 {
        let store = store.clone();
        tasks.spawn(async move {
            let mut new = delivery(
                "hr",
                &format!("mixed-{i}"),
                accepted(
                    vec![],
                    vec![chain(
                        &format!("m{i}@example.com"),
                        &[Action::SuspendAccess],
                        due(),
                    )],
                ),
            );
            if i == 12 {
                // Breaks the CHECK on the body digest.
                new.body_sha256 = "not-a-digest".to_owned();
            }
            (i, store.accept_delivery(new).await)
        });
    }
    for (i, result) in tasks.join_all().await {
        match result {
            Ok(receipt) => {
                assert_ne!(i, 12, "the refused delivery must not be accepted");
                assert_eq!(receipt.job_ids().len(), 1);
            }
            Err(e) => assert_eq!(i, 12, "delivery {i} failed: {e}"),
        }
    }
    assert_eq!(store.list_deliveries(None, 100).await.unwrap().len(), 23);
    let jobs = all_jobs(&*store).await;
    assert_eq!(jobs.len(), 23);
    assert!(!jobs.iter().any(|j| j.email == "m12@example.com"));
}
both_stores!(
    a_refused_delivery_fails_only_itself_on,
    a_refused_delivery_fails_only_itself
);

/// Chains arriving together (on Postgres, one batch writes all first steps, then all second
/// steps): each later step depends on the live job of the step before it, whether that job
/// was created by the same delivery, by another one of the batch, or was there already.
async fn chains_arriving_together_link_their_steps(db: TestDb) {
    let store = db.store().await;
    let before = enqueue(&*store, "old@example.com", Action::SuspendAccess, later()).await;
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let store = store.clone();
        tasks.spawn(async move {
            let chains = vec![
                chain(
                    "both@example.com",
                    &[Action::SuspendAccess, Action::DeleteAccount],
                    due(),
                ),
                chain(
                    "old@example.com",
                    &[Action::SuspendAccess, Action::RemoveFromDirectory],
                    due(),
                ),
                chain(
                    &format!("own{i}@example.com"),
                    &[
                        Action::SuspendAccess,
                        Action::DeactivateAccount,
                        Action::DeleteAccount,
                    ],
                    due(),
                ),
            ];
            store
                .accept_delivery(delivery(
                    "hr",
                    &format!("chain-{i}"),
                    accepted(vec![], chains),
                ))
                .await
                .unwrap()
        });
    }
    let receipts = tasks.join_all().await;
    let mut shared = HashSet::new();
    for receipt in &receipts {
        let body = receipt.body();
        let jobs = body["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 7, "{}", receipt.body());
        let id = |n: usize| jobs[n]["id"].clone();
        assert_eq!(jobs[0]["depends_on"], Value::Null);
        assert_eq!(
            jobs[1]["depends_on"],
            id(0),
            "the second step waits for the first"
        );
        assert_eq!(
            jobs[2]["id"],
            json!(before.id.to_string()),
            "the live job that was there"
        );
        assert_eq!(
            jobs[3]["depends_on"],
            id(2),
            "a step after an existing job waits for it"
        );
        assert_eq!(jobs[4]["depends_on"], Value::Null);
        assert_eq!(jobs[5]["depends_on"], id(4));
        assert_eq!(jobs[6]["depends_on"], id(5));
        for job in jobs {
            let stored = show(&*store, job["id"].as_str().unwrap().parse().unwrap()).await;
            assert_eq!(job, &serde_json::to_value(&stored.job).unwrap());
        }
        shared.insert((id(0), id(1), id(3)));
    }
    assert_eq!(
        shared.len(),
        1,
        "one live job per person and action: {shared:?}"
    );
    // 1 before + 2 shared + 1 after the old one + 20 × 3 own.
    assert_eq!(all_jobs(&*store).await.len(), 64);
}
both_stores!(
    chains_arriving_together_link_their_steps_on,
    chains_arriving_together_link_their_steps
);

/// README, "HTTP API": never a 2xx before the delivery and its jobs are committed. A commit that
/// fails after the writing statements succeeded (here a deferred trigger refuses one
/// delivery) must come back as an error, with nothing recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_commit_that_fails_is_not_an_answer_on_postgres() {
    let Some(db) = TestDb::postgres().await else {
        return;
    };
    let store = db.store().await;
    raw_execute(
        &db,
        "CREATE FUNCTION refuse_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN IF NEW.delivery_id = 'refused-at-commit' THEN \
         RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$",
        &[],
    )
    .await
    .unwrap();
    raw_execute(
        &db,
        "CREATE CONSTRAINT TRIGGER refuse_at_commit AFTER INSERT ON deliveries \
         DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION refuse_at_commit()",
        &[],
    )
    .await
    .unwrap();

    let refused = store
        .accept_delivery(delivery(
            "hr",
            "refused-at-commit",
            accepted(
                vec![],
                vec![chain("late@example.com", &[Action::SuspendAccess], due())],
            ),
        ))
        .await;
    assert!(
        refused.is_err(),
        "answered although the commit failed: {refused:?}"
    );
    assert!(store.list_deliveries(None, 10).await.unwrap().is_empty());
    assert!(all_jobs(&*store).await.is_empty());

    // The connection the failed commit ran on is fine for the next delivery.
    let next = accept(
        &*store,
        vec![chain("next@example.com", &[Action::SuspendAccess], due())],
    )
    .await;
    assert_eq!(next.job_ids().len(), 1);
}

/// An undo is planned inside the transaction that records the rehire (README, "Undo on
/// rehire"): a step that succeeds after the rehire was mapped, but before it is recorded, is
/// given back. (Read before the transaction, it was still pending: the rehire's cancel could
/// no longer cancel it, and nothing gave it back, so the person stayed suspended.)
async fn an_undo_is_planned_from_what_the_recording_transaction_sees(db: TestDb) {
    let store = db.store().await;
    let suspend = enqueue(&*store, "ann@example.com", Action::SuspendAccess, due()).await;
    let rehire = delivery(
        "hr",
        &fresh_delivery_id(),
        DeliveryContent::Accepted {
            cancels: vec![NewCancel {
                email: Email::parse("ann@example.com").unwrap(),
                rule: "rehire".to_owned(),
            }],
            chains: Vec::new(),
            refused: Vec::new(),
            approval_required: None,
            undo: Some(offboard::domain::undo::Undo {
                asked: vec![offboard::domain::undo::UndoAsked {
                    email: Email::parse("ann@example.com").unwrap(),
                    rule: "rehire".to_owned(),
                    approval: false,
                    sources: vec!["hr".to_owned()],
                    approval_above: 1_000,
                }],
                ..Default::default()
            }),
        },
    );
    // The suspension runs and succeeds between the mapping and the recording.
    let claimed = store.claim_due(WORKER, 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, suspend.id);
    assert!(
        store
            .record_account(&claimed[0], "acc-ann", "atlassian")
            .await
            .unwrap()
    );
    let claimed = show(&*store, suspend.id).await.job;
    assert!(store.complete(&claimed, Outcome::Done, "ok").await.unwrap());

    let receipt = store.accept_delivery(rehire).await.unwrap();
    let body = receipt.body();
    let undo = body["undo"].as_array().expect("undo jobs");
    assert_eq!(undo.len(), 1, "{}", receipt.body());
    assert_eq!(undo[0]["action"], "restore_access", "{}", receipt.body());
    assert_eq!(undo[0]["account_id"], "acc-ann", "{}", receipt.body());
    assert_eq!(
        receipt.body()["irreversible"],
        json!([]),
        "{}",
        receipt.body()
    );
}
both_stores!(
    an_undo_is_planned_from_what_the_recording_transaction_sees_on,
    an_undo_is_planned_from_what_the_recording_transaction_sees
);

/// A due recheck is leased to one replica at a time: a second claim finds nothing until the
/// lease has expired, and a replica whose lease was taken over cannot record its read
/// (README, "Verification and recheck").
async fn a_due_recheck_is_taken_by_one_replica_at_a_time(db: TestDb) {
    use offboard::store::verifications::NewVerification;
    use offboard::store::{Recheck, VerifiedState};
    let store = db.store().await;
    let job = enqueue(
        store.as_ref(),
        "rita@example.com",
        Action::SuspendAccess,
        due(),
    )
    .await;
    let now = Utc::now();
    let recorded = NewVerification {
        job: &job,
        state: VerifiedState::Verified,
        seen: "membershipStatus suspended",
        recheck_at: Some(now + TimeDelta::hours(24)),
    };
    let v = store.verifications();
    assert!(v.record_verification(&recorded).await.unwrap());
    assert!(
        !v.record_verification(&recorded).await.unwrap(),
        "one verification per job"
    );
    let lease = Duration::from_secs(300);
    assert!(
        v.claim_rechecks("a", now, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    let at = now + TimeDelta::hours(25);
    let taken = v.claim_rechecks("a", at, lease, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert!(
        v.claim_rechecks("b", at, lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "leased to a"
    );
    let expired = at + TimeDelta::seconds(301);
    let retaken = v.claim_rechecks("b", expired, lease, 10).await.unwrap();
    assert_eq!(retaken.len(), 1, "a's lease expired");
    assert!(
        !v.finish_recheck(&taken[0], "a", Recheck::Holds, "seen")
            .await
            .unwrap(),
        "a no longer holds it"
    );
    assert!(
        v.finish_recheck(
            &retaken[0],
            "b",
            Recheck::Reactivated,
            "account_status active"
        )
        .await
        .unwrap()
    );
    let after = v.verifications_of("rita@example.com").await.unwrap();
    assert!(after[0].reactivated_at.is_some() && after[0].rechecked_at.is_some());
    assert!(
        v.claim_rechecks("c", expired + TimeDelta::days(9), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a recheck runs once"
    );
    let events = show(store.as_ref(), job.id).await.events;
    let details: Vec<&str> = events.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details.iter().any(|d| d.starts_with("verified: "))
            && details.iter().any(|d| d.starts_with("reactivated: ")),
        "{details:?}"
    );
}

both_stores!(
    a_due_recheck_is_taken_by_one_replica_at_a_time_on,
    a_due_recheck_is_taken_by_one_replica_at_a_time
);

/// Lanes (README, "Lanes"): the claim takes due urgent jobs first, then scheduled ones, then
/// bulk, each oldest first, whatever their number; a lane waits only for the ones before it.
async fn the_claim_takes_the_lanes_in_order(db: TestDb) {
    use offboard::domain::Lane;
    let store = db.store().await;
    let lane_chain = |email: &str, lane: Lane, run_at: DateTime<Utc>| {
        let mut chain = chain(email, &[Action::SuspendAccess], run_at);
        chain.steps[0].lane = lane;
        chain
    };
    let long_ago = Utc::now() - TimeDelta::hours(2);
    let bulk: Vec<NewChain> = (0..40)
        .map(|i| lane_chain(&format!("bulk{i}@example.com"), Lane::Bulk, long_ago))
        .collect();
    accept(&*store, bulk).await;
    accept(
        &*store,
        vec![
            lane_chain(
                "sched@example.com",
                Lane::Scheduled,
                long_ago + TimeDelta::hours(1),
            ),
            lane_chain("later@example.com", Lane::Urgent, later()),
        ],
    )
    .await;
    accept(
        &*store,
        vec![lane_chain("urgent@example.com", Lane::Urgent, Utc::now())],
    )
    .await;
    let first = store.claim_due(WORKER, 2, LEASE).await.unwrap();
    let emails: Vec<&str> = first.iter().map(|j| j.email.as_str()).collect();
    assert_eq!(emails, ["urgent@example.com", "sched@example.com"]);
    assert_eq!(first[0].lane, Lane::Urgent);
    let rest = store.claim_due(WORKER, 100, LEASE).await.unwrap();
    assert_eq!(rest.len(), 40, "the urgent job not yet due stays");
    assert!(rest.iter().all(|j| j.lane == Lane::Bulk));
    let shown = show(&*store, first[0].id).await;
    assert_eq!(
        serde_json::to_value(&shown.job).unwrap()["lane"],
        json!("urgent")
    );
}
both_stores!(
    the_claim_takes_the_lanes_in_order_on,
    the_claim_takes_the_lanes_in_order
);
