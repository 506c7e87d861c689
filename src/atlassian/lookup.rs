//! Finding the accounts behind an email: the site user search for customers and site users,
//! the service desks' customer lists for the customers that search leaves out (revoked), the
//! org directory search for managed accounts; and reading accounts' own records by id, one
//! or many at a time, which also sees the accounts those searches no longer return (revoked,
//! suspended).

use std::collections::{BTreeSet, HashSet};

use reqwest::{Method, Response, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::client::{Client, Paid, is_sendable_id};
use super::error::CallError;
use super::inventory::{DeskCustomer, Listing, SERVICE_DESKS, ServiceDesk};
use crate::domain::ApiFamily;

/// The site search asks for this many candidates; an exact email is among the first few.
const SITE_SEARCH_MAX_RESULTS: &str = "50";

/// An exact-email directory search fits on one page; a server that keeps handing out
/// cursors is broken, and a partial answer could hide a second account.
const MAX_DIRECTORY_PAGES: usize = 10;

/// An account a lookup found for an email, or read by its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Account {
    pub account_id: String,
    /// `atlassian`, `customer`, `app`, or whatever else Atlassian reports.
    pub account_type: String,
    pub email: Option<String>,
    /// Site: `active`/`inactive`; directory: its `accountStatus` (`active|inactive|closed`).
    pub status: Option<String>,
    /// Directory only: the composite `status`
    /// (`active|suspended|not_invited|deactivated|for_deletion`).
    pub directory_status: Option<String>,
    /// Directory only: `membershipStatus` (`active|suspended|no_membership`).
    pub membership_status: Option<String>,
}

/// The most ids one bulk read names. Every page of a read repeats all its ids in the URL, so
/// this bounds the URL: 50 ids of the usual shapes (24-character Atlassian ids, `557058:`
/// and `qm:` ids of about 43) are about 3 KB of query, far under the 8 KB request line that
/// proxies commonly take, and one read of 50 replaces 50 single reads. Whether Atlassian
/// caps the ids a call takes is UNCONFIRMED; it pages the answer (`maxResults` default 10,
/// largest page UNCONFIRMED), so a read asks for the whole chunk and follows `startAt` for
/// whatever a page holds back.
pub const BULK_READ_IDS: usize = 50;

/// Ids that come from Atlassian's own lists have no length limit of ours: a chunk also ends
/// before its encoded ids pass this many bytes.
const BULK_READ_QUERY_BYTES: usize = 6 * 1024;

/// The "Browse users and groups" global permission's key in `mypermissions`.
const BROWSE_USERS: &str = "USER_PICKER";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SiteUser {
    account_id: String,
    account_type: Option<String>,
    email_address: Option<String>,
    active: Option<bool>,
}

/// A page of `GET /rest/api/3/user/bulk`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BulkPage {
    #[serde(default)]
    values: Vec<SiteUser>,
    is_last: Option<bool>,
    total: Option<usize>,
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
    status: Option<String>,
    membership_status: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryRecord {
    data: DirectoryUser,
}

#[derive(Deserialize)]
struct MyPermissions {
    #[serde(default)]
    permissions: std::collections::HashMap<String, Permission>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Permission {
    #[serde(default)]
    have_permission: bool,
}

impl Client {
    /// Site user search. The search is fuzzy (names, partial emails), so only entries whose
    /// `emailAddress` equals `email` case-insensitively are kept; users who hide their email
    /// cannot be matched and are dropped.
    pub async fn find_site_accounts(&self, email: &str) -> Result<Vec<Account>, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "user", "search"])?;
        url.query_pairs_mut()
            .append_pair("query", email)
            .append_pair("maxResults", SITE_SEARCH_MAX_RESULTS);
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
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

    /// The ids of the accounts with exactly this email on some service desk's customer list:
    /// every desk the site user may see (`GET /rest/servicedeskapi/servicedesk`, every page),
    /// then each desk's customers matching `query={email}` (`GET …/servicedesk/{id}/customer`,
    /// experimental, every page). These lists still hold a customer whose portal access was
    /// revoked, whom the active-user search no longer returns (as far as anyone has written
    /// down: UNCONFIRMED). Their entries carry no `accountType`: read the account by id for
    /// it. A rate limit is not waited out here: the job snoozes instead.
    pub async fn find_desk_customers(&self, email: &str) -> Result<BTreeSet<String>, CallError> {
        let desks_listing = Listing {
            rate_limit_retries: 0,
            ..SERVICE_DESKS
        };
        let mut desks = Vec::new();
        self.each_page(&desks_listing, |page: Vec<ServiceDesk>| {
            desks.extend(page.into_iter().map(|desk| desk.id));
        })
        .await?;
        let mut found = BTreeSet::new();
        for desk in &desks {
            if !is_sendable_id(desk) {
                return Err(CallError::unsendable(desk));
            }
            let path = ["rest", "servicedeskapi", "servicedesk", desk, "customer"];
            let listing = Listing {
                query: Some(email),
                rate_limit_retries: 0,
                ..Listing::desk_customers(&path)
            };
            self.each_page(&listing, |page: Vec<DeskCustomer>| {
                found.extend(
                    page.into_iter()
                        .filter(|entry| same_email(entry.email_address.as_deref(), email))
                        .map(|entry| entry.account_id),
                );
            })
            .await?;
        }
        Ok(found)
    }

    /// Org directory search by exact email, following `links.next` cursors. The filter is
    /// repeated here so a lenient server cannot widen the match.
    pub async fn find_directory_accounts(&self, email: &str) -> Result<Vec<Account>, CallError> {
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
        Err(CallError::Transient {
            detail: format!(
                "the directory search for one email was still paginating after {MAX_DIRECTORY_PAGES} pages"
            ),
        })
    }

    /// One site user by id (`GET /rest/api/3/user?accountId=`): also revoked customers,
    /// whom the search no longer returns. `None` for a 404. A 403 means the site
    /// credentials lack "Browse users and groups".
    pub async fn site_user(&self, account_id: &str) -> Result<Option<Account>, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "user"])?;
        url.query_pairs_mut().append_pair("accountId", account_id);
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = self.send(ApiFamily::Site, "site_user", request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let user: SiteUser = read_lookup(response).await?;
        Ok(Some(user.into()))
    }

    /// The site users with these ids, read in bulk (`GET /rest/api/3/user/bulk`), chunk by
    /// chunk and page by page, each request paced like every other. Ids nobody has are not
    /// in the answer, and whether portal-only customers are is UNCONFIRMED: an id missing
    /// from the answer says nothing, and the caller reads it singly ([`Client::site_user`])
    /// before believing it unknown. The answer holds only ids asked for, each once.
    pub async fn site_users_bulk(&self, account_ids: &[String]) -> Result<Vec<Account>, CallError> {
        let mut accounts = Vec::new();
        for chunk in bulk_chunks(account_ids) {
            accounts.extend(self.site_users_chunk(&chunk, None).await?);
        }
        Ok(accounts)
    }

    /// [`Client::site_users_bulk`] of the ids `gather` hands over once the site family's
    /// bucket has a token for the read: whoever asks while the read waits its turn is in
    /// it. `gather` runs once, right after the wait; at most [`BULK_READ_IDS`] ids make the
    /// read one request a page.
    pub async fn site_users_bulk_gathered(
        &self,
        gather: impl FnOnce() -> Vec<String>,
    ) -> Result<Vec<Account>, CallError> {
        let mut paid = Some(self.pay(ApiFamily::Site).await);
        let account_ids = gather();
        let mut accounts = Vec::new();
        for chunk in bulk_chunks(&account_ids) {
            accounts.extend(self.site_users_chunk(&chunk, paid.take()).await?);
        }
        Ok(accounts)
    }

    /// One bulk read of at most [`BULK_READ_IDS`] ids, every page of it, the first with the
    /// token `paid` if one was taken. A page that is not the last must bring something, and
    /// a read cannot have more pages than ids: a server that breaks either is stopped rather
    /// than asked forever.
    pub(super) async fn site_users_chunk(
        &self,
        ids: &[&str],
        mut paid: Option<Paid>,
    ) -> Result<Vec<Account>, CallError> {
        let wanted: HashSet<&str> = ids.iter().copied().collect();
        let mut found = HashSet::new();
        let mut accounts = Vec::new();
        let mut start = 0;
        for _ in 0..=ids.len() {
            let page = self.site_users_page(ids, start, paid.take()).await?;
            let count = page.values.len();
            let last = page
                .is_last
                .or_else(|| page.total.map(|total| start + count >= total))
                .unwrap_or(count == 0);
            for user in page.values {
                if wanted.contains(user.account_id.as_str())
                    && found.insert(user.account_id.clone())
                {
                    accounts.push(Account::from(user));
                }
            }
            if last {
                return Ok(accounts);
            }
            if count == 0 {
                return Err(CallError::Transient {
                    detail: format!(
                        "the bulk user read answered an empty page at startAt={start} that is not the last one"
                    ),
                });
            }
            start += count;
        }
        Err(CallError::Transient {
            detail: format!(
                "the bulk user read of {} ids was still paging after {} pages",
                ids.len(),
                ids.len() + 1
            ),
        })
    }

    async fn site_users_page(
        &self,
        ids: &[&str],
        start: usize,
        paid: Option<Paid>,
    ) -> Result<BulkPage, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "user", "bulk"])?;
        {
            let mut query = url.query_pairs_mut();
            for id in ids {
                query.append_pair("accountId", id);
            }
            query
                .append_pair("startAt", &start.to_string())
                .append_pair("maxResults", &ids.len().to_string());
        }
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = match paid {
            Some(paid) => self.send_paid(paid, "site_users_bulk", request).await?,
            None => {
                self.send(ApiFamily::Site, "site_users_bulk", request)
                    .await?
            }
        };
        read_lookup(response).await
    }

    /// One directory user by id, with its lifecycle status. `None` for a 404: the account
    /// is not (or no longer) in the directory.
    pub async fn directory_user(&self, account_id: &str) -> Result<Option<Account>, CallError> {
        if !is_sendable_id(account_id) {
            return Err(CallError::unsendable(account_id));
        }
        let url = self.directory_endpoint(&["users", account_id])?;
        let request = self.request(ApiFamily::Admin, Method::GET, url)?;
        let response = self
            .send(ApiFamily::Admin, "directory_user", request)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let record: DirectoryRecord = read_lookup(response).await?;
        Ok(Some(record.data.into()))
    }

    /// Whether the site credentials hold "Browse users and groups". Without it the user
    /// search answers `200 []` to every query, so "no match" would be a lie.
    pub async fn can_browse_users(&self) -> Result<bool, CallError> {
        let mut url = self.site_endpoint(&["rest", "api", "3", "mypermissions"])?;
        url.query_pairs_mut()
            .append_pair("permissions", BROWSE_USERS);
        let request = self.request(ApiFamily::Site, Method::GET, url)?;
        let response = self
            .send(ApiFamily::Site, "site_permissions", request)
            .await?;
        let answer: MyPermissions = read_lookup(response).await?;
        Ok(answer
            .permissions
            .get(BROWSE_USERS)
            .is_some_and(|permission| permission.have_permission))
    }

    async fn directory_search_page(
        &self,
        email: &str,
        cursor: Option<&str>,
    ) -> Result<DirectoryPage, CallError> {
        let url = self.directory_endpoint(&["users", "search"])?;
        let mut body = json!({ "emails": [email] });
        if let Some(cursor) = cursor {
            body["cursor"] = json!(cursor);
        }
        let request = self
            .request(ApiFamily::Admin, Method::POST, url)?
            .json(&body);
        let response = self
            .send(ApiFamily::Admin, "directory_user_search", request)
            .await?;
        read_lookup(response).await
    }
}

/// A lookup succeeds only with a 2xx whose body parses; a 2xx that does not parse is most
/// likely a proxy or maintenance page, so it is worth another try.
pub(super) async fn read_lookup<T: DeserializeOwned>(response: Response) -> Result<T, CallError> {
    if !response.status().is_success() {
        return Err(CallError::rejected(response).await);
    }
    let bytes = response
        .bytes()
        .await
        .map_err(|err| CallError::transport(&err))?;
    serde_json::from_slice(&bytes).map_err(|err| CallError::Transient {
        detail: format!("unexpected lookup response: {err}"),
    })
}

/// The ids, each once, in bulk reads of at most [`BULK_READ_IDS`] ids and
/// [`BULK_READ_QUERY_BYTES`] of encoded query. An id longer than that by itself is a read of
/// its own.
pub(super) fn bulk_chunks(account_ids: &[String]) -> Vec<Vec<&str>> {
    let mut seen = HashSet::new();
    let mut chunks: Vec<Vec<&str>> = Vec::new();
    let mut bytes = 0;
    for id in account_ids.iter().map(String::as_str) {
        if !seen.insert(id) {
            continue;
        }
        let size = "&accountId=".len()
            + form_urlencoded::byte_serialize(id.as_bytes())
                .map(str::len)
                .sum::<usize>();
        match chunks.last_mut() {
            Some(chunk) if chunk.len() < BULK_READ_IDS && bytes + size <= BULK_READ_QUERY_BYTES => {
                chunk.push(id);
                bytes += size;
            }
            _ => {
                chunks.push(vec![id]);
                bytes = size;
            }
        }
    }
    chunks
}

/// Exact after ASCII case folding only: Unicode case mapping would let a look-alike match
/// (`\u{212A}elvin@…`, KELVIN SIGN, lower-cases to `kelvin@…`).
pub(crate) fn has_email(account: &Account, email: &str) -> bool {
    same_email(account.email.as_deref(), email)
}

/// As [`has_email`], for an email shown (or hidden: `None`) anywhere.
fn same_email(shown: Option<&str>, email: &str) -> bool {
    shown.is_some_and(|found| found.eq_ignore_ascii_case(email))
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
            directory_status: None,
            membership_status: None,
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
            directory_status: user.status,
            membership_status: user.membership_status,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn account_with(email: &str) -> Account {
        Account {
            account_id: "a".into(),
            account_type: "customer".into(),
            email: Some(email.into()),
            status: None,
            directory_status: None,
            membership_status: None,
        }
    }

    #[test]
    fn bulk_reads_take_each_id_once_in_chunks_bounded_by_count_and_bytes() {
        let ids: Vec<String> = (0..120).map(|i| format!("qm:{i:03}")).collect();
        let twice: Vec<String> = ids.iter().chain(&ids).cloned().collect();
        let chunks = bulk_chunks(&twice);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [50, 50, 20]);
        assert_eq!(
            chunks.concat(),
            ids.iter().map(String::as_str).collect::<Vec<_>>()
        );

        let long: Vec<String> = (0..10).map(|i| format!("{i}{}", ":".repeat(600))).collect();
        let chunks = bulk_chunks(&long);
        assert!(chunks.len() > 1, "{} bytes of ids in one read", 10 * 1800);
        for chunk in &chunks {
            let bytes: usize = chunk.iter().map(|id| 12 + id.len() * 3).sum();
            assert!(
                chunk.len() == 1 || bytes <= BULK_READ_QUERY_BYTES,
                "{bytes}"
            );
        }
        assert_eq!(chunks.concat().len(), 10);
        assert!(bulk_chunks(&[]).is_empty());
    }

    #[test]
    fn a_kelvin_sign_is_not_a_k() {
        assert!(!has_email(
            &account_with("\u{212A}elvin@example.com"),
            "kelvin@example.com"
        ));
        assert!(has_email(
            &account_with("KELVIN@Example.COM"),
            "kelvin@example.com"
        ));
    }

    proptest! {
        /// Any non-ASCII character in place of an ASCII letter, including those whose Unicode
        /// case mapping is ASCII (U+212A, U+017F, U+0130), never matches.
        #[test]
        fn only_ascii_case_folding_matches(
            local in "[a-z]{1,12}",
            position in any::<prop::sample::Index>(),
            replacement in any::<char>().prop_filter("non-ASCII", |c| !c.is_ascii()),
            upper in any::<bool>(),
        ) {
            let wanted = format!("{local}@example.com");
            let at = position.index(local.len());
            let mut look_alike: String = local.clone();
            look_alike.replace_range(at..=at, &replacement.to_string());
            let look_alike = format!("{look_alike}@example.com");
            prop_assert!(!has_email(&account_with(&look_alike), &wanted));
            let cased = if upper { wanted.to_ascii_uppercase() } else { wanted.clone() };
            prop_assert!(has_email(&account_with(&cased), &wanted));
        }
    }

    /// Every character whose Unicode case mapping yields an ASCII letter, checked one by one.
    #[test]
    fn no_unicode_case_mapping_reaches_an_ascii_address() {
        let mut look_alikes = 0;
        for c in (0..=u32::from(char::MAX)).filter_map(char::from_u32) {
            let mapped: String = c.to_lowercase().chain(c.to_uppercase()).collect();
            let Some(ascii) = mapped.chars().find(char::is_ascii_alphabetic) else {
                continue;
            };
            if c.is_ascii() {
                continue;
            }
            look_alikes += 1;
            let wanted = format!("{}x@example.com", ascii.to_ascii_lowercase());
            assert!(
                !has_email(&account_with(&format!("{c}x@example.com")), &wanted),
                "{c:?}"
            );
        }
        assert!(look_alikes >= 3, "U+212A, U+017F and U+0130 at least");
    }
}
