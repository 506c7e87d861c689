//! Read-only calls that check what the configuration names: the credentials, the org and its
//! directory, and the groups, service desks and customer organizations of the rules. Used by
//! `offboard doctor`, and by the worker to tell "not a member" from "no such group".

use reqwest::{Method, StatusCode};
use serde::Deserialize;

use super::client::{Client, is_sendable_id};
use super::error::CallError;
use super::lookup::read_lookup;
use crate::domain::ApiFamily;

/// A directory listing longer than this is not an org anyone runs; stop asking.
const MAX_DIRECTORY_PAGES: usize = 50;

/// `directoryId` `-` addresses every directory of the org (reads only).
pub use crate::config::ALL_DIRECTORIES;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Myself {
    account_id: Option<String>,
    display_name: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryPage {
    #[serde(default)]
    data: Vec<Directory>,
    #[serde(default)]
    links: Option<Links>,
}

/// One directory of the org, as `GET /admin/v2/orgs/{orgId}/directories` lists it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Directory {
    #[serde(rename = "directoryId")]
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
}

impl std::fmt::Display for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(name) => write!(f, "{} ({name})", self.id),
            None => f.write_str(&self.id),
        }
    }
}

#[derive(Deserialize)]
struct Links {
    next: Option<String>,
}

impl Client {
    /// `GET /rest/api/3/myself`: who the site credentials are (a name to show, and the
    /// account id). 401 means they are wrong.
    pub async fn site_myself(&self) -> Result<(String, Option<String>), CallError> {
        let url = self.site_endpoint(&["rest", "api", "3", "myself"])?;
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = self.send(ApiFamily::Site, "site_myself", request).await?;
        let me: Myself = read_lookup(response).await?;
        let name = me
            .display_name
            .or_else(|| me.account_id.clone())
            .unwrap_or_else(|| "an unnamed account".into());
        Ok((name, me.account_id))
    }

    /// `GET /admin/v1/orgs/{orgId}`: whether the admin key reaches the configured org.
    pub async fn org_exists(&self) -> Result<bool, CallError> {
        let org = self.org_id()?.to_owned();
        let url = self.admin_endpoint(&["admin", "v1", "orgs", &org])?;
        exists(self, ApiFamily::Admin, "org", url).await
    }

    /// The org's directories (`GET /admin/v2/orgs/{orgId}/directories`, all pages).
    pub async fn directories(&self) -> Result<Vec<Directory>, CallError> {
        let org = self.org_id()?.to_owned();
        let mut directories = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..MAX_DIRECTORY_PAGES {
            let mut url = self.admin_endpoint(&["admin", "v2", "orgs", &org, "directories"])?;
            if let Some(cursor) = &cursor {
                url.query_pairs_mut().append_pair("cursor", cursor);
            }
            let request = self.request(ApiFamily::Admin, Method::GET, url)?;
            let response = self
                .send(ApiFamily::Admin, "org_directories", request)
                .await?;
            let page: DirectoryPage = read_lookup(response).await?;
            directories.extend(page.data);
            cursor = page.links.and_then(|l| l.next).map(|next| cursor_of(&next));
            if cursor.is_none() {
                return Ok(directories);
            }
        }
        Err(CallError::Transient {
            detail: format!(
                "the directory list was still paginating after {MAX_DIRECTORY_PAGES} pages"
            ),
        })
    }

    /// The org's directory ids (`GET /admin/v2/orgs/{orgId}/directories`, all pages).
    pub async fn directory_ids(&self) -> Result<Vec<String>, CallError> {
        let directories = self.directories().await?;
        Ok(directories
            .into_iter()
            .map(|directory| directory.id)
            .collect())
    }

    /// `GET …/directories/{directoryId}/groups/{groupId}`.
    pub async fn group_exists(&self, group_id: &str) -> Result<bool, CallError> {
        checked(group_id)?;
        let url = self.directory_endpoint(&["groups", group_id])?;
        exists(self, ApiFamily::Admin, "group", url).await
    }

    /// `GET /rest/servicedeskapi/servicedesk/{serviceDeskId}`.
    pub async fn service_desk_exists(&self, service_desk_id: &str) -> Result<bool, CallError> {
        checked(service_desk_id)?;
        let path = ["rest", "servicedeskapi", "servicedesk", service_desk_id];
        let url = self.site_endpoint(&path)?;
        exists(self, ApiFamily::Site, "service_desk", url).await
    }

    /// `GET /rest/servicedeskapi/organization/{organizationId}`.
    pub async fn organization_exists(&self, organization_id: &str) -> Result<bool, CallError> {
        checked(organization_id)?;
        let path = ["rest", "servicedeskapi", "organization", organization_id];
        let url = self.site_endpoint(&path)?;
        exists(self, ApiFamily::Site, "customer_organization", url).await
    }
}

/// 2xx: it exists; 404: it does not; anything else is an error to report.
async fn exists(
    client: &Client,
    family: ApiFamily,
    endpoint: &'static str,
    url: reqwest::Url,
) -> Result<bool, CallError> {
    let request = client.request(family, Method::GET, url)?;
    let response = client.send(family, endpoint, request).await?;
    match response.status() {
        status if status.is_success() => Ok(true),
        StatusCode::NOT_FOUND => Ok(false),
        _ => Err(CallError::rejected(response).await),
    }
}

fn checked(id: &str) -> Result<(), CallError> {
    if is_sendable_id(id) {
        Ok(())
    } else {
        Err(CallError::unsendable(id))
    }
}

/// `links.next` is an opaque cursor, or a link (absolute, or relative to the API) carrying
/// one as `cursor`.
pub(super) fn cursor_of(next: &str) -> String {
    reqwest::Url::parse(next)
        .or_else(|_| reqwest::Url::parse("https://next.invalid/").and_then(|base| base.join(next)))
        .ok()
        .and_then(|url| {
            url.query_pairs()
                .find(|(key, _)| key == "cursor")
                .map(|(_, value)| value.into_owned())
        })
        .unwrap_or_else(|| next.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_come_bare_or_inside_a_url() {
        assert_eq!(cursor_of("abc"), "abc");
        assert_eq!(
            cursor_of("https://api.atlassian.com/admin/v2/orgs/o/directories?cursor=x%2By&limit=2"),
            "x+y"
        );
        assert_eq!(cursor_of("/rule/summary?limit=5&cursor=c3"), "c3");
    }
}
