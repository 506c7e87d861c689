//! The mutating calls, ten that offboard and five that give back (README, "Undo on
//! rehire"): what each sends, and what each one's answers mean.
//!
//! One file, as one concept: every call is the same three parts (its request, its family,
//! how its answers read), and keeping them side by side is what makes a wrong reading of a
//! 404 or a 409 visible.

use reqwest::{Method, Response, StatusCode, Url};
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{Client, EXPERIMENTAL_API, is_sendable_id};
use super::error::{CallError, read_body_prefix};
use super::readback::{Check, Reading, Seen};
use super::targets::ALL_DIRECTORIES;
use crate::domain::{Action, ApiFamily};

/// One mutating call against one account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mutation {
    RevokePortalAccess {
        account_id: String,
    },
    DeletePortalCustomer {
        account_id: String,
    },
    RemoveFromServiceDesk {
        service_desk_id: String,
        account_id: String,
        /// The job's email: the desk's customer list is searched by it before the removal,
        /// whose 204 also answers non-members.
        email: String,
    },
    RemoveFromCustomerOrganization {
        organization_id: String,
        account_id: String,
    },
    SuspendAccess {
        account_id: String,
    },
    RestoreAccess {
        account_id: String,
    },
    RemoveFromDirectory {
        account_id: String,
    },
    RemoveFromGroup {
        group_id: String,
        account_id: String,
    },
    DeactivateAccount {
        account_id: String,
        /// Shown to the account's admins: names what deactivated it.
        message: String,
    },
    DeleteAccount {
        account_id: String,
    },
    EnableAccount {
        account_id: String,
    },
    CancelDeleteAccount {
        account_id: String,
    },
    AddToGroup {
        group_id: String,
        account_id: String,
    },
    AddToServiceDesk {
        service_desk_id: String,
        account_id: String,
    },
    AddToCustomerOrganization {
        organization_id: String,
        account_id: String,
    },
}

impl Mutation {
    /// The call that carries out `action` on `account_id`. `target_id` is the value of the
    /// action's parameter (`Action::param`), `email` the job's, and `message` what a
    /// deactivation shows; `None` when the action takes a parameter and `target_id` is none.
    pub fn new(
        action: Action,
        account_id: String,
        target_id: Option<String>,
        email: &str,
        message: impl FnOnce() -> String,
    ) -> Option<Mutation> {
        Some(match action {
            Action::RevokePortalAccess => Mutation::RevokePortalAccess { account_id },
            Action::DeletePortalCustomer => Mutation::DeletePortalCustomer { account_id },
            Action::RemoveFromServiceDesk => Mutation::RemoveFromServiceDesk {
                service_desk_id: target_id?,
                account_id,
                email: email.to_owned(),
            },
            Action::RemoveFromCustomerOrganization => Mutation::RemoveFromCustomerOrganization {
                organization_id: target_id?,
                account_id,
            },
            Action::SuspendAccess => Mutation::SuspendAccess { account_id },
            Action::RestoreAccess => Mutation::RestoreAccess { account_id },
            Action::RemoveFromDirectory => Mutation::RemoveFromDirectory { account_id },
            Action::RemoveFromGroup => Mutation::RemoveFromGroup {
                group_id: target_id?,
                account_id,
            },
            Action::DeactivateAccount => Mutation::DeactivateAccount {
                account_id,
                message: message(),
            },
            Action::DeleteAccount => Mutation::DeleteAccount { account_id },
            Action::EnableAccount => Mutation::EnableAccount { account_id },
            Action::CancelDeleteAccount => Mutation::CancelDeleteAccount { account_id },
            Action::AddToGroup => Mutation::AddToGroup {
                group_id: target_id?,
                account_id,
            },
            Action::AddToServiceDesk => Mutation::AddToServiceDesk {
                service_desk_id: target_id?,
                account_id,
            },
            Action::AddToCustomerOrganization => Mutation::AddToCustomerOrganization {
                organization_id: target_id?,
                account_id,
            },
            // A hand-over is a procedure, not one call: `src/worker/handover/` runs it.
            Action::TransferFilters
            | Action::TransferDashboards
            | Action::ReassignOpenIssues
            | Action::TransferProjectLeads
            | Action::ReportAutomationRules => return None,
        })
    }

    /// The action it carries out.
    pub fn action(&self) -> Action {
        match self {
            Mutation::RevokePortalAccess { .. } => Action::RevokePortalAccess,
            Mutation::DeletePortalCustomer { .. } => Action::DeletePortalCustomer,
            Mutation::RemoveFromServiceDesk { .. } => Action::RemoveFromServiceDesk,
            Mutation::RemoveFromCustomerOrganization { .. } => {
                Action::RemoveFromCustomerOrganization
            }
            Mutation::SuspendAccess { .. } => Action::SuspendAccess,
            Mutation::RestoreAccess { .. } => Action::RestoreAccess,
            Mutation::RemoveFromDirectory { .. } => Action::RemoveFromDirectory,
            Mutation::RemoveFromGroup { .. } => Action::RemoveFromGroup,
            Mutation::DeactivateAccount { .. } => Action::DeactivateAccount,
            Mutation::DeleteAccount { .. } => Action::DeleteAccount,
            Mutation::EnableAccount { .. } => Action::EnableAccount,
            Mutation::CancelDeleteAccount { .. } => Action::CancelDeleteAccount,
            Mutation::AddToGroup { .. } => Action::AddToGroup,
            Mutation::AddToServiceDesk { .. } => Action::AddToServiceDesk,
            Mutation::AddToCustomerOrganization { .. } => Action::AddToCustomerOrganization,
        }
    }

    /// The endpoint's name in metrics: the action it carries out.
    pub fn endpoint(&self) -> &'static str {
        self.action().as_str()
    }

    /// Customer mutations go to the site with Basic auth, managed ones to the admin API
    /// (`Action::spec`).
    pub fn family(&self) -> ApiFamily {
        self.action().family()
    }

    /// The account it acts on.
    pub fn account_id(&self) -> &str {
        self.ids().last().copied().unwrap_or_default()
    }

    /// The group, service desk or organization it names, if any.
    pub fn target_id(&self) -> Option<&str> {
        let ids = self.ids();
        (ids.len() == 2).then(|| ids[0])
    }

    /// The email the job named, where the call needs it (a desk removal's membership
    /// check searches the desk by it).
    pub fn email(&self) -> Option<&str> {
        match self {
            Mutation::RemoveFromServiceDesk { email, .. } => Some(email),
            Mutation::RevokePortalAccess { .. }
            | Mutation::DeletePortalCustomer { .. }
            | Mutation::RemoveFromCustomerOrganization { .. }
            | Mutation::SuspendAccess { .. }
            | Mutation::RestoreAccess { .. }
            | Mutation::RemoveFromDirectory { .. }
            | Mutation::RemoveFromGroup { .. }
            | Mutation::DeactivateAccount { .. }
            | Mutation::DeleteAccount { .. }
            | Mutation::EnableAccount { .. }
            | Mutation::CancelDeleteAccount { .. }
            | Mutation::AddToGroup { .. }
            | Mutation::AddToServiceDesk { .. }
            | Mutation::AddToCustomerOrganization { .. } => None,
        }
    }

    /// The kind of configured target it names, for `missing_target:<kind>:<id>`: the object
    /// its parameter names, else the directory its account is in.
    fn target_kind(&self) -> &'static str {
        match self.action().param() {
            Some(param) => param.kind(),
            None => "directory",
        }
    }

    /// Every id this mutation puts into its URL.
    fn ids(&self) -> Vec<&str> {
        match self {
            Mutation::RemoveFromServiceDesk {
                service_desk_id: other,
                account_id,
                ..
            }
            | Mutation::RemoveFromCustomerOrganization {
                organization_id: other,
                account_id,
            }
            | Mutation::RemoveFromGroup {
                group_id: other,
                account_id,
            }
            | Mutation::AddToServiceDesk {
                service_desk_id: other,
                account_id,
            }
            | Mutation::AddToCustomerOrganization {
                organization_id: other,
                account_id,
            }
            | Mutation::AddToGroup {
                group_id: other,
                account_id,
            } => vec![other, account_id],
            Mutation::RevokePortalAccess { account_id }
            | Mutation::DeletePortalCustomer { account_id }
            | Mutation::SuspendAccess { account_id }
            | Mutation::RestoreAccess { account_id }
            | Mutation::RemoveFromDirectory { account_id }
            | Mutation::DeactivateAccount { account_id, .. }
            | Mutation::DeleteAccount { account_id }
            | Mutation::EnableAccount { account_id }
            | Mutation::CancelDeleteAccount { account_id } => vec![account_id],
        }
    }
}

/// The request a mutation sends, as recorded in dry-run audit events. Holds no credentials.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PlannedRequest {
    pub method: String,
    pub url: String,
    pub body: Option<Value>,
}

/// How a mutation that went through ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The API made the change.
    Done,
    /// The API says the account is already gone or already in that state.
    AlreadyDone,
}

/// How a mutation ended, with what a membership check or a read-back saw, if one was made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub applied: Applied,
    pub seen: Option<String>,
}

/// Everything needed to send one mutation.
struct Request {
    family: ApiFamily,
    method: Method,
    url: Url,
    body: Option<Value>,
    /// JSM endpoints may want `X-ExperimentalApi: opt-in`; sending it elsewhere is harmless,
    /// but it is kept to the endpoints that asked for it.
    servicedesk_api: bool,
}

impl Request {
    fn new(family: ApiFamily, method: Method, url: Url) -> Request {
        Request {
            family,
            method,
            url,
            body: None,
            servicedesk_api: false,
        }
    }

    fn with_body(family: ApiFamily, method: Method, url: Url, body: Value) -> Request {
        Request {
            body: Some(body),
            ..Request::new(family, method, url)
        }
    }

    fn servicedesk(method: Method, url: Url, account_id: &str) -> Request {
        Request {
            body: Some(json!({ "accountIds": [account_id] })),
            servicedesk_api: true,
            ..Request::new(ApiFamily::Site, method, url)
        }
    }
}

impl Client {
    /// The request `apply` would send. A mutation with an id that `apply` refuses to send is
    /// described as the URL parser makes it; `apply` then fails it as `Rejected`.
    pub fn describe(&self, m: &Mutation) -> Result<PlannedRequest, CallError> {
        let plan = self.request_for(m)?;
        Ok(PlannedRequest {
            method: plan.method.to_string(),
            url: plan.url.to_string(),
            body: plan.body,
        })
    }

    pub async fn apply(&self, m: &Mutation) -> Result<Applied, CallError> {
        Ok(self.settle(m).await?.applied)
    }

    /// Makes the call and settles what it did (README, "Job outcomes"): by the answer where
    /// the endpoint documents one meaning for it, else by reading the state back
    /// (`reading`). Membership is read first where a non-member's answer looks
    /// like a member's (`checked_first`).
    pub async fn settle(&self, m: &Mutation) -> Result<Settled, CallError> {
        refuse_unsendable_ids(m)?;
        if m.action().writes_directory() && self.directory_id() == Some(ALL_DIRECTORIES) {
            return Err(CallError::DirectoryNotWritable);
        }
        if let Some(check) = checked_first(m) {
            match self.observe(check, m).await? {
                Seen::InTarget(seen) => {
                    return Ok(Settled {
                        applied: Applied::AlreadyDone,
                        seen: Some(format!("checked before the call: {seen}")),
                    });
                }
                Seen::NotInTarget(_) => {}
                // Only a list too long to read ends here; nothing was sent.
                Seen::CannotTell(seen) => {
                    return Err(CallError::Transient {
                        detail: format!("membership could not be checked before the call: {seen}"),
                    });
                }
                Seen::MissingTarget { kind, id } => {
                    return Err(CallError::MissingTarget { kind, id });
                }
            }
        }
        let response = self
            .send_request(m.endpoint(), self.request_for(m)?)
            .await?;
        let status = response.status();
        let missing = || CallError::MissingTarget {
            kind: m.target_kind(),
            id: m.target_id().unwrap_or_default().to_owned(),
        };
        let settled = |applied| {
            Ok(Settled {
                applied,
                seen: None,
            })
        };
        match reading(m, status) {
            Reading::Done => settled(Applied::Done),
            Reading::AlreadyDone => settled(Applied::AlreadyDone),
            Reading::MissingTarget => Err(missing()),
            Reading::Refused => Err(CallError::rejected(response).await),
            Reading::MissingTargetIfAbsent => {
                let body = read_body_prefix(response).await;
                match self.group_exists(m.target_id().unwrap_or_default()).await? {
                    false => Err(missing()),
                    true => Err(CallError::Rejected {
                        status: status.as_u16(),
                        body,
                    }),
                }
            }
            Reading::AlreadyDoneIfCode(code) => {
                let body = read_body_prefix(response).await;
                if error_codes(&body).iter().any(|c| c == code) {
                    Ok(Settled {
                        applied: Applied::AlreadyDone,
                        seen: Some(format!("error code {code}")),
                    })
                } else {
                    Err(CallError::Rejected {
                        status: status.as_u16(),
                        body,
                    })
                }
            }
            Reading::ReadBack(check) => {
                let body = read_body_prefix(response).await;
                match self.observe(check, m).await? {
                    Seen::InTarget(seen) => Ok(Settled {
                        applied: Applied::AlreadyDone,
                        seen: Some(format!("HTTP {}, read back: {seen}", status.as_u16())),
                    }),
                    Seen::MissingTarget { kind, id } => Err(CallError::MissingTarget { kind, id }),
                    seen @ (Seen::NotInTarget(_) | Seen::CannotTell(_)) => {
                        Err(CallError::Rejected {
                            status: status.as_u16(),
                            body: format!("{body} (read back: {seen})"),
                        })
                    }
                }
            }
        }
    }

    async fn send_request(
        &self,
        endpoint: &'static str,
        plan: Request,
    ) -> Result<Response, CallError> {
        let mut request = self.request(plan.family, plan.method, plan.url)?;
        if plan.servicedesk_api {
            let (name, value) = EXPERIMENTAL_API;
            request = request.header(name, value);
        }
        if let Some(body) = &plan.body {
            request = request.json(body);
        }
        self.send(plan.family, endpoint, request).await
    }

    fn request_for(&self, m: &Mutation) -> Result<Request, CallError> {
        use ApiFamily::Admin;
        Ok(match m {
            Mutation::RevokePortalAccess { account_id } => {
                let path = ["rest", "servicedeskapi", "customer", "user", account_id];
                let url =
                    self.site_endpoint(&[&path[..], &["revoke-portal-only-access"]].concat())?;
                Request {
                    servicedesk_api: true,
                    ..Request::new(ApiFamily::Site, Method::PUT, url)
                }
            }
            Mutation::DeletePortalCustomer { account_id } => {
                let mut url = self.site_endpoint(&["rest", "api", "3", "user"])?;
                url.query_pairs_mut().append_pair("accountId", account_id);
                Request::new(ApiFamily::Site, Method::DELETE, url)
            }
            // A desk's customers and an organization's users: DELETE removes, POST adds.
            Mutation::RemoveFromServiceDesk {
                service_desk_id,
                account_id,
                ..
            } => Request::servicedesk(
                Method::DELETE,
                self.desk_customers(service_desk_id)?,
                account_id,
            ),
            Mutation::AddToServiceDesk {
                service_desk_id,
                account_id,
            } => Request::servicedesk(
                Method::POST,
                self.desk_customers(service_desk_id)?,
                account_id,
            ),
            Mutation::RemoveFromCustomerOrganization {
                organization_id,
                account_id,
            } => Request::servicedesk(
                Method::DELETE,
                self.organization_users(organization_id)?,
                account_id,
            ),
            Mutation::AddToCustomerOrganization {
                organization_id,
                account_id,
            } => Request::servicedesk(
                Method::POST,
                self.organization_users(organization_id)?,
                account_id,
            ),
            // A bodyless POST here is refused with 415 by at least one public report, and an
            // empty object is what working scripts send.
            Mutation::SuspendAccess { account_id } => {
                let url = self.directory_endpoint(&["users", account_id, "suspend"])?;
                Request::with_body(Admin, Method::POST, url, json!({}))
            }
            Mutation::RestoreAccess { account_id } => {
                let url = self.directory_endpoint(&["users", account_id, "restore"])?;
                Request::with_body(Admin, Method::POST, url, json!({}))
            }
            Mutation::RemoveFromDirectory { account_id } => {
                let url = self.directory_endpoint(&["users", account_id])?;
                Request::new(Admin, Method::DELETE, url)
            }
            Mutation::RemoveFromGroup {
                group_id,
                account_id,
            } => {
                let path = ["groups", group_id, "memberships", account_id];
                Request::new(Admin, Method::DELETE, self.directory_endpoint(&path)?)
            }
            // The documented body: an optional message, shown with the deactivation.
            Mutation::DeactivateAccount {
                account_id,
                message,
            } => {
                let body = json!({ "message": message });
                let url = self.lifecycle(account_id, "disable")?;
                Request::with_body(Admin, Method::POST, url, body)
            }
            Mutation::DeleteAccount { account_id } => {
                Request::new(Admin, Method::POST, self.lifecycle(account_id, "delete")?)
            }
            Mutation::EnableAccount { account_id } => {
                Request::new(Admin, Method::POST, self.lifecycle(account_id, "enable")?)
            }
            Mutation::CancelDeleteAccount { account_id } => {
                let url = self.lifecycle(account_id, "cancel-delete")?;
                Request::new(Admin, Method::POST, url)
            }
            Mutation::AddToGroup {
                group_id,
                account_id,
            } => {
                let url = self.directory_endpoint(&["groups", group_id, "memberships"])?;
                Request::with_body(Admin, Method::POST, url, json!({ "accountId": account_id }))
            }
        })
    }

    /// A service desk's customers.
    fn desk_customers(&self, service_desk_id: &str) -> Result<Url, CallError> {
        self.site_endpoint(&[
            "rest",
            "servicedeskapi",
            "servicedesk",
            service_desk_id,
            "customer",
        ])
    }

    /// A customer organization's users.
    fn organization_users(&self, organization_id: &str) -> Result<Url, CallError> {
        self.site_endpoint(&[
            "rest",
            "servicedeskapi",
            "organization",
            organization_id,
            "user",
        ])
    }

    /// A managed account's lifecycle call (`disable`, `enable`, `delete`, `cancel-delete`).
    fn lifecycle(&self, account_id: &str, call: &str) -> Result<Url, CallError> {
        self.admin_endpoint(&["users", account_id, "manage", "lifecycle", call])
    }
}

/// The group 409 code for "already a member", measured live (reference, add_to_group).
const ALREADY_A_MEMBER: &str = "ADMIN-UAM-409-2";

/// The one table: what each answer of each call means. A status a call does not list is
/// `Refused`.
fn reading(m: &Mutation, status: StatusCode) -> Reading {
    use Check::*;
    use Reading::*;
    if status.is_success() {
        return Done;
    }
    let answers: &[(u16, Reading)] = match m {
        // 400 "invalid account id" (current spec) or 404 (older); a repeat is undocumented.
        Mutation::RevokePortalAccess { .. } => &[
            (400, ReadBack(PortalAccessGone)),
            (404, ReadBack(PortalAccessGone)),
        ],
        // 404 "user not found" is its one meaning; 400 "user cannot be removed" is permanent.
        Mutation::DeletePortalCustomer { .. } => &[(404, AlreadyDone)],
        // Non-members answer 204 like members: membership is read first (`checked_first`),
        // so a 404 here is the desk or organization missing.
        Mutation::RemoveFromServiceDesk { .. }
        | Mutation::RemoveFromCustomerOrganization { .. }
        | Mutation::AddToServiceDesk { .. }
        | Mutation::AddToCustomerOrganization { .. } => &[(404, MissingTarget)],
        // 404 "user not found" in this directory: read whether it is a member at all. A 409
        // (a repeat, possibly) is read back.
        Mutation::SuspendAccess { .. } => &[
            (404, ReadBack(NotInDirectory)),
            (409, ReadBack(MembershipSuspended)),
        ],
        // An account not in the directory cannot be given access back: a 404 fails.
        Mutation::RestoreAccess { .. } => &[(409, ReadBack(MembershipActive))],
        Mutation::RemoveFromDirectory { .. } => &[
            (404, ReadBack(NotInDirectory)),
            (409, ReadBack(NotInDirectory)),
        ],
        // 404 = "organization, directory, group, or user not found".
        Mutation::RemoveFromGroup { .. } => &[(404, ReadBack(NotInGroup))],
        Mutation::AddToGroup { .. } => &[
            (404, MissingTargetIfAbsent),
            (409, AlreadyDoneIfCode(ALREADY_A_MEMBER)),
        ],
        // 409 "not eligible" is also what a repeat answers; 404 "no such account".
        Mutation::DeactivateAccount { .. } => &[
            (404, ReadBack(AccountGone)),
            (409, ReadBack(AccountInactive)),
        ],
        Mutation::DeleteAccount { .. } => &[
            (404, ReadBack(AccountGone)),
            (409, ReadBack(AccountDeleted)),
        ],
        // Giving back: a 404 is never done, the account is not there to be given anything.
        Mutation::EnableAccount { .. } => &[(409, ReadBack(AccountActive))],
        Mutation::CancelDeleteAccount { .. } => &[(409, ReadBack(AccountNotScheduled))],
    };
    answers
        .iter()
        .find(|(code, _)| *code == status.as_u16())
        .map_or(Refused, |(_, reading)| *reading)
}

/// The calls whose success does not say the person was a member: membership is read first,
/// and a non-member's step is `already_done` without the call, so that an undo never gives
/// what the person did not have.
fn checked_first(m: &Mutation) -> Option<Check> {
    match m {
        Mutation::RemoveFromServiceDesk { .. } => Some(Check::NotOnDesk),
        Mutation::RemoveFromCustomerOrganization { .. } => Some(Check::NotInOrganization),
        Mutation::RevokePortalAccess { .. }
        | Mutation::DeletePortalCustomer { .. }
        | Mutation::SuspendAccess { .. }
        | Mutation::RestoreAccess { .. }
        | Mutation::RemoveFromDirectory { .. }
        | Mutation::RemoveFromGroup { .. }
        | Mutation::DeactivateAccount { .. }
        | Mutation::DeleteAccount { .. }
        | Mutation::EnableAccount { .. }
        | Mutation::CancelDeleteAccount { .. }
        | Mutation::AddToGroup { .. }
        | Mutation::AddToServiceDesk { .. }
        | Mutation::AddToCustomerOrganization { .. } => None,
    }
}

/// What shows that a step of this call still holds, read when a chain has ended and again
/// at its recheck (README, "Proof for auditors"): the same read-backs as the step's own
/// settling. The calls that give something back are never verified.
pub(super) fn verification_check(m: &Mutation) -> Option<Check> {
    match m {
        Mutation::RevokePortalAccess { .. } => Some(Check::PortalAccessGone),
        Mutation::DeletePortalCustomer { .. } => Some(Check::CustomerDeleted),
        Mutation::RemoveFromServiceDesk { .. } => Some(Check::NotOnDesk),
        Mutation::RemoveFromCustomerOrganization { .. } => Some(Check::NotInOrganization),
        Mutation::SuspendAccess { .. } => Some(Check::MembershipSuspended),
        Mutation::RemoveFromDirectory { .. } => Some(Check::NotInDirectory),
        Mutation::RemoveFromGroup { .. } => Some(Check::NotInGroup),
        Mutation::DeactivateAccount { .. } => Some(Check::AccountInactive),
        Mutation::DeleteAccount { .. } => Some(Check::AccountDeleted),
        Mutation::RestoreAccess { .. }
        | Mutation::EnableAccount { .. }
        | Mutation::CancelDeleteAccount { .. }
        | Mutation::AddToGroup { .. }
        | Mutation::AddToServiceDesk { .. }
        | Mutation::AddToCustomerOrganization { .. } => None,
    }
}

/// Ids that the URL parser would rewrite must not reach the wire: the call would hit a
/// different resource. Nothing was sent, but the mutation can never succeed as given.
fn refuse_unsendable_ids(m: &Mutation) -> Result<(), CallError> {
    match m.ids().into_iter().find(|id| !is_sendable_id(id)) {
        None => Ok(()),
        Some(id) => Err(CallError::unsendable(id)),
    }
}

/// The `errors[].code` values of an Atlassian admin error body.
fn error_codes(body: &str) -> Vec<String> {
    let Ok(value) = serde_json::from_str::<Value>(body) else {
        return Vec::new();
    };
    value["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["code"].as_str().map(str::to_owned))
        .collect()
}
