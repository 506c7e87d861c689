//! Outcomes observed, not inferred (README, "Job outcomes"). For each mutating call and each
//! answer it can give, `reading` (in `mutation.rs`, beside the call) says what the answer
//! means; where it can mean two things, the state is read back from the call that can tell
//! (`Check`, here), and only a read that shows the target state makes the step
//! `already_done`. A read that cannot tell fails the job with the answer and what was read.
//! `checked_first` (in `mutation.rs`) names the calls whose success also answers non-members:
//! membership is read before them.
//!
//! Lifecycle calls act on the account, so they are settled by the account-level profile
//! (the directory record only where it belongs to the same account); suspend and restore by
//! the membership in the configured directory; group calls by the group's membership; a
//! revoke by the site user.

use std::fmt;

use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::json;

use super::client::Client;
use super::error::CallError;
use super::inventory::{DeskCustomer, Listing};
use super::lookup::{Account, read_lookup};
use super::mutation::Mutation;
use crate::domain::ApiFamily;

/// What one answer of one mutating call means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reading {
    /// The change was made.
    Done,
    /// The endpoint documents one meaning for this answer: already in the target state.
    AlreadyDone,
    /// A 404 that can only mean the configured group, desk or organization is missing.
    MissingTarget,
    /// A 404 of a group call: the group is read; missing → `MissingTarget`, else refused.
    MissingTargetIfAbsent,
    /// A 409 whose error code `code` documents "already a member"; any other code is refused.
    AlreadyDoneIfCode(&'static str),
    /// Ambiguous: read the state back.
    ReadBack(Check),
    /// Permanent for this job: it fails with the answer's body.
    Refused,
}

/// A read-back: what is read, and which state counts as the target one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Check {
    /// Profile: inactive or closed, or no such account.
    AccountInactive,
    /// Profile closed or gone; or inactive with a directory record of the same account
    /// saying `for_deletion`.
    AccountDeleted,
    /// Profile: no such account.
    AccountGone,
    /// Profile active.
    AccountActive,
    /// Profile active; or inactive with a directory record saying `deactivated`, not
    /// `for_deletion`.
    AccountNotScheduled,
    /// Directory record: `membershipStatus` suspended (org-wide: suspended in every
    /// directory, so in this one too).
    MembershipSuspended,
    /// Directory record: `membershipStatus` active, and this is the account's only
    /// directory (the status is org-wide: "active somewhere" says nothing of this one).
    MembershipActive,
    /// No record in the configured directory, which exists.
    NotInDirectory,
    /// The group exists and the account is not among its members.
    NotInGroup,
    /// The desk's customers matching the email do not include the account.
    NotOnDesk,
    /// The organization's members do not include the account.
    NotInOrganization,
    /// The site user is inactive (revoked, "(Deactivated)") or no longer exists.
    PortalAccessGone,
    /// The site user no longer exists (a deleted portal-only customer).
    CustomerDeleted,
}

/// What a read-back saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Seen {
    InTarget(String),
    NotInTarget(String),
    /// The read cannot tell (e.g. an org-wide status for one directory).
    CannotTell(String),
    /// The configured target (`kind`, `id`) does not exist.
    MissingTarget {
        kind: &'static str,
        id: String,
    },
}

impl fmt::Display for Seen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seen::InTarget(what) | Seen::NotInTarget(what) => f.write_str(what),
            Seen::CannotTell(what) => write!(f, "{what}; this read cannot tell"),
            Seen::MissingTarget { kind, id } => write!(f, "the {kind} `{id}` does not exist"),
        }
    }
}

#[derive(Deserialize)]
struct Profile {
    account: ProfileAccount,
}

#[derive(Deserialize)]
struct ProfileAccount {
    account_id: Option<String>,
    account_status: Option<String>,
}

#[derive(Deserialize)]
struct DirectoryPage {
    #[serde(default)]
    data: Vec<serde_json::Value>,
}

/// What a verification read saw of a succeeded step (README, "Proof for auditors").
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The account shows what the step did.
    Holds(String),
    /// The account shows the opposite: access is there again, or was never taken.
    Contradicts(String),
    /// The read cannot tell; counted as a failed verification, never as a pass.
    CannotTell(String),
}

impl Client {
    /// Reads the account once more to see whether the succeeded step `m` still holds;
    /// `None` for a call that gives something back, which is never verified.
    pub async fn verify(&self, m: &Mutation) -> Result<Option<Verdict>, CallError> {
        let Some(check) = super::mutation::verification_check(m) else {
            return Ok(None);
        };
        Ok(Some(match self.observe(check, m).await? {
            Seen::InTarget(seen) => Verdict::Holds(seen),
            Seen::NotInTarget(seen) => Verdict::Contradicts(seen),
            seen @ (Seen::CannotTell(_) | Seen::MissingTarget { .. }) => {
                Verdict::CannotTell(seen.to_string())
            }
        }))
    }

    /// Reads `check` back for the account of `m`.
    pub(super) async fn observe(&self, check: Check, m: &Mutation) -> Result<Seen, CallError> {
        let account_id = m.account_id();
        match check {
            Check::AccountInactive => Ok(match self.account_status(account_id).await? {
                None => Seen::InTarget("no such account".into()),
                Some(s) if s == "inactive" || s == "closed" => {
                    Seen::InTarget(format!("account_status {s}"))
                }
                Some(s) => Seen::NotInTarget(format!("account_status {s}")),
            }),
            Check::AccountGone => Ok(match self.account_status(account_id).await? {
                None => Seen::InTarget("no such account".into()),
                Some(s) => Seen::NotInTarget(format!("the account exists: account_status {s}")),
            }),
            Check::AccountActive => Ok(match self.account_status(account_id).await? {
                Some(s) if s == "active" => Seen::InTarget("account_status active".into()),
                Some(s) => Seen::NotInTarget(format!("account_status {s}")),
                None => Seen::NotInTarget("no such account".into()),
            }),
            Check::AccountDeleted => {
                self.inactive_account(account_id, "for_deletion", None)
                    .await
            }
            Check::AccountNotScheduled => {
                self.inactive_account(account_id, "deactivated", Some("for_deletion"))
                    .await
            }
            Check::MembershipSuspended => Ok(match self.directory_user(account_id).await? {
                None => Seen::CannotTell("not in the configured directory".into()),
                Some(a) => match a.membership_status.as_deref() {
                    Some("suspended") => Seen::InTarget(membership(&a)),
                    _ => Seen::NotInTarget(membership(&a)),
                },
            }),
            Check::MembershipActive => {
                let Some(a) = self.directory_user(account_id).await? else {
                    return Ok(Seen::NotInTarget("not in the configured directory".into()));
                };
                if a.membership_status.as_deref() != Some("active") {
                    return Ok(Seen::NotInTarget(membership(&a)));
                }
                let directories = self.account_directories(account_id).await?;
                let ours = self.directory_id().unwrap_or_default();
                Ok(if directories.iter().all(|d| d == ours) {
                    Seen::InTarget(format!("{}, in this directory only", membership(&a)))
                } else {
                    Seen::CannotTell(format!(
                        "{} org-wide, and the account is in {} directories",
                        membership(&a),
                        directories.len()
                    ))
                })
            }
            Check::NotInDirectory => {
                if let Some(a) = self.directory_user(account_id).await? {
                    return Ok(Seen::NotInTarget(format!(
                        "still in the directory: status {}",
                        a.directory_status.as_deref().unwrap_or("unknown")
                    )));
                }
                let ours = self.directory_id().unwrap_or_default().to_owned();
                Ok(if self.directory_ids().await?.contains(&ours) {
                    Seen::InTarget("not in the configured directory".into())
                } else {
                    Seen::MissingTarget {
                        kind: "directory",
                        id: ours,
                    }
                })
            }
            Check::NotInGroup => {
                let group = m.target_id().unwrap_or_default();
                if !self.group_exists(group).await? {
                    return Ok(Seen::MissingTarget {
                        kind: "group",
                        id: group.to_owned(),
                    });
                }
                Ok(match self.in_group(group, account_id).await? {
                    false => Seen::InTarget(format!("not a member of group {group}")),
                    true => Seen::NotInTarget(format!("still a member of group {group}")),
                })
            }
            Check::NotOnDesk => {
                let desk = m.target_id().unwrap_or_default();
                let email = m.email().unwrap_or_default();
                self.on_desk(desk, email, account_id).await
            }
            Check::NotInOrganization => {
                let organization = m.target_id().unwrap_or_default();
                self.in_organization(organization, account_id).await
            }
            Check::CustomerDeleted => Ok(match self.site_user(account_id).await? {
                None => Seen::InTarget("customer deleted (404)".into()),
                Some(a) => Seen::NotInTarget(format!(
                    "the customer still exists: the site user is {}",
                    a.status.as_deref().unwrap_or("of unknown status")
                )),
            }),
            Check::PortalAccessGone => Ok(match self.site_user(account_id).await? {
                None => Seen::InTarget("no such user".into()),
                Some(a) if a.status.as_deref() == Some("inactive") => {
                    Seen::InTarget("the site user is inactive (no portal access)".into())
                }
                Some(a) => Seen::NotInTarget(format!(
                    "the site user is {}",
                    a.status.as_deref().unwrap_or("of unknown status")
                )),
            }),
        }
    }

    /// Deleting or cancelling a deletion, read back: the profile tells an active account
    /// (`for_deletion` wanted: not deleted; else not scheduled, so in the target) and a
    /// closed or missing one, but an inactive account is deactivated or scheduled for
    /// deletion alike, so the directory record of the same account tells: `wanted` is the
    /// target state, `unwanted` the other, anything else cannot tell.
    async fn inactive_account(
        &self,
        account_id: &str,
        wanted: &str,
        unwanted: Option<&str>,
    ) -> Result<Seen, CallError> {
        let deleting = wanted == "for_deletion";
        let seen = match self.account_status(account_id).await?.as_deref() {
            None if deleting => Seen::InTarget("no such account".into()),
            None => Seen::NotInTarget("no such account".into()),
            Some("closed") if deleting => Seen::InTarget("account_status closed".into()),
            Some("active") if !deleting => Seen::InTarget("account_status active".into()),
            Some("inactive") => {
                let record = self.same_directory_record(account_id).await?;
                let now = format!(
                    "account_status inactive, directory status {}",
                    record.as_deref().unwrap_or("absent")
                );
                match record.as_deref() {
                    Some(status) if status == wanted => Seen::InTarget(now),
                    Some(status) if Some(status) == unwanted => Seen::NotInTarget(now),
                    _ => Seen::CannotTell(now),
                }
            }
            Some(s) => Seen::NotInTarget(format!("account_status {s}")),
        };
        Ok(seen)
    }

    /// `GET {admin}/users/{id}/manage/profile`: the account's own `account_status`
    /// (active|inactive|closed), whatever its directories; `None` for a 404.
    async fn account_status(&self, account_id: &str) -> Result<Option<String>, CallError> {
        let url = self.admin_endpoint(&["users", account_id, "manage", "profile"])?;
        let request = self.request(ApiFamily::Admin, Method::GET, url)?;
        let response = self
            .send(ApiFamily::Admin, "account_profile", request)
            .await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let profile: Profile = read_lookup(response).await?;
        if profile
            .account
            .account_id
            .as_deref()
            .is_some_and(|id| id != account_id)
        {
            return Err(CallError::Transient {
                detail: "the profile read answered for another account".into(),
            });
        }
        Ok(Some(profile.account.account_status.unwrap_or_default()))
    }

    /// The composite status of the configured directory's record, when that record belongs to
    /// the same account.
    async fn same_directory_record(&self, account_id: &str) -> Result<Option<String>, CallError> {
        Ok(self
            .directory_user(account_id)
            .await?
            .filter(|a| a.account_id == account_id)
            .and_then(|a| a.directory_status))
    }

    /// The org's directories the account is a member of
    /// (`GET /admin/v2/orgs/{orgId}/directories?accountId=`).
    async fn account_directories(&self, account_id: &str) -> Result<Vec<String>, CallError> {
        let org = self.org_id()?.to_owned();
        let mut url = self.admin_endpoint(&["admin", "v2", "orgs", &org, "directories"])?;
        url.query_pairs_mut().append_pair("accountId", account_id);
        let request = self.request(ApiFamily::Admin, Method::GET, url)?;
        let response = self
            .send(ApiFamily::Admin, "account_directories", request)
            .await?;
        let page: DirectoryPage = read_lookup(response).await?;
        Ok(page
            .data
            .iter()
            .filter_map(|d| d["directoryId"].as_str().map(str::to_owned))
            .collect())
    }

    /// Whether the account is in the group: the directory search narrowed to the account
    /// and the group.
    async fn in_group(&self, group_id: &str, account_id: &str) -> Result<bool, CallError> {
        let url = self.directory_endpoint(&["users", "search"])?;
        let body = json!({ "accountIds": [account_id], "groupIds": [group_id] });
        let request = self
            .request(ApiFamily::Admin, Method::POST, url)?
            .json(&body);
        let response = self
            .send(ApiFamily::Admin, "group_membership", request)
            .await?;
        let page: DirectoryPage = read_lookup(response).await?;
        Ok(page
            .data
            .iter()
            .any(|user| user["accountId"].as_str() == Some(account_id)))
    }

    /// Whether the account is among the desk's customers: the desk list filtered by the
    /// email (`query=`), matched by account id.
    async fn on_desk(&self, desk: &str, email: &str, account_id: &str) -> Result<Seen, CallError> {
        let path = ["rest", "servicedeskapi", "servicedesk", desk, "customer"];
        let listing = Listing {
            endpoint: "desk_membership",
            query: Some(email),
            rate_limit_retries: 0,
            ..Listing::desk_customers(&path)
        };
        let member = self.lists(&listing, account_id).await;
        Ok(match missing_on_404(member, "service_desk", desk)? {
            Ok(true) => Seen::NotInTarget(format!("a customer of desk {desk}")),
            Ok(false) => Seen::InTarget(format!("not a customer of desk {desk}")),
            Err(missing) => missing,
        })
    }

    /// Whether the account is a member of the organization: its members, every page.
    async fn in_organization(
        &self,
        organization: &str,
        account_id: &str,
    ) -> Result<Seen, CallError> {
        let path = [
            "rest",
            "servicedeskapi",
            "organization",
            organization,
            "user",
        ];
        let listing = Listing {
            path: &path,
            endpoint: "organization_membership",
            experimental: false,
            query: None,
            rate_limit_retries: 0,
        };
        let member = self.lists(&listing, account_id).await;
        Ok(
            match missing_on_404(member, "organization", organization)? {
                Ok(true) => Seen::NotInTarget(format!("a member of organization {organization}")),
                Ok(false) => Seen::InTarget(format!("not a member of organization {organization}")),
                Err(missing) => missing,
            },
        )
    }

    /// Whether `account_id` is among the entries of a listing, read to its end.
    async fn lists(&self, listing: &Listing<'_>, account_id: &str) -> Result<bool, CallError> {
        let mut found = false;
        self.each_page(listing, |page: Vec<DeskCustomer>| {
            found |= page.iter().any(|entry| entry.account_id == account_id);
        })
        .await?;
        Ok(found)
    }
}

/// A listing answered 404: its desk or organization (`kind`, `id`) does not exist.
fn missing_on_404(
    read: Result<bool, CallError>,
    kind: &'static str,
    id: &str,
) -> Result<Result<bool, Seen>, CallError> {
    match read {
        Ok(member) => Ok(Ok(member)),
        Err(CallError::Rejected { status: 404, .. }) => Ok(Err(Seen::MissingTarget {
            kind,
            id: id.to_owned(),
        })),
        Err(other) => Err(other),
    }
}

fn membership(account: &Account) -> String {
    format!(
        "membershipStatus {}",
        account.membership_status.as_deref().unwrap_or("unknown")
    )
}
