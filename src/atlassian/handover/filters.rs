//! Filters: found by owner with `filter/search` (private ones too, with
//! `overrideSharePermissions=true`, which needs *Administer Jira*), moved one at a time with
//! `PUT /rest/api/3/filter/{id}/owner`: no bulk call exists [SPEC, GOJ].

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ItemAnswer, id_text};
use crate::atlassian::client::Client;
use crate::atlassian::error::CallError;
use crate::domain::ApiFamily;

#[derive(Deserialize)]
struct Filter {
    id: Value,
}

impl Client {
    /// The ids of every filter `account_id` owns that the site user can find.
    pub async fn owned_filters(&self, account_id: &str) -> Result<Vec<String>, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "filter", "search"])?;
        url.query_pairs_mut()
            .append_pair("accountId", account_id)
            .append_pair("overrideSharePermissions", "true")
            .append_pair("expand", "owner");
        let filters: Vec<Filter> = self.site_pages("filter_search", url).await?;
        Ok(filters.iter().filter_map(|f| id_text(&f.id)).collect())
    }

    /// Gives one filter to `new_owner`: 204, or the filter's refusal (400 a filter of that
    /// name already is the new owner's; 403; 404 filter or owner unknown) [SPEC].
    pub async fn change_filter_owner(
        &self,
        filter_id: &str,
        new_owner: &str,
    ) -> Result<ItemAnswer, CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "filter", filter_id, "owner"])?;
        let request = self
            .request(ApiFamily::Site, Method::PUT, url)?
            .json(&json!({ "accountId": new_owner }));
        Ok(match self.site_item_write("filter_owner", request).await? {
            Ok(_) => ItemAnswer::Accepted,
            Err(why) => ItemAnswer::Refused(why),
        })
    }
}
