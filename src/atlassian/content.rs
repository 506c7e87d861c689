//! What a managed account owns in Jira that deleting it would take along (README, "No silent
//! loss"): Atlassian documents that deleting a managed account deletes the filters it owns,
//! even shared ones, and trashes or deletes its dashboards (the sources differ).

use reqwest::Method;
use serde::Deserialize;

use super::client::Client;
use super::error::CallError;
use super::lookup::read_lookup;
use crate::domain::ApiFamily;

/// The filters and dashboards an account owns, as far as the site user can see them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnedContent {
    pub filters: u64,
    pub dashboards: u64,
}

impl OwnedContent {
    pub fn is_empty(&self) -> bool {
        self.filters == 0 && self.dashboards == 0
    }
}

/// The page of `filter/search` and `dashboard/search`: offset paging with a `total`.
#[derive(Deserialize)]
struct Page {
    total: Option<u64>,
    #[serde(default)]
    values: Vec<serde_json::Value>,
    #[serde(rename = "isLast")]
    is_last: Option<bool>,
}

impl Page {
    /// The count the page states; a page without `total` counts only when it is the last.
    fn count(&self) -> Result<u64, CallError> {
        match (self.total, self.is_last) {
            (Some(total), _) => Ok(total),
            (None, Some(true)) => Ok(self.values.len() as u64),
            (None, _) => Err(CallError::Transient {
                detail: "the search answered neither a total nor its last page".into(),
            }),
        }
    }
}

impl Client {
    /// Counts what `account_id` owns: two reads, paced like every other request.
    /// `overrideSharePermissions=true` lets a site user with *Administer Jira* see private
    /// filters too; no such switch is documented for dashboards, so a private dashboard the
    /// site user cannot see is not counted (README, "No silent loss").
    pub async fn owned_content(&self, account_id: &str) -> Result<OwnedContent, CallError> {
        let mut filters = self.site_endpoint(&["rest", "api", "3", "filter", "search"])?;
        filters
            .query_pairs_mut()
            .append_pair("accountId", account_id)
            .append_pair("overrideSharePermissions", "true")
            .append_pair("maxResults", "1");
        let request = self.request(ApiFamily::Site, Method::GET, filters)?;
        let response = self.send(ApiFamily::Site, "filter_search", request).await?;
        let filters = read_lookup::<Page>(response).await?.count()?;
        let mut dashboards = self.site_endpoint(&["rest", "api", "3", "dashboard", "search"])?;
        dashboards
            .query_pairs_mut()
            .append_pair("accountId", account_id)
            .append_pair("maxResults", "1");
        let request = self.request(ApiFamily::Site, Method::GET, dashboards)?;
        let response = self
            .send(ApiFamily::Site, "dashboard_search", request)
            .await?;
        let dashboards = read_lookup::<Page>(response).await?.count()?;
        Ok(OwnedContent {
            filters,
            dashboards,
        })
    }
}
