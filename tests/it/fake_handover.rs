//! The fake Atlassian's hand-over endpoints, driven directly: the answers offboard must cope
//! with before it removes a leaver (paging, asynchronous bulk tasks, failures inside a 200,
//! refusals, ignored changes).

use std::time::Duration;

use crate::support::fake_atlassian::{
    CLOUD_ID, DashboardStatus, FakeAtlassian, SITE_ACCOUNT_ID, SITE_EMAIL, SITE_TOKEN,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// The fake with the site user's Basic auth on every request.
struct Site {
    fake: FakeAtlassian,
    http: reqwest::Client,
}

impl Site {
    async fn start() -> Site {
        offboard::install_tls_provider();
        let fake = FakeAtlassian::start().await;
        for id in ["acc-leaver", "acc-heir", "acc-other"] {
            fake.add_managed(id, &format!("{id}@example.com"));
        }
        Site {
            fake,
            http: reqwest::Client::new(),
        }
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.fake.url))
            .basic_auth(SITE_EMAIL, Some(SITE_TOKEN));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("the fake answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, Some(body)).await
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }
}

#[tokio::test]
async fn a_filter_changes_owner_unless_refused_hidden_or_a_duplicate() {
    let site = Site::start().await;
    site.fake.add_filter("10001", "acc-leaver", true);
    site.fake.add_filter("10002", "acc-leaver", false);
    site.fake.add_filter_refusing("10003", "acc-leaver");
    site.fake.add_filter("10004", "acc-leaver", true);
    site.fake.add_filter("10005", "acc-heir", true);
    site.fake.name_filter("10004", "Open bugs");
    site.fake.name_filter("10005", "Open bugs");
    let heir = json!({ "accountId": "acc-heir" });

    let (status, _) = site
        .put("/rest/api/3/filter/10001/owner", heir.clone())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(site.fake.filter("10001").unwrap().owner, "acc-heir");
    assert_eq!(site.fake.filter_owner_changes("10001"), 1);

    let private = site
        .put("/rest/api/3/filter/10002/owner", heir.clone())
        .await;
    assert_eq!(
        private.0,
        StatusCode::NOT_FOUND,
        "not visible to the site user"
    );
    let refused = site
        .put("/rest/api/3/filter/10003/owner", heir.clone())
        .await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN);
    let duplicate = site
        .put("/rest/api/3/filter/10004/owner", heir.clone())
        .await;
    assert_eq!(
        duplicate.0,
        StatusCode::BAD_REQUEST,
        "the heir owns 'Open bugs'"
    );
    let nobody = json!({ "accountId": "acc-nobody" });
    let unknown_owner = site.put("/rest/api/3/filter/10001/owner", nobody).await;
    assert_eq!(unknown_owner.0, StatusCode::NOT_FOUND);
    let malformed = site.put("/rest/api/3/filter/10001/owner", json!({})).await;
    assert_eq!(malformed.0, StatusCode::BAD_REQUEST);
    assert_eq!(site.fake.filter("10003").unwrap().owner, "acc-leaver");
    assert_eq!(site.fake.filter_owner_changes("10004"), 0);

    // 10001 went to the heir; the private filter shows only with the admin override.
    let (_, visible) = site
        .get("/rest/api/3/filter/search?accountId=acc-leaver&expand=owner,jql")
        .await;
    assert_eq!(visible["total"], 2);
    let (_, all) = site
        .get("/rest/api/3/filter/search?accountId=acc-leaver&overrideSharePermissions=true")
        .await;
    assert_eq!(all["total"], 3);
    assert_eq!(all["values"][0]["name"], "Filter 10002");
}

#[tokio::test]
async fn a_dashboard_bulk_change_names_its_failures_inside_a_200() {
    let site = Site::start().await;
    site.fake.add_dashboard("20001", "acc-leaver", true);
    site.fake.add_dashboard_refusing("20002", "acc-leaver");
    site.fake.add_dashboard("20003", "acc-leaver", false);
    let body = |extend: bool| {
        json!({
            "action": "changeOwner",
            "entityIds": [20001, 20002, 20003, 29999],
            "changeOwnerDetails": { "newOwner": "acc-heir", "autofixName": true },
            "extendAdminPermissions": extend,
        })
    };

    let (status, answer) = site
        .put("/rest/api/3/dashboard/bulk/edit", body(false))
        .await;
    assert_eq!(status, StatusCode::OK);
    let errors = answer["entityErrors"].as_object().unwrap();
    let failed: Vec<&str> = errors.keys().map(String::as_str).collect();
    assert_eq!(
        failed,
        ["20001", "20002", "20003", "29999"],
        "not the site user's"
    );
    assert!(errors["29999"]["errorMessages"][0].is_string());

    let (status, answer) = site
        .put("/rest/api/3/dashboard/bulk/edit", body(true))
        .await;
    assert_eq!(status, StatusCode::OK);
    let failed: Vec<&String> = answer["entityErrors"].as_object().unwrap().keys().collect();
    assert_eq!(failed, ["20002", "29999"]);
    assert_eq!(site.fake.dashboard("20003").unwrap().item.owner, "acc-heir");

    let (status, read_back) = site.get("/rest/api/3/dashboard/20001").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read_back["owner"]["accountId"], "acc-heir");
    let private = site.get("/rest/api/3/dashboard/20003").await;
    assert_eq!(
        private.0,
        StatusCode::NOT_FOUND,
        "not shared with the site user"
    );

    let too_many: Vec<u64> = (0..101).collect();
    let mut over = body(true);
    over["entityIds"] = json!(too_many);
    let over = site.put("/rest/api/3/dashboard/bulk/edit", over).await;
    assert_eq!(over.0, StatusCode::BAD_REQUEST);
    let bad = site
        .put("/rest/api/3/dashboard/bulk/edit", json!({"action": 1}))
        .await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_dashboard_search_filters_on_status() {
    let site = Site::start().await;
    site.fake.add_dashboard("20001", "acc-leaver", true);
    site.fake.add_dashboard("20002", "acc-leaver", true);
    site.fake
        .set_dashboard_status("20002", DashboardStatus::Deleted);
    let search = "/rest/api/3/dashboard/search?accountId=acc-leaver&expand=owner";
    let (_, active) = site.get(search).await;
    assert_eq!(active["values"][0]["id"], "20001");
    assert_eq!(active["total"], 1);
    let (_, trashed) = site.get(&format!("{search}&status=deleted")).await;
    assert_eq!(trashed["values"][0]["id"], "20002");
    let (status, _) = site.get(&format!("{search}&status=gone")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_issue_search_pages_with_a_token_and_leaves_it_out_on_the_last_page() {
    let site = Site::start().await;
    for n in 1..=12 {
        let assignee = if n == 12 { "acc-other" } else { "acc-leaver" };
        site.fake
            .add_issue(&format!("PROJ-{n}"), "PROJ", Some(assignee), n == 11);
    }
    let jql = "assignee = \"acc-leaver\" AND statusCategory != Done";
    let mut keys = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({ "jql": jql, "fields": ["assignee", "status"], "maxResults": 4 });
        if let Some(token) = &token {
            body["nextPageToken"] = json!(token);
        }
        let (status, page) = site.post("/rest/api/3/search/jql", body).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        pages += 1;
        for issue in page["issues"].as_array().unwrap() {
            assert_eq!(issue["fields"]["assignee"]["accountId"], "acc-leaver");
            keys.push(issue["key"].as_str().unwrap().to_owned());
        }
        assert!(page.get("total").is_none());
        match page.get("nextPageToken") {
            Some(next) => {
                assert_eq!(page["isLast"], false);
                token = Some(next.as_str().unwrap().to_owned());
            }
            None => {
                assert_eq!(page["isLast"], true);
                break;
            }
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (1..=10).map(|n| format!("PROJ-{n}")).collect();
    assert_eq!(keys, expected, "open ones, in key order");

    let (status, page) = site
        .get("/rest/api/3/search/jql?jql=key%20in%20(PROJ-2,%20PROJ-11)&fields=id,key")
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["issues"].as_array().unwrap().len(), 2);
    assert!(page.get("nextPageToken").is_none());
    let (status, error) = site
        .get("/rest/api/3/search/jql?jql=project%20%3D%20PROJ")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["errorMessages"][0].is_string());

    let (status, gone) = site.get("/rest/api/3/search?jql=assignee%3Dx").await;
    assert_eq!(status, StatusCode::GONE);
    assert_eq!(
        gone["errorMessages"][0],
        "The requested API has been removed"
    );
}

#[tokio::test]
async fn a_bulk_reassignment_runs_on_its_own_and_completes() {
    let site = Site::start().await;
    for n in 1..=4 {
        site.fake
            .add_issue(&format!("PROJ-{n}"), "PROJ", Some("acc-leaver"), false);
    }
    site.fake.refuse_issue_edit("PROJ-3");
    site.fake.set_bulk_issues_per_second(10.0);
    let issue_ids = ["PROJ-1", "PROJ-2", "PROJ-3", "10003", "NOPE-1"];
    let body = json!({
        "selectedIssueIdsOrKeys": issue_ids,
        "selectedActions": ["assignee"],
        "editedFieldsInput": { "singleSelectClearableUserPickerFields": [
            { "fieldId": "assignee", "user": { "accountId": "acc-heir" } }
        ] },
        "sendBulkNotification": false,
    });
    let (status, created) = site
        .post("/rest/api/3/bulk/issues/fields", body.clone())
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let task = created["taskId"].as_str().unwrap().to_owned();
    // 10 issues a second: the first is due after 100 ms, the last after 500 ms.
    let (_, first) = site.get(&format!("/rest/api/3/bulk/queue/{task}")).await;
    assert_eq!(first["status"], "ENQUEUED", "{first}");
    assert_eq!(first["totalIssueCount"], 5);

    // Without polling: the task goes on meanwhile.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, running) = site.get(&format!("/rest/api/3/bulk/queue/{task}")).await;
    assert_eq!(running["status"], "RUNNING", "{running}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        site.fake.issue("PROJ-4").unwrap().assignee.unwrap(),
        "acc-heir"
    );
    let (_, done) = site.get(&format!("/rest/api/3/bulk/queue/{task}")).await;
    assert_eq!(done["status"], "COMPLETE");
    assert_eq!(done["progressPercent"], 100);
    assert_eq!(
        done["processedAccessibleIssues"],
        json!([10000, 10001, 10003])
    );
    assert!(done["failedAccessibleIssues"]["10002"][0].is_string());
    assert_eq!(done["invalidOrInaccessibleIssueCount"], 1);
    assert_eq!(
        site.fake.issue("PROJ-3").unwrap().assignee.unwrap(),
        "acc-leaver"
    );
    assert_eq!(site.fake.issue_assignee_changes("PROJ-1"), 1);
    assert_eq!(site.fake.bulk_tasks_created(), 1);
    assert_eq!(site.fake.bulk_notifications_requested(), 0);

    let mut noisy = body.clone();
    noisy
        .as_object_mut()
        .unwrap()
        .remove("sendBulkNotification");
    let (status, _) = site.post("/rest/api/3/bulk/issues/fields", noisy).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        site.fake.bulk_notifications_requested(),
        1,
        "true by default"
    );

    let mut unknown_user = body.clone();
    unknown_user["editedFieldsInput"]["singleSelectClearableUserPickerFields"][0]["user"]["accountId"] =
        json!("acc-nobody");
    let (status, error) = site
        .post("/rest/api/3/bulk/issues/fields", unknown_user)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(error["errors"].is_array());
    let too_many: Vec<String> = (0..1001).map(|n| format!("PROJ-{n}")).collect();
    let mut over = body;
    over["selectedIssueIdsOrKeys"] = json!(too_many);
    let (status, _) = site.post("/rest/api/3/bulk/issues/fields", over).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = site.get("/rest/api/3/bulk/queue/404").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_single_reassignment_counts_and_respects_refusals() {
    let site = Site::start().await;
    site.fake
        .add_issue("PROJ-1", "PROJ", Some("acc-leaver"), false);
    site.fake
        .add_issue("PROJ-2", "PROJ", Some("acc-leaver"), false);
    site.fake.refuse_issue_edit("PROJ-2");
    let heir = json!({ "accountId": "acc-heir" });
    let (status, _) = site
        .put("/rest/api/3/issue/PROJ-1/assignee", heir.clone())
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(site.fake.issue_assignee_changes("PROJ-1"), 1);
    let (status, _) = site
        .put("/rest/api/3/issue/PROJ-2/assignee", heir.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = site.put("/rest/api/3/issue/PROJ-9/assignee", heir).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let nobody = json!({ "accountId": "acc-nobody" });
    let (status, _) = site.put("/rest/api/3/issue/PROJ-1/assignee", nobody).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn projects_and_components_change_leads_and_an_empty_search_is_a_404() {
    let site = Site::start().await;
    let search = "/rest/api/3/project/search?expand=lead&action=edit";
    let (status, _) = site.get(search).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "no project at all");

    site.fake.add_project("PROJ", "10100", "acc-leaver");
    site.fake.add_project("LOCK", "10101", "acc-leaver");
    site.fake.refuse_project_edit("LOCK");
    site.fake.add_component("30001", "PROJ", Some("acc-leaver"));
    site.fake.add_component("30002", "PROJ", None);
    let (status, page) = site.get(search).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        page["total"], 1,
        "the project it cannot administer is left out"
    );
    assert_eq!(page["values"][0]["lead"]["accountId"], "acc-leaver");
    let (_, plain) = site.get("/rest/api/3/project/search").await;
    assert_eq!(plain["total"], 2);
    assert!(plain["values"][0].get("lead").is_none());

    let heir = json!({ "leadAccountId": "acc-heir" });
    let (status, project) = site.put("/rest/api/3/project/10100", heir.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(project["lead"]["accountId"], "acc-heir");
    assert_eq!(site.fake.project_lead("PROJ").unwrap(), "acc-heir");
    let (status, _) = site.put("/rest/api/3/project/LOCK", heir.clone()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = site.put("/rest/api/3/project/NONE", heir.clone()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let nobody = json!({ "leadAccountId": "acc-nobody" });
    let (status, _) = site.put("/rest/api/3/project/PROJ", nobody.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, components) = site.get("/rest/api/3/project/PROJ/components").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(components[0]["leadAccountId"], "acc-leaver");
    assert_eq!(components[0]["assigneeType"], "PROJECT_DEFAULT");
    assert!(components[1].get("lead").is_none());
    let (status, component) = site.put("/rest/api/3/component/30001", heir.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(component["lead"]["accountId"], "acc-heir");
    assert_eq!(site.fake.component_lead("30001").unwrap(), "acc-heir");
    let (status, _) = site.put("/rest/api/3/component/30001", nobody).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = site.put("/rest/api/3/component/39999", heir).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = site.get("/rest/api/3/project/NONE/components").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn automation_rules_page_by_cursor_and_ignore_owner_changes_by_default() {
    let site = Site::start().await;
    for n in 1..=3 {
        site.fake.add_rule(
            &format!("rule-{n}"),
            &format!("Rule {n}"),
            "acc-leaver",
            "acc-leaver",
        );
    }
    let tenant = site
        .http
        .get(format!("{}/_edge/tenant_info", site.fake.url))
        .send()
        .await
        .unwrap();
    assert_eq!(tenant.status(), StatusCode::OK, "no credentials needed");
    let tenant: Value = tenant.json().await.unwrap();
    assert_eq!(tenant["cloudId"], CLOUD_ID);

    let base = format!("/automation/public/jira/{CLOUD_ID}/rest/v1/rule");
    let (_, first) = site.get(&format!("{base}/summary?limit=2")).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    assert_eq!(first["data"][0]["authorAccountId"], "acc-leaver");
    let next = first["links"]["next"].as_str().unwrap();
    let (_, last) = site
        .get(&format!("{base}/summary?limit=2&cursor={next}"))
        .await;
    assert_eq!(last["data"][0]["uuid"], "rule-3");
    assert!(last["links"].get("next").is_none());
    let (status, _) = site
        .get("/automation/public/jira/cloud-x/rest/v1/rule/summary")
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let bearer = site
        .http
        .get(format!("{}{base}/summary", site.fake.url))
        .bearer_auth("admin-key")
        .send()
        .await
        .unwrap();
    assert_eq!(
        bearer.status(),
        StatusCode::UNAUTHORIZED,
        "API token, not the key"
    );

    let (status, read) = site.get(&format!("{base}/rule-1")).await;
    assert_eq!(status, StatusCode::OK);
    let mut rule = read["rule"].clone();
    rule["authorAccountId"] = json!("acc-heir");
    rule["actorAccountId"] = json!("acc-heir");
    let (status, _) = site
        .put(&format!("{base}/rule-1"), json!({ "rule": rule.clone() }))
        .await;
    assert_eq!(status, StatusCode::OK);
    let ignored = site.fake.rule("rule-1").unwrap();
    assert_eq!(
        (ignored.author.as_str(), ignored.actor.as_str()),
        ("acc-leaver", "acc-leaver")
    );

    site.fake.set_automation_owner_change(true);
    let (status, _) = site
        .put(&format!("{base}/rule-1"), json!({ "rule": rule }))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(site.fake.rule("rule-1").unwrap().actor, "acc-heir");
    let (status, _) = site.get(&format!("{base}/rule-9")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_site_users_own_private_filter_is_visible() {
    let site = Site::start().await;
    site.fake.add_filter("10001", SITE_ACCOUNT_ID, false);
    let (_, page) = site
        .get(&format!(
            "/rest/api/3/filter/search?accountId={SITE_ACCOUNT_ID}"
        ))
        .await;
    assert_eq!(
        page["total"], 1,
        "its own private filter is visible to the site user"
    );
}
