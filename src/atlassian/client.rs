//! The shared HTTP plumbing: settings, authentication, URLs and the paced send.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use reqwest::header::{ACCEPT, HeaderMap, HeaderValue};
use reqwest::{Method, RequestBuilder, Response, Url, redirect};
use secrecy::{ExposeSecret, SecretString};

use super::error::CallError;
use super::pacing::Pacer;
use crate::config::AtlassianConfig;
use crate::domain::ApiFamily;

/// Everything the client needs, already resolved from the config. A family without
/// credentials is `None`: its calls fail `NotConfigured` before any request.
#[derive(Clone, Debug)]
pub struct AtlassianSettings {
    pub site: Option<SiteSettings>,
    pub admin: Option<AdminSettings>,
    pub request_timeout: Duration,
    pub requests_per_second: f64,
}

/// The site (`{site_url}/rest/…`), HTTP Basic.
#[derive(Clone, Debug)]
pub struct SiteSettings {
    pub url: String,
    pub email: String,
    pub api_token: SecretString,
}

/// The organization and user-management APIs, Bearer org API key.
#[derive(Clone, Debug)]
pub struct AdminSettings {
    pub url: String,
    pub api_key: SecretString,
    pub org_id: String,
    pub directory_id: String,
}

/// A handle on Atlassian Cloud. Clones share the connection pool and the pacing buckets.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    site: Option<Site>,
    admin: Option<Admin>,
    pacer: Pacer,
}

struct Site {
    url: Url,
    email: String,
    api_token: SecretString,
}

struct Admin {
    url: Url,
    api_key: SecretString,
    org_id: String,
    directory_id: String,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        let site = inner.site.as_ref();
        let admin = inner.admin.as_ref();
        f.debug_struct("Client")
            .field("site_url", &site.map(|s| s.url.as_str()))
            .field("site_email", &site.map(|s| &s.email))
            .field("admin_url", &admin.map(|a| a.url.as_str()))
            .field("org_id", &admin.map(|a| &a.org_id))
            .field("directory_id", &admin.map(|a| &a.directory_id))
            .finish_non_exhaustive()
    }
}

/// The header JSM's experimental endpoints (the desk customer endpoints among them) want
/// before they answer: `X-ExperimentalApi: opt-in`.
pub(super) const EXPERIMENTAL_API: (&str, &str) = ("X-ExperimentalApi", "opt-in");

/// Timeout of every Atlassian request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl AtlassianSettings {
    /// The settings of a configured `[atlassian]` section.
    pub fn from_config(atlassian: &AtlassianConfig, requests_per_second: f64) -> Self {
        AtlassianSettings {
            site: atlassian.site.as_ref().map(|s| SiteSettings {
                url: s.url.to_string(),
                email: s.email.clone(),
                api_token: s.api_token.clone(),
            }),
            admin: atlassian.admin.as_ref().map(|a| AdminSettings {
                url: a.url.to_string(),
                api_key: a.api_key.clone(),
                org_id: a.org_id.clone(),
                directory_id: a.directory_id.clone(),
            }),
            request_timeout: REQUEST_TIMEOUT,
            requests_per_second,
        }
    }
}

impl Client {
    /// The client of a configured `[atlassian]` section.
    pub fn from_config(
        atlassian: &AtlassianConfig,
        requests_per_second: f64,
    ) -> anyhow::Result<Client> {
        Client::new(AtlassianSettings::from_config(
            atlassian,
            requests_per_second,
        ))
    }

    /// The client of the worker's process: its pace is `[worker]`'s, and where `fleet` is
    /// given (replicas on one Postgres) its tokens also come from the fleet's budget.
    pub fn for_worker(
        atlassian: &AtlassianConfig,
        worker: &crate::config::WorkerConfig,
        fleet: Option<std::sync::Arc<dyn super::FleetBudget>>,
    ) -> anyhow::Result<Client> {
        let client = Client::from_config(atlassian, worker.requests_per_second)?;
        client.inner.pacer.set_bulk_share(worker.bulk_share);
        if let Some(fleet) = fleet {
            client.inner.pacer.share(fleet);
        }
        Ok(client)
    }

    /// What the pacing buckets show now, for the console's header.
    pub fn budget_use(&self) -> [super::FamilyUse; 2] {
        self.inner.pacer.usage()
    }

    pub fn new(settings: AtlassianSettings) -> anyhow::Result<Client> {
        let rate = settings.requests_per_second;
        ensure!(
            rate.is_finite() && rate > 0.0,
            "requests_per_second must be a positive number, got {rate}"
        );
        ensure!(
            !settings.request_timeout.is_zero(),
            "the Atlassian request timeout must be positive"
        );
        let site = settings
            .site
            .map(|s| {
                Ok::<_, anyhow::Error>(Site {
                    url: base_url("site_url", &s.url)?,
                    email: s.email,
                    api_token: s.api_token,
                })
            })
            .transpose()?;
        let admin = settings
            .admin
            .map(|a| {
                for (name, id) in [("org_id", &a.org_id), ("directory_id", &a.directory_id)] {
                    ensure!(
                        is_sendable_id(id),
                        "{name} `{id}` cannot be used in a URL path"
                    );
                }
                Ok(Admin {
                    url: base_url("admin_url", &a.url)?,
                    api_key: a.api_key,
                    org_id: a.org_id,
                    directory_id: a.directory_id,
                })
            })
            .transpose()?;
        let inner = Inner {
            http: http_client(settings.request_timeout)?,
            site,
            admin,
            pacer: Pacer::new(rate, crate::config::WorkerConfig::default().bulk_share),
        };
        Ok(Client {
            inner: Arc::new(inner),
        })
    }

    /// Whether the family has credentials.
    pub fn is_configured(&self, family: ApiFamily) -> bool {
        match family {
            ApiFamily::Site => self.inner.site.is_some(),
            ApiFamily::Admin => self.inner.admin.is_some(),
        }
    }

    fn site(&self) -> Result<&Site, CallError> {
        self.inner.site.as_ref().ok_or(CallError::NotConfigured {
            family: ApiFamily::Site,
        })
    }

    fn admin(&self) -> Result<&Admin, CallError> {
        self.inner.admin.as_ref().ok_or(CallError::NotConfigured {
            family: ApiFamily::Admin,
        })
    }

    pub(super) fn org_id(&self) -> Result<&str, CallError> {
        Ok(&self.admin()?.org_id)
    }

    /// The configured `directory_id`, when the admin API is configured.
    pub fn directory_id(&self) -> Option<&str> {
        self.inner.admin.as_ref().map(|a| a.directory_id.as_str())
    }

    /// `{site_url}/{segments…}`, each segment percent-encoded on its own.
    pub(super) fn site_endpoint(&self, segments: &[&str]) -> Result<Url, CallError> {
        Ok(endpoint(&self.site()?.url, segments))
    }

    /// `{admin_url}/{segments…}`.
    pub(super) fn admin_endpoint(&self, segments: &[&str]) -> Result<Url, CallError> {
        Ok(endpoint(&self.admin()?.url, segments))
    }

    /// `{admin_url}/admin/v2/orgs/{org}/directories/{directory}/{segments…}`.
    pub(super) fn directory_endpoint(&self, segments: &[&str]) -> Result<Url, CallError> {
        let admin = self.admin()?;
        let prefix = [
            "admin",
            "v2",
            "orgs",
            &admin.org_id,
            "directories",
            &admin.directory_id,
        ];
        Ok(endpoint(&admin.url, &[&prefix[..], segments].concat()))
    }

    /// A request carrying the family's credentials.
    pub(super) fn request(
        &self,
        family: ApiFamily,
        method: Method,
        url: Url,
    ) -> Result<RequestBuilder, CallError> {
        let builder = self.inner.http.request(method, url);
        Ok(match family {
            ApiFamily::Site => {
                let site = self.site()?;
                builder.basic_auth(&site.email, Some(site.api_token.expose_secret()))
            }
            ApiFamily::Admin => builder.bearer_auth(self.admin()?.api_key.expose_secret()),
        })
    }

    /// Sends once the family's bucket allows it. Rate limits, bad credentials and server
    /// errors mean the same on every endpoint and come back as errors; any other response is
    /// for the caller to classify. A rate limit with a known wait pauses the whole family.
    pub(super) async fn send(
        &self,
        family: ApiFamily,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, CallError> {
        let paid = self.pay(family).await;
        self.send_paid(paid, endpoint, request).await
    }

    /// Waits for the family's bucket and takes a token, for one request put together after
    /// the wait ([`Client::send_paid`]): a bulk read then names whoever asked meanwhile.
    pub(super) async fn pay(&self, family: ApiFamily) -> Paid {
        self.inner.pacer.acquire(family).await;
        Paid { family }
    }

    /// [`Client::send`] with a token already taken.
    pub(super) async fn send_paid(
        &self,
        paid: Paid,
        endpoint: &'static str,
        request: RequestBuilder,
    ) -> Result<Response, CallError> {
        let family = paid.family;
        let started = std::time::Instant::now();
        let sent = request.send().await;
        crate::metrics::atlassian_request(
            endpoint,
            family,
            super::pacing::current_lane(),
            sent.as_ref().ok().map(|r| r.status().as_u16()),
            started.elapsed(),
        );
        let response = sent.map_err(|err| CallError::transport(&err))?;
        let checked = CallError::check_shared_rules(family, response).await;
        if let Err(CallError::RateLimited { status, wait }) = &checked {
            crate::metrics::rate_limit_wait(family);
            if let Some(wait) = wait {
                tracing::warn!(
                    ?family,
                    status,
                    ?wait,
                    "Atlassian rate limit: pausing the family"
                );
                let until = tokio::time::Instant::now() + *wait;
                self.inner.pacer.pause_until(family, until);
            }
        }
        checked
    }
}

/// A token taken from a family's bucket: pays for exactly one request, and only
/// [`Client::pay`] makes one.
#[must_use = "a token taken and not spent slows the family for nothing"]
pub(super) struct Paid {
    family: ApiFamily,
}

/// Ids that come from outside (webhooks, lookups) become URL path segments. The URL parser
/// drops `.`/`..` segments and strips tabs and newlines, which would silently address a
/// different resource, so such ids are never sent.
pub(super) fn is_sendable_id(id: &str) -> bool {
    !matches!(id, "" | "." | "..") && !id.chars().any(char::is_control)
}

fn http_client(timeout: Duration) -> anyhow::Result<reqwest::Client> {
    crate::install_tls_provider();
    let mut headers = HeaderMap::new();
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    reqwest::Client::builder()
        .user_agent(concat!("offboard/", env!("CARGO_PKG_VERSION")))
        .default_headers(headers)
        .timeout(timeout)
        // A mutation must reach the endpoint we named or fail visibly, never be replayed
        // elsewhere with or without its credentials.
        .redirect(redirect::Policy::none())
        .build()
        .context("failed to build the Atlassian HTTP client")
}

fn base_url(name: &str, value: &str) -> anyhow::Result<Url> {
    let url = Url::parse(value).with_context(|| format!("{name} `{value}` is not a URL"))?;
    if !matches!(url.scheme(), "https" | "http") || url.cannot_be_a_base() {
        bail!("{name} `{value}` must be an http(s) URL");
    }
    // Credentials belong in their own settings; in a URL they would end up in error messages.
    ensure!(
        url.username().is_empty() && url.password().is_none(),
        "{name} must not contain credentials"
    );
    ensure!(
        url.query().is_none() && url.fragment().is_none(),
        "{name} `{value}` must not have a query or fragment"
    );
    Ok(url)
}

/// Appends segments to a base URL with or without a trailing slash. Each segment is
/// percent-encoded as a whole, so `/`, `?` or `#` inside an id cannot change the path.
fn endpoint(base: &Url, segments: &[&str]) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are checked to be hierarchical in Client::new")
        .pop_if_empty()
        .extend(segments);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> AtlassianSettings {
        AtlassianSettings {
            site: Some(SiteSettings {
                url: "https://acme.atlassian.net/".into(),
                email: "bot@acme.com".into(),
                api_token: SecretString::from("site-secret-token"),
            }),
            admin: Some(AdminSettings {
                url: "https://api.atlassian.com".into(),
                api_key: SecretString::from("admin-secret-key"),
                org_id: "org 1".into(),
                directory_id: "dir-1".into(),
            }),
            request_timeout: Duration::from_secs(10),
            requests_per_second: 5.0,
        }
    }

    #[test]
    fn base_urls_with_and_without_trailing_slash_give_the_same_endpoints() {
        for base in ["https://x.test/jira", "https://x.test/jira/"] {
            let url = endpoint(&Url::parse(base).unwrap(), &["rest", "qm:a/b?c#d"]);
            assert_eq!(url.as_str(), "https://x.test/jira/rest/qm:a%2Fb%3Fc%23d");
        }
        let root = endpoint(&Url::parse("https://x.test").unwrap(), &["users"]);
        assert_eq!(root.as_str(), "https://x.test/users");
    }

    #[test]
    fn directory_endpoints_encode_the_configured_ids() {
        let client = Client::new(settings()).unwrap();
        let url = client
            .directory_endpoint(&["users", "a%2F..", "suspend"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.atlassian.com/admin/v2/orgs/org%201/directories/dir-1/users/a%252F../suspend"
        );
    }

    #[test]
    fn ids_that_the_url_parser_would_rewrite_are_not_sendable() {
        for id in ["", ".", "..", "a\tb", "a\nb"] {
            assert!(!is_sendable_id(id), "{id:?}");
        }
        for id in ["qm:1234-abcd", "5b10ac8d82e05b22cc7d4ef5", "...", "a..b"] {
            assert!(is_sendable_id(id), "{id:?}");
        }
    }

    #[test]
    fn bad_settings_are_refused() {
        let cases: [fn(&mut AtlassianSettings); 6] = [
            |s| s.requests_per_second = 0.0,
            |s| s.requests_per_second = f64::NAN,
            |s| s.site.as_mut().unwrap().url = "acme.atlassian.net".into(),
            |s| s.admin.as_mut().unwrap().url = "https://user:pw@api.atlassian.com".into(),
            |s| s.admin.as_mut().unwrap().directory_id = "..".into(),
            |s| s.request_timeout = Duration::ZERO,
        ];
        for break_it in cases {
            let mut broken = settings();
            break_it(&mut broken);
            assert!(Client::new(broken).is_err());
        }
    }

    #[test]
    fn a_family_without_credentials_is_not_configured() {
        let client = Client::new(AtlassianSettings {
            site: None,
            ..settings()
        })
        .unwrap();
        assert!(!client.is_configured(ApiFamily::Site));
        assert!(client.is_configured(ApiFamily::Admin));
        let missing = client.site_endpoint(&["rest"]).unwrap_err();
        assert!(
            matches!(
                missing,
                CallError::NotConfigured {
                    family: ApiFamily::Site
                }
            ),
            "{missing:?}"
        );
        assert_eq!(client.directory_id(), Some("dir-1"));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let client = Client::new(settings()).unwrap();
        let shown = format!("{client:?} {:?}", settings());
        assert!(shown.contains("acme.atlassian.net"));
        assert!(!shown.contains("site-secret-token"));
        assert!(!shown.contains("admin-secret-key"));
    }
}
