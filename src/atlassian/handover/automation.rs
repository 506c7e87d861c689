//! Automation rules, through the Rule Management API on `api.atlassian.com` (the admin URL's
//! host), with the site user's API token [AUTO]. Rules are listed page by page and matched
//! on `authorAccountId`/`actorAccountId` here: no account filter is documented by name. Whether
//! `PUT …/rule/{uuid}` changes a rule's actor or author is UNCONFIRMED [AUTO, 3P-auto], so a
//! hand-over sends the rule back with the successor in the leaver's place and reads it again:
//! only a rule that then no longer names the leaver was handed over.

use reqwest::{Method, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::atlassian::client::Client;
use crate::atlassian::error::CallError;
use crate::atlassian::lookup::read_lookup;
use crate::atlassian::targets::cursor_of;
use crate::domain::ApiFamily;

/// The page asked of the rule summary.
const RULE_PAGE: usize = 100;
/// The fields of a rule that name a person.
const PERSON_FIELDS: [&str; 2] = ["authorAccountId", "actorAccountId"];

/// A rule as the summary lists it.
#[derive(Clone, Debug, Deserialize)]
pub struct RuleSummary {
    pub uuid: String,
    #[serde(default)]
    pub name: String,
    #[serde(rename = "authorAccountId")]
    pub author: Option<String>,
    #[serde(rename = "actorAccountId")]
    pub actor: Option<String>,
}

#[derive(Deserialize)]
struct SummaryPage {
    #[serde(default)]
    data: Vec<RuleSummary>,
    #[serde(default)]
    links: Links,
}

#[derive(Default, Deserialize)]
struct Links {
    next: Option<String>,
}

#[derive(Deserialize)]
struct TenantInfo {
    #[serde(rename = "cloudId")]
    cloud_id: String,
}

/// The site's Rule Management API: its cloud id, read once per hand-over.
pub struct Automation {
    cloud_id: String,
}

impl Automation {
    /// `{admin_url}/automation/public/jira/{cloudId}/rest/v1/{segments…}`.
    fn endpoint(&self, client: &Client, segments: &[&str]) -> Result<Url, CallError> {
        let prefix = ["automation", "public", "jira", &self.cloud_id, "rest", "v1"];
        client.admin_endpoint(&[&prefix[..], segments].concat())
    }
}

impl Client {
    /// The site's Rule Management API, by its cloud id (`/_edge/tenant_info`).
    pub async fn automation(&self) -> Result<Automation, CallError> {
        let url = self.site_endpoint(&["_edge", "tenant_info"])?;
        let tenant: TenantInfo = self.site_read("tenant_info", url).await?;
        Ok(Automation {
            cloud_id: tenant.cloud_id,
        })
    }

    /// The rules whose author or actor is `account_id`.
    pub async fn rules_of(
        &self,
        automation: &Automation,
        account_id: &str,
    ) -> Result<Vec<RuleSummary>, CallError> {
        let base = automation.endpoint(self, &["rule", "summary"])?;
        let mut rules = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut url = base.clone();
            url.query_pairs_mut()
                .append_pair("limit", &RULE_PAGE.to_string());
            if let Some(cursor) = &cursor {
                url.query_pairs_mut().append_pair("cursor", cursor);
            }
            let request = self.request(ApiFamily::Site, Method::GET, url)?;
            let response = self.send(ApiFamily::Site, "rule_summary", request).await?;
            let page: SummaryPage = read_lookup(response).await?;
            let empty = page.data.is_empty();
            rules.extend(page.data.into_iter().filter(|rule| {
                rule.author.as_deref() == Some(account_id)
                    || rule.actor.as_deref() == Some(account_id)
            }));
            match page.links.next.map(|next| cursor_of(&next)) {
                Some(next) if !empty && cursor.as_deref() != Some(next.as_str()) => {
                    cursor = Some(next);
                }
                _ => return Ok(rules),
            }
        }
    }

    /// Reads one rule of the summary (for `offboard doctor`): the cloud id and the Rule
    /// Management API answer the site user's token.
    pub async fn reads_rules(&self) -> Result<(), CallError> {
        let mut url = self
            .automation()
            .await?
            .endpoint(self, &["rule", "summary"])?;
        url.query_pairs_mut().append_pair("limit", "1");
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = self.send(ApiFamily::Site, "rule_summary", request).await?;
        read_lookup::<SummaryPage>(response).await.map(|_| ())
    }

    /// Sends the rule back with `successor` wherever it names `leaver`, and reads it again:
    /// `true` when it then no longer names the leaver.
    pub async fn hand_over_rule(
        &self,
        automation: &Automation,
        uuid: &str,
        leaver: &str,
        successor: &str,
    ) -> Result<bool, CallError> {
        let url = automation.endpoint(self, &["rule", uuid])?;
        let mut rule = self.read_rule(url.clone()).await?;
        for field in PERSON_FIELDS {
            if rule.get(field).and_then(Value::as_str) == Some(leaver) {
                rule[field] = json!(successor);
            }
        }
        let request = self
            .request(ApiFamily::Site, Method::PUT, url.clone())?
            .json(&json!({ "rule": rule }));
        let response = self.send(ApiFamily::Site, "rule_update", request).await?;
        if !response.status().is_success() {
            return Err(CallError::rejected(response).await);
        }
        let after = self.read_rule(url).await?;
        Ok(PERSON_FIELDS
            .iter()
            .all(|field| after.get(*field).and_then(Value::as_str) != Some(leaver)))
    }

    async fn read_rule(&self, url: Url) -> Result<Value, CallError> {
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = self.send(ApiFamily::Site, "rule_read", request).await?;
        let mut wrapped: Value = read_lookup(response).await?;
        match wrapped.get_mut("rule") {
            Some(rule) if rule.is_object() => Ok(rule.take()),
            _ => Err(CallError::Transient {
                detail: "the rule read answered no `rule` object".into(),
            }),
        }
    }
}
