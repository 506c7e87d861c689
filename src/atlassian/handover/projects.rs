//! Project and component leads. No search filters by lead: the projects the site user may
//! administer (`action=edit`) are listed with their lead, and each one's components read;
//! `PUT` of the project or component names the new lead and answers the object, whose lead
//! is read back from it [SPEC].

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ItemAnswer, User, id_text};
use crate::atlassian::client::Client;
use crate::atlassian::error::CallError;
use crate::domain::ApiFamily;

#[derive(Deserialize)]
struct Project {
    key: String,
    #[serde(default)]
    lead: User,
}

#[derive(Deserialize)]
struct Component {
    id: Value,
    #[serde(default)]
    lead: User,
    #[serde(rename = "leadAccountId")]
    lead_account_id: Option<String>,
}

impl Component {
    fn lead(&self) -> Option<&str> {
        self.lead_account_id
            .as_deref()
            .or(self.lead.account_id.as_deref())
    }
}

/// What `account_id` leads: project keys, and component ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Led {
    pub projects: Vec<String>,
    pub components: Vec<String>,
}

impl Client {
    /// The projects and components `account_id` leads, among the projects the site user
    /// may administer. A search that matches no project answers 404 [SPEC]: none.
    pub async fn led_by(&self, account_id: &str) -> Result<Led, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "project", "search"])?;
        url.query_pairs_mut()
            .append_pair("expand", "lead")
            .append_pair("action", "edit");
        let projects: Vec<Project> = match self.site_pages("project_search", url).await {
            Ok(projects) => projects,
            Err(CallError::Rejected { status: 404, .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let mut led = Led::default();
        for project in &projects {
            if project.lead.account_id.as_deref() == Some(account_id) {
                led.projects.push(project.key.clone());
            }
            let url =
                self.site_endpoint(&["rest", "api", "3", "project", &project.key, "components"])?;
            let components: Vec<Component> = match self.site_read("project_components", url).await {
                Ok(components) => components,
                // Gone, or no longer browsable, since the search.
                Err(CallError::Rejected { status: 404, .. }) => Vec::new(),
                Err(e) => return Err(e),
            };
            led.components.extend(
                components
                    .iter()
                    .filter(|c| c.lead() == Some(account_id))
                    .filter_map(|c| id_text(&c.id)),
            );
        }
        Ok(led)
    }

    /// Whether the site user may administer at least one project (for `offboard doctor`):
    /// one page of one project, or the 404 of a search that matches none [SPEC].
    pub async fn administers_projects(&self) -> Result<bool, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "project", "search"])?;
        url.query_pairs_mut()
            .append_pair("action", "edit")
            .append_pair("maxResults", "1");
        match self
            .site_read::<super::OffsetPage<Value>>("project_search", url)
            .await
        {
            Ok(page) => Ok(!page.values.is_empty()),
            Err(CallError::Rejected { status: 404, .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Makes `new_lead` the project's lead (`PUT /rest/api/3/project/{key}`).
    pub async fn change_project_lead(
        &self,
        key: &str,
        new_lead: &str,
    ) -> Result<ItemAnswer, CallError> {
        self.change_lead("project_lead", &["project", key], new_lead)
            .await
    }

    /// Makes `new_lead` the component's lead (`PUT /rest/api/3/component/{id}`).
    pub async fn change_component_lead(
        &self,
        id: &str,
        new_lead: &str,
    ) -> Result<ItemAnswer, CallError> {
        self.change_lead("component_lead", &["component", id], new_lead)
            .await
    }

    /// Sends `leadAccountId` to the object; accepted only when the answer shows the new lead.
    async fn change_lead(
        &self,
        endpoint: &'static str,
        object: &[&str],
        new_lead: &str,
    ) -> Result<ItemAnswer, CallError> {
        let url = self.site_endpoint(&[&["rest", "api", "3"][..], object].concat())?;
        let request = self
            .request(ApiFamily::Site, Method::PUT, url)?
            .json(&json!({ "leadAccountId": new_lead }));
        let answer = self.site_item_write(endpoint, request).await?;
        Ok(lead_shown(answer, new_lead))
    }
}

/// A lead change is read back from the object its 200 answers: `lead.accountId` (or a
/// component's `leadAccountId`) must be the new lead.
fn lead_shown(answer: Result<Option<Value>, String>, new_lead: &str) -> ItemAnswer {
    match answer {
        Err(why) => ItemAnswer::Refused(why),
        Ok(body) => {
            let body = body.unwrap_or_default();
            let lead = body
                .pointer("/lead/accountId")
                .or_else(|| body.get("leadAccountId"))
                .and_then(Value::as_str);
            if lead == Some(new_lead) {
                ItemAnswer::Accepted
            } else {
                ItemAnswer::Refused(format!(
                    "the answer shows lead {}, not the successor",
                    lead.unwrap_or("none")
                ))
            }
        }
    }
}
