//! Every action of the action table (`Action::ALL`) can be enqueued on both stores: the
//! `actions` table the stores seed at start holds each one, and each job reads back with the
//! action, parameters and target it was given. A new action added to the table is covered
//! here without a line of its own.

use chrono::Utc;
use offboard::domain::{Action, Email, NewChain, NewStep};
use offboard::store::{JobFilter, NewDelivery};
use serde_json::{Map, Value, json};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Connection, PgConnection};

use crate::both_stores;
use crate::support::db::{Backend, TestDb};

/// Each action's person, so that no two jobs share a live key.
fn email(action: Action) -> String {
    format!("{}@example.com", action.as_str().replace('_', "-"))
}

/// The action's parameter, if it takes one, with an id that names the action.
fn params(action: Action) -> Map<String, Value> {
    let mut params = Map::new();
    if let Some(name) = action.required_param() {
        params.insert(name.to_owned(), json!(format!("id-{action}")));
    }
    params
}

/// The `action` and `target` columns of a job, as the store wrote them.
async fn stored_columns(db: &TestDb, id: &str) -> (String, String) {
    let sql = "SELECT action, target FROM jobs WHERE id = $1";
    let id: i64 = id.parse().expect("a numeric job id");
    match db.backend {
        Backend::Sqlite => {
            let mut conn = SqliteConnection::connect(&db.url).await.expect("open");
            sqlx::query_as(sql).bind(id).fetch_one(&mut conn).await
        }
        Backend::Postgres => {
            let mut conn = PgConnection::connect(&db.url).await.expect("connect");
            sqlx::query_as(sql).bind(id).fetch_one(&mut conn).await
        }
    }
    .expect("read the job's columns")
}

async fn every_action_is_enqueued_and_read_back(db: TestDb) {
    let store = db.store().await;
    let run_at = Utc::now();
    let chains = Action::ALL
        .into_iter()
        .map(|action| NewChain {
            email: Email::parse(&email(action)).expect("valid email"),
            account_id: None,
            account_type: None,
            rule: "every_action".to_owned(),
            approval: false,
            steps: vec![NewStep {
                action,
                params: params(action),
                run_at,
                lane: offboard::domain::Lane::Bulk,
            }],
        })
        .collect();
    let receipt = store
        .accept_delivery(NewDelivery {
            received_at: run_at,
            ..NewDelivery::signed("hr", "every-action", chains)
        })
        .await
        .expect("accept every action");
    let ids = receipt.job_ids();
    assert_eq!(ids.len(), Action::ALL.len(), "{}", receipt.body());

    for (action, id) in Action::ALL.into_iter().zip(&ids) {
        let job = store
            .job(id.parse().expect("a job id"))
            .await
            .expect("read the job")
            .unwrap_or_else(|| panic!("{action}: job {id} is missing"));
        assert_eq!(job.action, action);
        assert_eq!(job.email.as_str(), email(action), "{action}");
        assert_eq!(job.params, params(action), "{action}");
        let target = action
            .required_param()
            .map(|_| format!("id-{action}"))
            .unwrap_or_default();
        assert_eq!(job.key_target(), target, "{action}");
        assert_eq!(
            stored_columns(&db, id).await,
            (action.as_str().to_owned(), target),
            "{action}"
        );

        let listed = store
            .list_jobs(&JobFilter {
                action: Some(action),
                limit: 50,
                ..JobFilter::default()
            })
            .await
            .expect("list the action's jobs");
        let listed: Vec<Action> = listed.iter().map(|job| job.action).collect();
        assert_eq!(listed, [action]);
    }
}
both_stores!(
    every_action_is_enqueued_and_read_back_on,
    every_action_is_enqueued_and_read_back
);
