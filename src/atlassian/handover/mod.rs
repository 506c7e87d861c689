//! The calls a hand-over makes (README, "Hand-over before removal"): find the leaver's
//! items by owner, move them to the successor, and read what Atlassian then shows. One file
//! per kind of item; the procedure that strings them together is `src/worker/handover/`.
//!
//! An item the call refuses (400, 403, 404: someone else's private filter, a name the
//! successor already uses) is that item's answer, not the step's: it is kept, with why,
//! and the rest move. Rate limits, bad credentials and server errors stop the step as
//! they stop every call.

mod automation;
mod dashboards;
mod filters;
mod issues;
mod projects;

use reqwest::{Method, RequestBuilder, Response, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::client::Client;
use super::error::{CallError, read_body_prefix};
use super::lookup::read_lookup;
use crate::domain::ApiFamily;

pub use automation::{Automation, RuleSummary};
pub use dashboards::DASHBOARDS_PER_EDIT;
pub use issues::{BulkTask, ISSUES_PER_EDIT};
pub use projects::Led;

/// What one item's call answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ItemAnswer {
    /// Accepted: the owner is read back afterwards.
    Accepted,
    /// Refused for this item, with why (status and body).
    Refused(String),
}

/// The largest page asked of an offset-paged search. Atlassian documents a default of 50 and
/// pages by what each answer says, so a smaller page than asked for only costs requests.
const PAGE: usize = 100;

/// An offset page: `{startAt, maxResults, total, isLast, values}` [SPEC].
#[derive(Deserialize)]
struct OffsetPage<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    #[serde(rename = "isLast")]
    is_last: Option<bool>,
    total: Option<u64>,
}

impl Client {
    /// A site GET, paced, read as JSON.
    async fn site_read<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        url: Url,
    ) -> Result<T, CallError> {
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        read_lookup(self.send(ApiFamily::Site, endpoint, request).await?).await
    }

    /// Every value of an offset-paged site search, following `startAt` until the page says
    /// it is the last (or is empty, or reaches `total`).
    async fn site_pages<T: DeserializeOwned>(
        &self,
        endpoint: &'static str,
        url: Url,
    ) -> Result<Vec<T>, CallError> {
        let mut values = Vec::new();
        loop {
            let mut page_url = url.clone();
            page_url
                .query_pairs_mut()
                .append_pair("startAt", &values.len().to_string())
                .append_pair("maxResults", &PAGE.to_string());
            let page: OffsetPage<T> = self.site_read(endpoint, page_url).await?;
            let empty = page.values.is_empty();
            values.extend(page.values);
            let reached = page.total.is_some_and(|total| values.len() as u64 >= total);
            if empty || page.is_last == Some(true) || reached {
                return Ok(values);
            }
        }
    }

    /// A site write whose 2xx is the item's acceptance and whose 400, 403 or 404 is the
    /// item's refusal; the 2xx body, if any, is returned for a read of what it shows.
    async fn site_item_write(
        &self,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Result<Option<Value>, String>, CallError> {
        let response = self.send(ApiFamily::Site, endpoint, request).await?;
        item_answer(response).await
    }
}

/// A write's answer for one item: its body on a 2xx, why on a 400, 403 or 404, and an
/// error for anything else.
async fn item_answer(response: Response) -> Result<Result<Option<Value>, String>, CallError> {
    let status = response.status();
    if status.is_success() {
        let body = read_body_prefix(response).await;
        return Ok(Ok(serde_json::from_str(&body).ok()));
    }
    if matches!(status.as_u16(), 400 | 403 | 404) {
        let body = read_body_prefix(response).await;
        return Ok(Err(format!("HTTP {}: {body}", status.as_u16())));
    }
    Err(CallError::rejected(response).await)
}

/// An account id's object in Atlassian's answers: `{"accountId": …}`.
#[derive(Clone, Debug, Default, Deserialize)]
struct User {
    #[serde(rename = "accountId")]
    account_id: Option<String>,
}

/// An id Atlassian writes as a string or a number.
fn id_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}
