//! The whole path once per store: signed webhook in, job committed, worker calls the fake
//! Atlassian with the right auth, job succeeded.

use std::time::Duration;

use crate::both_stores;
use crate::support::app::{TestApp, atlassian_toml, job_ids};
use crate::support::db::TestDb;
use crate::support::fake_atlassian::FakeAtlassian;
use offboard::domain::{JobState, Outcome};
use serde_json::json;

async fn webhook_to_done(db: TestDb) {
    let fake = FakeAtlassian::start().await;
    fake.add_customer("qm:1", "Leaver@Example.com");
    let toml = format!(
        r#"dry_run = false
{}
[[sources]]
name = "jira"
scheme = "token"
secrets = ["s3cret-token"]
  [[sources.rules]]
  name = "offboard-customer"
  email = "/email"
  actions = ["delete_portal_customer"]
"#,
        atlassian_toml(&fake)
    );
    let app = TestApp::spawn(&db, &toml).await;
    let body = app
        .deliver("jira", &json!({ "email": "leaver@example.com" }))
        .await;
    let ids = job_ids(&body);
    assert_eq!(ids.len(), 1, "{body}");
    let job = app.wait_final(&ids[0], Duration::from_secs(10)).await;
    assert_eq!(job.job.state, JobState::Succeeded, "{job:#?}");
    assert_eq!(job.job.outcome, Some(Outcome::Done));
    let mutations = fake.mutating_requests();
    assert_eq!(mutations.len(), 1);
    assert_eq!(mutations[0].method, "DELETE");
    app.stop().await;
}

both_stores!(webhook_to_done_on, webhook_to_done);
