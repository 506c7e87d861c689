//! Dashboards: found by owner with `dashboard/search` (only those the site user can see: no
//! override is documented), moved up to 100 at a time with the bulk edit, whose per-dashboard
//! failures come inside its 200 (`entityErrors`) [SPEC, JS-v5].

use std::collections::BTreeMap;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ItemAnswer, id_text};
use crate::atlassian::client::Client;
use crate::atlassian::error::CallError;
use crate::atlassian::lookup::read_lookup;
use crate::domain::ApiFamily;

/// The most dashboards one bulk edit names [SPEC].
pub const DASHBOARDS_PER_EDIT: usize = 100;

#[derive(Deserialize)]
struct Dashboard {
    id: Value,
}

#[derive(Deserialize)]
struct BulkEdit {
    #[serde(default, rename = "entityErrors")]
    entity_errors: BTreeMap<String, Value>,
}

impl Client {
    /// The ids of every active dashboard `account_id` owns that the site user can see.
    pub async fn owned_dashboards(&self, account_id: &str) -> Result<Vec<String>, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "dashboard", "search"])?;
        url.query_pairs_mut()
            .append_pair("accountId", account_id)
            .append_pair("expand", "owner");
        let dashboards: Vec<Dashboard> = self.site_pages("dashboard_search", url).await?;
        Ok(dashboards.iter().filter_map(|d| id_text(&d.id)).collect())
    }

    /// Gives up to [`DASHBOARDS_PER_EDIT`] dashboards to `new_owner` in one call, acting with
    /// *Administer Jira* (`extendAdminPermissions`) and renaming a duplicate name
    /// (`autofixName`); each dashboard's answer, from `entityErrors`.
    pub async fn change_dashboard_owners(
        &self,
        ids: &[String],
        new_owner: &str,
    ) -> Result<Vec<(String, ItemAnswer)>, CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "dashboard", "bulk", "edit"])?;
        let request = self
            .request(ApiFamily::Site, Method::PUT, url)?
            .json(&json!({
                "action": "changeOwner",
                "entityIds": ids,
                "changeOwnerDetails": { "newOwner": new_owner, "autofixName": true },
                "extendAdminPermissions": true,
            }));
        let response = self
            .send(ApiFamily::Site, "dashboard_bulk_edit", request)
            .await?;
        let edit: BulkEdit = read_lookup(response).await?;
        Ok(ids
            .iter()
            .map(|id| {
                let answer = match edit.entity_errors.get(id) {
                    Some(error) => ItemAnswer::Refused(error.to_string()),
                    None => ItemAnswer::Accepted,
                };
                (id.clone(), answer)
            })
            .collect())
    }
}
