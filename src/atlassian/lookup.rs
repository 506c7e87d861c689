//! Finding the accounts behind an email: the site user search for customers and site users,
//! the org directory search for managed accounts.

use reqwest::{Method, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::Client;
use super::error::ApiError;
use crate::jobs::ApiFamily;

/// The site search asks for this many candidates; an exact email is among the first few.
const SITE_SEARCH_MAX_RESULTS: &str = "50";

/// An exact-email directory search fits on one page; a server that keeps handing out
/// cursors is broken, and a partial answer could hide a second account.
const MAX_DIRECTORY_PAGES: usize = 10;

/// An account a lookup found for an email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub account_id: String,
    /// `atlassian`, `customer`, `app`, or whatever else Atlassian reports.
    pub account_type: String,
    pub email: Option<String>,
    /// Site search: `active`/`inactive`; directory search: its `accountStatus`.
    pub status: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SiteUser {
    account_id: String,
    account_type: Option<String>,
    email_address: Option<String>,
    active: Option<bool>,
}

#[derive(Deserialize)]
struct DirectoryPage {
    #[serde(default)]
    data: Vec<DirectoryUser>,
    #[serde(default)]
    links: Option<Links>,
}

#[derive(Deserialize)]
struct Links {
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DirectoryUser {
    account_id: String,
    account_type: Option<String>,
    email: Option<String>,
    account_status: Option<String>,
}

impl Client {
    /// Site user search. The search is fuzzy (names, partial emails), so only entries whose
    /// `emailAddress` equals `email` case-insensitively are kept; users who hide their email
    /// cannot be matched and are dropped.
    pub async fn find_site_accounts(&self, email: &str) -> Result<Vec<Account>, ApiError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "user", "search"]);
        url.query_pairs_mut()
            .append_pair("query", email)
            .append_pair("maxResults", SITE_SEARCH_MAX_RESULTS);
        let request = self.request(ApiFamily::Site, Method::GET, url);
        let response = self
            .send(ApiFamily::Site, "site_user_search", request)
            .await?;
        let users: Vec<SiteUser> = read_lookup(response).await?;
        Ok(users
            .into_iter()
            .map(Account::from)
            .filter(|account| has_email(account, email))
            .collect())
    }

    /// Org directory search by exact email, following `links.next` cursors. The filter is
    /// repeated here so a lenient server cannot widen the match.
    pub async fn find_directory_accounts(&self, email: &str) -> Result<Vec<Account>, ApiError> {
        let mut accounts = Vec::new();
        let mut cursor = None;
        for _ in 0..MAX_DIRECTORY_PAGES {
            let page = self.directory_search_page(email, cursor.as_deref()).await?;
            accounts.extend(
                page.data
                    .into_iter()
                    .map(Account::from)
                    .filter(|account| has_email(account, email)),
            );
            cursor = page.links.and_then(|links| links.next);
            if cursor.is_none() {
                return Ok(accounts);
            }
        }
        Err(ApiError::Transient {
            detail: format!(
                "the directory search for one email was still paginating after {MAX_DIRECTORY_PAGES} pages"
            ),
        })
    }

    async fn directory_search_page(
        &self,
        email: &str,
        cursor: Option<&str>,
    ) -> Result<DirectoryPage, ApiError> {
        let url = self.directory_endpoint(&["users", "search"]);
        let mut body = json!({ "emails": [email] });
        if let Some(cursor) = cursor {
            body["cursor"] = json!(cursor);
        }
        let request = self
            .request(ApiFamily::Admin, Method::POST, url)
            .json(&body);
        let response = self
            .send(ApiFamily::Admin, "directory_user_search", request)
            .await?;
        read_lookup(response).await
    }
}

/// A lookup succeeds only with a 2xx whose body parses; a 2xx that does not parse is most
/// likely a proxy or maintenance page, so it is worth another try.
async fn read_lookup<T: DeserializeOwned>(response: Response) -> Result<T, ApiError> {
    if !response.status().is_success() {
        return Err(ApiError::rejected(response).await);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|err| ApiError::transport(&err))?;
    serde_json::from_slice(&bytes).map_err(|err| ApiError::Transient {
        detail: format!("unexpected lookup response: {err}"),
    })
}

fn has_email(account: &Account, email: &str) -> bool {
    account
        .email
        .as_deref()
        .is_some_and(|found| found.to_lowercase() == email.to_lowercase())
}

impl From<SiteUser> for Account {
    fn from(user: SiteUser) -> Account {
        let status = user
            .active
            .map(|active| if active { "active" } else { "inactive" }.to_owned());
        Account {
            account_id: user.account_id,
            account_type: user.account_type.unwrap_or_default(),
            email: user.email_address,
            status,
        }
    }
}

impl From<DirectoryUser> for Account {
    fn from(user: DirectoryUser) -> Account {
        Account {
            account_id: user.account_id,
            account_type: user.account_type.unwrap_or_default(),
            email: user.email,
            status: user.account_status,
        }
    }
}
