//! Open issues: found with the JQL search (`search/jql`, token-paged, no `total`),
//! reassigned in bulk with `POST /rest/api/3/bulk/issues/fields` without notifications
//! (`sendBulkNotification` defaults to true), and followed through the bulk queue until the
//! task ends [SPEC].

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::id_text;
use crate::atlassian::client::Client;
use crate::atlassian::error::CallError;
use crate::atlassian::lookup::read_lookup;
use crate::domain::ApiFamily;

/// The most issues one bulk edit names (subtasks included) [SPEC].
pub const ISSUES_PER_EDIT: usize = 1000;
/// The page asked of the search: up to 5,000 are documented when only ids are asked for; one
/// page is one bulk edit's worth.
const SEARCH_PAGE: usize = ISSUES_PER_EDIT;

#[derive(Deserialize)]
struct SearchPage {
    #[serde(default)]
    issues: Vec<Issue>,
    #[serde(rename = "nextPageToken")]
    next_page_token: Option<String>,
    #[serde(rename = "isLast")]
    is_last: Option<bool>,
}

#[derive(Deserialize)]
struct Issue {
    id: Value,
}

#[derive(Deserialize)]
struct Created {
    #[serde(rename = "taskId")]
    task_id: Value,
}

/// A bulk task as the queue shows it.
#[derive(Clone, Debug, Deserialize)]
pub struct BulkTask {
    /// `ENQUEUED|RUNNING|COMPLETE|FAILED|CANCEL_REQUESTED|CANCELLED|DEAD`.
    pub status: String,
    #[serde(default, rename = "processedAccessibleIssues")]
    processed: Vec<Value>,
    #[serde(default, rename = "failedAccessibleIssues")]
    failed: BTreeMap<String, Value>,
}

impl BulkTask {
    /// Whether it will change nothing more.
    pub fn has_ended(&self) -> bool {
        !matches!(
            self.status.as_str(),
            "ENQUEUED" | "RUNNING" | "CANCEL_REQUESTED"
        )
    }

    /// The issues it changed.
    pub fn processed(&self) -> Vec<String> {
        self.processed.iter().filter_map(id_text).collect()
    }

    /// The issues it could not change, with why.
    pub fn failed(&self) -> Vec<(String, String)> {
        self.failed
            .iter()
            .map(|(id, why)| (id.clone(), why.to_string()))
            .collect()
    }
}

impl Client {
    /// The ids of every unresolved issue assigned to `account_id` that the site user can
    /// browse.
    pub async fn open_issues(&self, account_id: &str) -> Result<Vec<String>, CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "search", "jql"])?;
        let jql = format!(
            "assignee = \"{}\" AND statusCategory != Done",
            account_id.replace('\\', "\\\\").replace('"', "\\\"")
        );
        let mut ids = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({ "jql": jql, "fields": ["id"], "maxResults": SEARCH_PAGE });
            if let Some(token) = &token {
                body["nextPageToken"] = json!(token);
            }
            let request = self
                .request(ApiFamily::Site, Method::POST, url.clone())?
                .json(&body);
            let response = self.send(ApiFamily::Site, "issue_search", request).await?;
            let page: SearchPage = read_lookup(response).await?;
            ids.extend(page.issues.iter().filter_map(|issue| id_text(&issue.id)));
            // The last page carries no token [SPEC].
            match page.next_page_token {
                Some(next) if page.is_last != Some(true) && !page.issues.is_empty() => {
                    token = Some(next);
                }
                _ => return Ok(ids),
            }
        }
    }

    /// Starts a bulk task that assigns up to [`ISSUES_PER_EDIT`] issues to `new_assignee`,
    /// sending no notification; its id.
    pub async fn reassign_issues(
        &self,
        ids: &[String],
        new_assignee: &str,
    ) -> Result<String, CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "bulk", "issues", "fields"])?;
        let request = self
            .request(ApiFamily::Site, Method::POST, url)?
            .json(&json!({
                "selectedIssueIdsOrKeys": ids,
                "selectedActions": ["assignee"],
                "editedFieldsInput": {
                    "singleSelectClearableUserPickerFields": [
                        { "fieldId": "assignee", "user": { "accountId": new_assignee } }
                    ]
                },
                "sendBulkNotification": false,
            }));
        let response = self
            .send(ApiFamily::Site, "issue_bulk_edit", request)
            .await?;
        let created: Created = read_lookup(response).await?;
        id_text(&created.task_id).ok_or_else(|| CallError::Transient {
            detail: "the bulk edit answered without a task id".into(),
        })
    }

    /// The bulk task as the queue shows it now.
    pub async fn bulk_task(&self, task_id: &str) -> Result<BulkTask, CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "bulk", "queue", task_id])?;
        self.site_read("bulk_queue", url).await
    }
}
