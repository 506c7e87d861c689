//! The site's portal-only customer inventory (README, "Customer inventory"): every service
//! desk of the site, each desk's customer list, merged by account. Read-only, and paced like
//! every other call: each page takes a token from the site family's bucket.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::client::{Client, EXPERIMENTAL_API, is_sendable_id};
use super::error::CallError;
use super::lookup::read_lookup;
use crate::domain::{ApiFamily, Domain};

/// What each page asks for. 50 is the documented default of both listings, so every server
/// takes it; a server that caps lower answers fewer, and the next page starts after what came.
const PAGE_LIMIT: usize = 50;

/// A listing still paging after this many pages (a million entries) is broken; stop asking.
const MAX_PAGES: usize = 20_000;

/// A rate-limited page is asked again this many times, and only when the wait is at most
/// `MAX_RATE_LIMIT_WAIT` (an operator is waiting for the answer); backing off from 1 s when
/// the server names no wait.
const RATE_LIMIT_RETRIES: u32 = 4;
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// One customer, once, with every service desk whose customer list holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortalCustomer {
    pub account_id: String,
    /// `null` where the customer's privacy settings hide it.
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// `false` for a revoked customer, shown "(Deactivated)" in Atlassian.
    pub active: bool,
    /// Service desk ids, in the order the desks were listed.
    pub service_desks: Vec<String>,
}

/// Where a customer sorts: by email (ASCII case-folded), customers without a visible email
/// last, then by account id. Also what the API's cursor remembers, so a page continues after
/// its last customer even when the list was read again in between.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct CustomerKey {
    hidden_email: bool,
    email: String,
    account_id: String,
}

impl PortalCustomer {
    pub fn key(&self) -> CustomerKey {
        CustomerKey {
            hidden_email: self.email.is_none(),
            email: self
                .email
                .as_deref()
                .unwrap_or_default()
                .to_ascii_lowercase(),
            account_id: self.account_id.clone(),
        }
    }
}

/// Which customers to keep.
#[derive(Clone, Debug, Default)]
pub struct CustomerFilter {
    /// Only emails at this domain or its subdomains (customers without a visible email never
    /// match).
    pub domain: Option<Domain>,
    /// Only customers with `active: false`.
    pub inactive_only: bool,
}

impl CustomerFilter {
    pub fn admits(&self, customer: &PortalCustomer) -> bool {
        let in_domain = self.domain.as_ref().is_none_or(|domain| {
            customer
                .email
                .as_deref()
                .is_some_and(|email| domain.holds(email))
        });
        in_domain && !(self.inactive_only && customer.active)
    }
}

/// How far a listing has come, reported after every page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InventoryProgress {
    /// Known once the service desks are listed.
    pub desks: Option<usize>,
    pub desks_done: usize,
    pub pages: usize,
    /// Distinct customers so far.
    pub customers: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    is_last_page: Option<bool>,
}

#[derive(Deserialize)]
pub(super) struct ServiceDesk {
    pub(super) id: String,
}

/// One entry of a desk's customer list: no `accountType` [AE-sd].
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeskCustomer {
    pub(super) account_id: String,
    pub(super) email_address: Option<String>,
    display_name: Option<String>,
    active: Option<bool>,
}

/// One paged listing of the service desk API.
pub(super) struct Listing<'a> {
    pub(super) path: &'a [&'a str],
    pub(super) endpoint: &'static str,
    /// Sends `X-ExperimentalApi: opt-in`.
    pub(super) experimental: bool,
    /// The `query` filter, where the listing takes one.
    pub(super) query: Option<&'a str>,
    /// How often a rate-limited page is waited out and asked again; a job's lookup asks
    /// none, and snoozes instead.
    pub(super) rate_limit_retries: u32,
}

impl Listing<'_> {
    /// A desk's customer list (experimental).
    pub(super) fn desk_customers<'a>(path: &'a [&'a str; 5]) -> Listing<'a> {
        Listing {
            path,
            endpoint: "service_desk_customers",
            experimental: true,
            query: None,
            rate_limit_retries: RATE_LIMIT_RETRIES,
        }
    }
}

impl Client {
    /// Every customer on every service desk the site user can see, merged by account id and
    /// sorted by [`PortalCustomer::key`]. `progress` hears after every page.
    pub async fn portal_customers(
        &self,
        progress: &(dyn Fn(InventoryProgress) + Sync),
    ) -> Result<Vec<PortalCustomer>, CallError> {
        let mut seen = InventoryProgress::default();
        let mut desks = Vec::new();
        self.each_page(&SERVICE_DESKS, |page: Vec<ServiceDesk>| {
            desks.extend(page.into_iter().map(|desk| desk.id));
            seen.pages += 1;
            progress(seen);
        })
        .await?;
        seen.desks = Some(desks.len());
        progress(seen);
        let mut customers = BTreeMap::new();
        for desk in &desks {
            if !is_sendable_id(desk) {
                return Err(CallError::unsendable(desk));
            }
            let path = ["rest", "servicedeskapi", "servicedesk", desk, "customer"];
            let listing = Listing::desk_customers(&path);
            self.each_page(&listing, |page: Vec<DeskCustomer>| {
                for customer in page {
                    merge(&mut customers, customer, desk);
                }
                seen.pages += 1;
                seen.customers = customers.len();
                progress(seen);
            })
            .await?;
            seen.desks_done += 1;
            progress(seen);
        }
        let mut customers: Vec<PortalCustomer> = customers.into_values().collect();
        customers.sort_by_cached_key(PortalCustomer::key);
        Ok(customers)
    }

    /// Follows `isLastPage`, each page starting after the entries that came: a server may
    /// answer fewer than `limit`. A page without entries that is not the last would be asked
    /// for again forever, so it is an error.
    pub(super) async fn each_page<T: DeserializeOwned>(
        &self,
        listing: &Listing<'_>,
        mut take: impl FnMut(Vec<T>),
    ) -> Result<(), CallError> {
        let mut start = 0;
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.page(listing, start).await?;
            let count = page.values.len();
            // Without the flag, only an empty page says the listing is over.
            let last = page.is_last_page.unwrap_or(count == 0);
            take(page.values);
            if last {
                return Ok(());
            }
            if count == 0 {
                return Err(CallError::Transient {
                    detail: format!(
                        "{} answered an empty page at start={start} that is not the last one; stopped instead of asking forever",
                        listing.path.join("/")
                    ),
                });
            }
            start += count;
        }
        Err(CallError::Transient {
            detail: format!(
                "{} was still paging after {MAX_PAGES} pages",
                listing.path.join("/")
            ),
        })
    }

    /// One page. A rate limit is waited out and the page asked again, a few times: one 429
    /// in a listing of hundreds of pages should not cost the pages already read. A wait the
    /// server names has already paused the whole family (`Client::send`).
    async fn page<T: DeserializeOwned>(
        &self,
        listing: &Listing<'_>,
        start: usize,
    ) -> Result<Page<T>, CallError> {
        let mut backoff = Duration::from_secs(1);
        let mut retries = 0;
        loop {
            let mut url = self.site_endpoint(listing.path)?;
            if let Some(query) = listing.query {
                url.query_pairs_mut().append_pair("query", query);
            }
            url.query_pairs_mut()
                .append_pair("start", &start.to_string())
                .append_pair("limit", &PAGE_LIMIT.to_string());
            let mut request = self.request(ApiFamily::Site, Method::GET, url)?;
            if listing.experimental {
                let (name, value) = EXPERIMENTAL_API;
                request = request.header(name, value);
            }
            match self.send(ApiFamily::Site, listing.endpoint, request).await {
                Err(CallError::RateLimited { wait, .. })
                    if retries < listing.rate_limit_retries
                        && wait.is_none_or(|wait| wait <= MAX_RATE_LIMIT_WAIT) =>
                {
                    retries += 1;
                    if wait.is_none() {
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                    }
                }
                sent => return read_lookup(sent?).await,
            }
        }
    }
}

pub(super) const SERVICE_DESKS: Listing<'static> = Listing {
    path: &["rest", "servicedeskapi", "servicedesk"],
    endpoint: "service_desks",
    experimental: false,
    query: None,
    rate_limit_retries: RATE_LIMIT_RETRIES,
};

/// Adds one desk's entry for a customer. A field one desk's list leaves out is taken from
/// another's; `active` is missing only from a server we do not know, and then the customer
/// counts as active, so that `--inactive` never offers someone for removal on a guess.
fn merge(customers: &mut BTreeMap<String, PortalCustomer>, entry: DeskCustomer, desk: &str) {
    match customers.entry(entry.account_id) {
        Entry::Vacant(vacant) => {
            let account_id = vacant.key().clone();
            vacant.insert(PortalCustomer {
                account_id,
                email: entry.email_address,
                display_name: entry.display_name,
                active: entry.active.unwrap_or(true),
                service_desks: vec![desk.to_owned()],
            });
        }
        Entry::Occupied(mut occupied) => {
            let known = occupied.get_mut();
            known.email = known.email.take().or(entry.email_address);
            known.display_name = known.display_name.take().or(entry.display_name);
            if !known.service_desks.iter().any(|d| d == desk) {
                known.service_desks.push(desk.to_owned());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(account_id: &str, email: Option<&str>, active: bool) -> PortalCustomer {
        PortalCustomer {
            account_id: account_id.into(),
            email: email.map(Into::into),
            display_name: None,
            active,
            service_desks: vec!["1".into()],
        }
    }

    #[test]
    fn customers_sort_by_folded_email_then_account_with_hidden_emails_last() {
        let mut list = [
            customer("qm:3", None, true),
            customer("qm:2", Some("b@example.com"), true),
            customer("qm:9", Some("A@example.com"), true),
            customer("qm:1", Some("a@example.com"), true),
            customer("qm:0", None, true),
        ];
        list.sort_by_cached_key(PortalCustomer::key);
        let ids: Vec<&str> = list.iter().map(|c| c.account_id.as_str()).collect();
        assert_eq!(ids, ["qm:1", "qm:9", "qm:2", "qm:0", "qm:3"]);
    }

    #[test]
    fn filters_by_domain_and_by_inactive() {
        let filter = CustomerFilter {
            domain: Some(Domain::parse("example.com").unwrap()),
            inactive_only: true,
        };
        assert!(filter.admits(&customer("a", Some("x@EU.Example.com"), false)));
        assert!(!filter.admits(&customer("b", Some("x@example.com"), true)));
        assert!(!filter.admits(&customer("c", Some("x@notexample.com"), false)));
        assert!(!filter.admits(&customer("d", None, false)));
        assert!(CustomerFilter::default().admits(&customer("e", None, true)));
    }

    #[test]
    fn a_customer_on_two_desks_is_merged_once() {
        let mut customers = BTreeMap::new();
        let entry = |email: Option<&str>| DeskCustomer {
            account_id: "qm:1".into(),
            email_address: email.map(Into::into),
            display_name: Some("One".into()),
            active: Some(false),
        };
        merge(&mut customers, entry(None), "10");
        merge(&mut customers, entry(Some("one@example.com")), "20");
        merge(&mut customers, entry(None), "20");
        let merged = &customers["qm:1"];
        assert_eq!(merged.service_desks, ["10", "20"]);
        assert_eq!(merged.email.as_deref(), Some("one@example.com"));
        assert!(!merged.active);
    }
}
