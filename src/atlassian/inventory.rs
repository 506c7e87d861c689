//! The site's portal-only customer inventory (README, "Customer inventory"): every service
//! desk of the site, each desk's customer list, merged by account; then every account on
//! those lists classified by its own record, read in bulk, because a desk's list does not
//! say which of its accounts are portal-only customers. Read-only, and paced like every
//! other call: each request takes a token from the site family's bucket.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::client::{Client, EXPERIMENTAL_API, is_sendable_id};
use super::error::CallError;
use super::lookup::{Account, bulk_chunks, read_lookup};
use crate::domain::{ApiFamily, Domain};

/// What each page asks for. 50 is the documented default of both listings, so every server
/// takes it; a server that caps lower answers fewer, and the next page starts after what came.
const PAGE_LIMIT: usize = 50;

/// Each page after the first starts this many entries before the previous one ended (at
/// most half a page), and must hold an entry already read. The listings page by offset: an
/// entry taken off the list before the offset between two pages moves every later entry one
/// place up, and a page starting right after the previous one would skip the entry that
/// moved into the gap. With the overlap, up to this many removals between two pages cost
/// nothing; more, and the page holds nothing already read, so the reading steps back.
const PAGE_OVERLAP: usize = 5;

/// A listing still paging after this many pages (a million entries) is broken; stop asking.
const MAX_PAGES: usize = 20_000;

/// A listing that had to step back this many times changed faster than it could be read.
const MAX_STEP_BACKS: usize = 100;

/// A rate-limited request is made again this many times, and only when the wait is at most
/// `MAX_RATE_LIMIT_WAIT` (an operator is waiting for the answer); backing off from 1 s when
/// the server names no wait.
const RATE_LIMIT_RETRIES: u32 = 4;
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// The `accountType` of a portal-only customer; everything else on a desk is left out.
const CUSTOMER: &str = "customer";

/// One customer, once, with every service desk whose customer list holds them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct PortalCustomer {
    pub account_id: String,
    /// `null` where the customer's privacy settings hide it.
    pub email: Option<String>,
    pub display_name: Option<String>,
    /// `false` when the account itself is inactive (a revoked customer, shown
    /// "(Deactivated)" in Atlassian), as its own record says.
    pub active: bool,
    /// Service desk ids, in the order the desks were listed.
    pub service_desks: Vec<String>,
}

/// A reading of the inventory: the customers, and what the desk lists held besides.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inventory {
    /// Sorted by [`PortalCustomer::key`].
    pub customers: Vec<PortalCustomer>,
    /// Accounts on a desk's list that are not portal-only customers (licensed `atlassian`
    /// accounts, apps): left out.
    pub not_customers: usize,
    /// Accounts on a desk's list whose own record could not be read, neither in bulk nor
    /// singly (deleted since the list was read, most likely): left out, not guessed at.
    pub unknown: Vec<String>,
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

/// How far a reading has come, reported after every request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct InventoryProgress {
    /// Known once the service desks are listed.
    pub desks: Option<usize>,
    pub desks_done: usize,
    /// Pages of the desk listings.
    pub pages: usize,
    /// Distinct accounts on the desks' lists so far.
    pub accounts: usize,
    /// Accounts whose own record was read so far.
    pub classified: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    values: Vec<T>,
    is_last_page: Option<bool>,
}

/// An entry of a listing, known by its id.
pub(super) trait Listed: DeserializeOwned {
    fn id(&self) -> &str;
}

#[derive(Deserialize)]
pub(super) struct ServiceDesk {
    pub(super) id: String,
}

impl Listed for ServiceDesk {
    fn id(&self) -> &str {
        &self.id
    }
}

/// A desk's entry for an account. Its `active` is not read: the account's own record says
/// whether the account is active, a desk's entry only what that desk showed at the time.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DeskCustomer {
    pub(super) account_id: String,
    pub(super) email_address: Option<String>,
    display_name: Option<String>,
}

impl Listed for DeskCustomer {
    fn id(&self) -> &str {
        &self.account_id
    }
}

/// An account as the desks' lists show it, merged over the desks.
struct OnDesks {
    email: Option<String>,
    display_name: Option<String>,
    service_desks: Vec<String>,
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
    /// Every portal-only customer on every service desk the site user can see, merged by
    /// account id and sorted by [`PortalCustomer::key`], with what was left out. `progress`
    /// hears after every request.
    pub async fn portal_customers(
        &self,
        progress: &(dyn Fn(InventoryProgress) + Sync),
    ) -> Result<Inventory, CallError> {
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
        let mut listed = BTreeMap::new();
        for desk in &desks {
            if !is_sendable_id(desk) {
                return Err(CallError::unsendable(desk));
            }
            let path = ["rest", "servicedeskapi", "servicedesk", desk, "customer"];
            let listing = Listing::desk_customers(&path);
            self.each_page(&listing, |page: Vec<DeskCustomer>| {
                for entry in page {
                    merge(&mut listed, entry, desk);
                }
                seen.pages += 1;
                seen.accounts = listed.len();
                progress(seen);
            })
            .await?;
            seen.desks_done += 1;
            progress(seen);
        }
        let inventory = self.classify(listed, &mut seen, progress).await?;
        if !inventory.unknown.is_empty() {
            tracing::warn!(
                left_out = inventory.unknown.len(),
                account_ids = ?inventory.unknown,
                "customer inventory: accounts on a desk's list whose own record cannot be read (deleted since?) are left out"
            );
        }
        if inventory.not_customers > 0 {
            tracing::info!(
                left_out = inventory.not_customers,
                "customer inventory: accounts on a desk's list that are not portal-only customers are left out"
            );
        }
        Ok(inventory)
    }

    /// Reads the own record of every listed account, in bulk; an account the bulk read does
    /// not return is read by itself before it counts as unknown. Keeps the `customer`
    /// accounts, with `active` from their record.
    async fn classify(
        &self,
        listed: BTreeMap<String, OnDesks>,
        seen: &mut InventoryProgress,
        progress: &(dyn Fn(InventoryProgress) + Sync),
    ) -> Result<Inventory, CallError> {
        let ids: Vec<String> = listed.keys().cloned().collect();
        let mut records: HashMap<String, Account> = HashMap::new();
        for chunk in bulk_chunks(&ids) {
            let read = retrying(RATE_LIMIT_RETRIES, || self.site_users_chunk(&chunk, None)).await?;
            records.extend(read.into_iter().map(|a| (a.account_id.clone(), a)));
            seen.classified += chunk.len();
            progress(*seen);
        }
        let mut inventory = Inventory::default();
        for (account_id, on_desks) in listed {
            let record = match records.remove(&account_id) {
                Some(record) => record,
                None => match retrying(RATE_LIMIT_RETRIES, || self.site_user(&account_id)).await? {
                    Some(record) => record,
                    None => {
                        inventory.unknown.push(account_id);
                        continue;
                    }
                },
            };
            if record.account_type != CUSTOMER {
                inventory.not_customers += 1;
                continue;
            }
            inventory.customers.push(PortalCustomer {
                account_id,
                email: record.email.or(on_desks.email),
                display_name: on_desks.display_name,
                // A record without `active` comes from a server we do not know: the customer
                // counts as active, so that `--inactive` never offers someone on a guess.
                active: record.status.as_deref() != Some("inactive"),
                service_desks: on_desks.service_desks,
            });
        }
        inventory.customers.sort_by_cached_key(PortalCustomer::key);
        Ok(inventory)
    }

    /// Follows `isLastPage`, each page starting `PAGE_OVERLAP` entries before the previous
    /// one ended (a server may answer fewer than `limit`). `take` gets the entries not read
    /// before. A page that holds no entry already read means the list lost more entries
    /// before the offset than the overlap covers: the reading steps back (a page, then
    /// twice as far, down to the start) until a page does. Whatever stayed on the list for
    /// the whole reading is then read, provided the server keeps its order. A page without
    /// entries that is not the last would be asked for again forever, so it is an error.
    pub(super) async fn each_page<T: Listed>(
        &self,
        listing: &Listing<'_>,
        mut take: impl FnMut(Vec<T>),
    ) -> Result<(), CallError> {
        let mut read: HashSet<String> = HashSet::new();
        let mut start = 0;
        let mut anchored = false;
        let mut step_back = PAGE_LIMIT;
        let mut step_backs = 0;
        for _ in 0..MAX_PAGES {
            let page: Page<T> = self.page(listing, start).await?;
            let count = page.values.len();
            if anchored && !page.values.iter().any(|entry| read.contains(entry.id())) {
                step_backs += 1;
                if step_backs > MAX_STEP_BACKS {
                    return Err(CallError::Transient {
                        detail: format!(
                            "{} kept changing while it was read ({MAX_STEP_BACKS} steps back); read it again later",
                            listing.path.join("/")
                        ),
                    });
                }
                start = start.saturating_sub(step_back);
                step_back *= 2;
                anchored = start > 0;
                continue;
            }
            // Without the flag, only an empty page says the listing is over.
            let last = page.is_last_page.unwrap_or(count == 0);
            let fresh: Vec<T> = page
                .values
                .into_iter()
                .filter(|entry| read.insert(entry.id().to_owned()))
                .collect();
            take(fresh);
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
            // A page of one entry cannot overlap and still move on: that step is unchecked.
            let overlap = PAGE_OVERLAP.min(count / 2);
            start += count - overlap;
            anchored = overlap > 0;
            step_back = count;
        }
        Err(CallError::Transient {
            detail: format!(
                "{} was still paging after {MAX_PAGES} pages",
                listing.path.join("/")
            ),
        })
    }

    /// One page, rate limits waited out (`retrying`).
    async fn page<T: DeserializeOwned>(
        &self,
        listing: &Listing<'_>,
        start: usize,
    ) -> Result<Page<T>, CallError> {
        retrying(listing.rate_limit_retries, || async {
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
            read_lookup(
                self.send(ApiFamily::Site, listing.endpoint, request)
                    .await?,
            )
            .await
        })
        .await
    }
}

/// Makes `call` again after a rate limit, a few times: one 429 in a reading of hundreds of
/// requests should not cost the requests already made. A wait the server names has already
/// paused the whole family (`Client::send`); without one, backs off from 1 s.
async fn retrying<T, F, Fut>(times: u32, mut call: F) -> Result<T, CallError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, CallError>>,
{
    let mut backoff = Duration::from_secs(1);
    let mut retries = 0;
    loop {
        match call().await {
            Err(CallError::RateLimited { wait, .. })
                if retries < times && wait.is_none_or(|wait| wait <= MAX_RATE_LIMIT_WAIT) =>
            {
                retries += 1;
                if wait.is_none() {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
            done => return done,
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

/// Adds one desk's entry for an account. A field one desk's list leaves out is taken from
/// another's.
fn merge(listed: &mut BTreeMap<String, OnDesks>, entry: DeskCustomer, desk: &str) {
    match listed.entry(entry.account_id) {
        Entry::Vacant(vacant) => {
            vacant.insert(OnDesks {
                email: entry.email_address,
                display_name: entry.display_name,
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
    fn an_account_on_two_desks_is_merged_once() {
        let mut listed = BTreeMap::new();
        let entry = |email: Option<&str>| DeskCustomer {
            account_id: "qm:1".into(),
            email_address: email.map(Into::into),
            display_name: Some("One".into()),
        };
        merge(&mut listed, entry(None), "10");
        merge(&mut listed, entry(Some("one@example.com")), "20");
        merge(&mut listed, entry(None), "20");
        let merged = &listed["qm:1"];
        assert_eq!(merged.service_desks, ["10", "20"]);
        assert_eq!(merged.email.as_deref(), Some("one@example.com"));
    }
}
