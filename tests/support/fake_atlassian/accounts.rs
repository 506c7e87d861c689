//! The accounts the fake keeps, and the state it keeps them in, indexed for the searches.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::{DIRECTORY_ID, Fault, RecordedRequest};

/// Where an account stands, as the assertions of a test see it: a summary of the account's
/// own status and its membership in the configured directory (`DIRECTORY_ID`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FakeStatus {
    Active,
    /// Suspended in the configured directory; restore brings it back to `Active`.
    Suspended,
    /// Lifecycle disable: the account is inactive.
    Deactivated,
    /// Lifecycle delete, inside the 14-day grace period.
    PendingDelete,
    /// No membership in the configured directory (the account itself lives on).
    Removed,
    /// Deleted by the site delete-user call, or closed: gone from every endpoint.
    Deleted,
}

/// The account's own status, directory-independent: `accountStatus` /
/// `account.account_status` ∈ active|inactive|closed [JS-um accountStatus.ts, JS-admin].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccountStatus {
    Active,
    Inactive,
    Closed,
}

/// A membership in one directory [JS-admin membershipStatus.ts].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Membership {
    Active,
    Suspended,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeAccount {
    pub account_id: String,
    /// `atlassian`, `customer` or `app`.
    pub account_type: String,
    /// `None` models a user whose privacy settings hide the email: searches never show it.
    pub email: Option<String>,
    pub display_name: String,
    /// The account-level status, which the lifecycle calls change [UM].
    pub account_status: AccountStatus,
    /// Scheduled for deletion by the lifecycle delete, inside its 14 days of grace [UM, TUT].
    pub for_deletion: bool,
    /// Deleted by the site delete-user call [AE-users].
    pub deleted: bool,
    /// Membership per directory id; suspend and restore change one, remove drops one
    /// [AEA, JS-admin]. A managed account may live outside every directory [GOA].
    pub directories: BTreeMap<String, Membership>,
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
            account_status: AccountStatus::Active,
            for_deletion: false,
            deleted: false,
            directories: BTreeMap::new(),
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
            directories: [(DIRECTORY_ID.to_owned(), Membership::Active)].into(),
            ..FakeAccount::customer(account_id, email)
        }
    }

    /// The account put in `status`, as the offboarding calls would leave it.
    pub fn in_state(mut self, status: FakeStatus) -> FakeAccount {
        match status {
            FakeStatus::Active => {}
            FakeStatus::Suspended => {
                self.directories
                    .insert(DIRECTORY_ID.to_owned(), Membership::Suspended);
            }
            FakeStatus::Deactivated => self.account_status = AccountStatus::Inactive,
            FakeStatus::PendingDelete => {
                self.account_status = AccountStatus::Inactive;
                self.for_deletion = true;
            }
            FakeStatus::Removed => {
                self.directories.remove(DIRECTORY_ID);
                self.groups.clear();
            }
            FakeStatus::Deleted => self.deleted = true,
        }
        self
    }

    /// The summary a test asserts on; the most final state wins.
    pub fn status(&self) -> FakeStatus {
        if self.is_gone() {
            FakeStatus::Deleted
        } else if self.for_deletion {
            FakeStatus::PendingDelete
        } else if self.account_status == AccountStatus::Inactive {
            FakeStatus::Deactivated
        } else if self.account_type == "atlassian" && !self.in_directory() {
            FakeStatus::Removed
        } else if self.membership(DIRECTORY_ID) == Some(Membership::Suspended) {
            FakeStatus::Suspended
        } else {
            FakeStatus::Active
        }
    }

    /// A member (active or suspended) of the configured directory.
    pub fn in_directory(&self) -> bool {
        self.directories.contains_key(DIRECTORY_ID)
    }

    pub fn membership(&self, directory: &str) -> Option<Membership> {
        self.directories.get(directory).copied()
    }

    /// The org-wide `membershipStatus`: `active` in at least one directory, `suspended` in
    /// every directory, or `no_membership` [JS-admin membershipStatus.ts].
    pub(super) fn membership_status(&self) -> &'static str {
        if self.directories.values().any(|m| *m == Membership::Active) {
            "active"
        } else if self.directories.is_empty() {
            "no_membership"
        } else {
            "suspended"
        }
    }

    pub(super) fn account_status_name(&self) -> &'static str {
        match self.account_status {
            AccountStatus::Active => "active",
            AccountStatus::Inactive => "inactive",
            AccountStatus::Closed => "closed",
        }
    }

    /// The composite `status`: for_deletion when scheduled; deactivated whenever the account
    /// is inactive, whatever the membership; else suspended / not_invited / active from the
    /// org-wide membership [JS-admin status.ts].
    pub(super) fn composite_status(&self) -> &'static str {
        if self.for_deletion {
            return "for_deletion";
        }
        if self.account_status != AccountStatus::Active {
            return "deactivated";
        }
        match self.membership_status() {
            "suspended" => "suspended",
            "no_membership" => "not_invited",
            _ => "active",
        }
    }

    pub(super) fn is_gone(&self) -> bool {
        self.deleted || self.account_status == AccountStatus::Closed
    }

    /// Reachable through `directory` (`-`: any directory, for reads only [JS-admin]).
    pub(super) fn readable_in(&self, directory: &str) -> bool {
        !self.is_gone()
            && if directory == "-" {
                !self.directories.is_empty()
            } else {
                self.directories.contains_key(directory)
            }
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
    /// The org's directories.
    pub(super) directories: BTreeSet<String>,
    /// The site user holds "Browse users and groups" (`USER_PICKER`).
    pub(super) browse_users: bool,
    /// The site user holds a Jira Service Management agent licence.
    pub(super) jsm_agent_licence: bool,
    pub(super) requests: Vec<RecordedRequest>,
    pub(super) faults: Vec<Fault>,
    pub(super) directory_page_size: usize,
    /// The largest page the service desk API listings answer.
    pub(super) listing_page_cap: usize,
    /// The listings answer empty pages that are never the last (a broken server).
    pub(super) empty_listing_pages: bool,
    pub(super) latency: Duration,
    /// The tenant's rate limit, when a test set one (`tenant_limit.rs`).
    pub(super) tenant_limit: Option<super::tenant_limit::TenantLimit>,
    /// Jira filters and dashboards by id (`filters.rs`, `dashboards.rs`).
    pub(super) filters: BTreeMap<String, super::content::FakeItem>,
    pub(super) dashboards: BTreeMap<String, super::dashboards::FakeDashboard>,
    pub(super) issues: super::issues::Issues,
    pub(super) bulk: super::bulk::Bulk,
    pub(super) projects: super::projects::Projects,
    pub(super) automation: super::automation::Automation,
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
            && !account.is_gone()
            && account.account_status == AccountStatus::Active
            && !account.for_deletion
            && account.membership_status() != "suspended"
    }

    /// An active account that can take over what a leaver owns. Whether an inactive one
    /// could is UNCONFIRMED; the fake refuses it as unknown, the less convenient.
    pub(super) fn known_user(&self, account_id: &str) -> bool {
        self.accounts
            .get(account_id)
            .is_some_and(FakeState::site_active)
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

    /// An account with a membership in `directory` (`-` = any, for reads).
    pub(super) fn directory_account(
        &mut self,
        directory: &str,
        account_id: &str,
    ) -> Option<&mut FakeAccount> {
        self.accounts
            .get_mut(account_id)
            .filter(|account| account.readable_in(directory))
    }
}
