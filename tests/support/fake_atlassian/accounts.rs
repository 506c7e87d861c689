//! The accounts the fake keeps, and the state it keeps them in, indexed for the searches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{Fault, RecordedRequest};

/// Where an account stands, as the assertions of a test see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeStatus {
    Active,
    /// Directory suspend; restore brings it back to `Active`.
    Suspended,
    /// Lifecycle disable.
    Deactivated,
    /// Lifecycle delete, inside the grace period: a second delete answers 404.
    PendingDelete,
    /// Removed from the org directory (still a site user).
    Removed,
    /// Deleted by the site delete-user call: gone from every endpoint.
    Deleted,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeAccount {
    pub account_id: String,
    /// `atlassian`, `customer` or `app`.
    pub account_type: String,
    /// `None` models a user whose privacy settings hide the email: searches never show it.
    pub email: Option<String>,
    pub display_name: String,
    pub status: FakeStatus,
    /// Listed by the directory search and reachable by the directory endpoints.
    pub in_directory: bool,
    pub portal_access_revoked: bool,
    pub groups: BTreeSet<String>,
    pub service_desks: BTreeSet<String>,
    pub organizations: BTreeSet<String>,
}

impl FakeAccount {
    /// An active JSM portal-only customer.
    pub fn customer(account_id: &str, email: &str) -> FakeAccount {
        FakeAccount {
            account_id: account_id.to_owned(),
            account_type: "customer".to_owned(),
            email: Some(email.to_owned()),
            display_name: display_name_for(email),
            status: FakeStatus::Active,
            in_directory: false,
            portal_access_revoked: false,
            groups: BTreeSet::new(),
            service_desks: BTreeSet::new(),
            organizations: BTreeSet::new(),
        }
    }

    /// An active managed account in the org directory.
    pub fn managed(account_id: &str, email: &str) -> FakeAccount {
        FakeAccount {
            account_type: "atlassian".to_owned(),
            in_directory: true,
            ..FakeAccount::customer(account_id, email)
        }
    }

    pub(super) fn is_gone(&self) -> bool {
        self.status == FakeStatus::Deleted
    }

    pub(super) fn in_directory_now(&self) -> bool {
        self.in_directory && !self.is_gone()
    }
}

fn display_name_for(email: &str) -> String {
    email.split('@').next().unwrap_or(email).to_owned()
}

pub(super) struct FakeState {
    pub(super) accounts: BTreeMap<String, FakeAccount>,
    /// Lower-cased email, display name and each word of it → account ids: the site search
    /// matches prefixes of these, in O(log n) however many accounts a benchmark adds.
    pub(super) by_prefix: BTreeMap<String, BTreeSet<String>>,
    /// Lower-cased email → account ids, for the directory's exact `emails` filter.
    pub(super) by_email: BTreeMap<String, BTreeSet<String>>,
    pub(super) service_desks: BTreeSet<String>,
    pub(super) organizations: BTreeSet<String>,
    pub(super) groups: BTreeSet<String>,
    /// The site user holds "Browse users and groups" (`USER_PICKER`).
    pub(super) browse_users: bool,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) faults: Vec<Fault>,
    pub(super) directory_page_size: usize,
    /// The largest page the service desk API listings answer.
    pub(super) listing_page_cap: usize,
    /// The listings answer empty pages that are never the last (a broken server).
    pub(super) empty_listing_pages: bool,
    pub(super) latency: Duration,
}

/// What the site search matches a prefix of.
fn search_keys(account: &FakeAccount) -> Vec<String> {
    let name = account.display_name.to_ascii_lowercase();
    let mut keys: Vec<String> = name.split_whitespace().map(str::to_owned).collect();
    keys.push(name);
    keys.extend(account.email.as_deref().map(str::to_ascii_lowercase));
    keys
}

impl FakeState {
    pub(super) fn index(&mut self, account: &FakeAccount) {
        for key in search_keys(account) {
            let ids = self.by_prefix.entry(key).or_default();
            ids.insert(account.account_id.clone());
        }
        if let Some(email) = &account.email {
            let ids = self.by_email.entry(email.to_ascii_lowercase()).or_default();
            ids.insert(account.account_id.clone());
        }
    }

    pub(super) fn unindex(&mut self, account: &FakeAccount) {
        fn remove(index: &mut BTreeMap<String, BTreeSet<String>>, key: &str, id: &str) {
            if let Some(ids) = index.get_mut(key) {
                ids.remove(id);
                if ids.is_empty() {
                    index.remove(key);
                }
            }
        }
        for key in search_keys(account) {
            remove(&mut self.by_prefix, &key, &account.account_id);
        }
        if let Some(email) = &account.email {
            remove(
                &mut self.by_email,
                &email.to_ascii_lowercase(),
                &account.account_id,
            );
        }
    }

    /// Ids of the accounts with a search key that starts with `query` (case-insensitive).
    pub(super) fn prefix_matches(&self, query: &str) -> BTreeSet<&String> {
        let query = query.to_ascii_lowercase();
        self.by_prefix
            .range(query.clone()..)
            .take_while(|(key, _)| key.starts_with(&query))
            .flat_map(|(_, ids)| ids)
            .collect()
    }

    /// Whether the site calls treat the account as active: a revoked portal customer is
    /// "(Deactivated)" [KB-rev]; suspended [AX286], deactivated and deleting accounts are
    /// not active either.
    pub(super) fn site_active(account: &FakeAccount) -> bool {
        !account.portal_access_revoked
            && matches!(account.status, FakeStatus::Active | FakeStatus::Removed)
    }

    /// An account the site endpoints can see.
    pub(super) fn live_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.accounts
            .get_mut(account_id)
            .filter(|account| !account.is_gone())
    }

    /// A managed account the lifecycle endpoints know.
    pub(super) fn managed_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.live_account(account_id)
            .filter(|account| account.account_type == "atlassian")
    }

    pub(super) fn directory_account(&mut self, account_id: &str) -> Option<&mut FakeAccount> {
        self.accounts
            .get_mut(account_id)
            .filter(|account| account.in_directory_now())
    }
}
