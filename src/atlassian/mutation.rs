//! The mutating calls, ten that offboard and five that give back (README, "Undo on
//! rehire"): what each sends, and what each one's answers mean.
//!
//! Just over 600 lines, as one concept: every call is the same three parts (its request,
//! its family, how its answers read), and keeping them side by side is what makes a wrong
//! reading of a 404 or a 409 visible.

use reqwest::{Method, Response, StatusCode, Url};
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{Client, EXPERIMENTAL_API, is_sendable_id};
use super::error::{CallError, read_body_prefix};
use super::lookup::Account;
use crate::domain::ApiFamily;

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
    /// The endpoint's name in metrics: the action it carries out.
    pub fn endpoint(&self) -> &'static str {
        match self {
            Mutation::RevokePortalAccess { .. } => "revoke_portal_access",
            Mutation::DeletePortalCustomer { .. } => "delete_portal_customer",
            Mutation::RemoveFromServiceDesk { .. } => "remove_from_service_desk",
            Mutation::RemoveFromCustomerOrganization { .. } => "remove_from_customer_organization",
            Mutation::SuspendAccess { .. } => "suspend_access",
            Mutation::RestoreAccess { .. } => "restore_access",
            Mutation::RemoveFromDirectory { .. } => "remove_from_directory",
            Mutation::RemoveFromGroup { .. } => "remove_from_group",
            Mutation::DeactivateAccount { .. } => "deactivate_account",
            Mutation::DeleteAccount { .. } => "delete_account",
            Mutation::EnableAccount { .. } => "enable_account",
            Mutation::CancelDeleteAccount { .. } => "cancel_delete_account",
            Mutation::AddToGroup { .. } => "add_to_group",
            Mutation::AddToServiceDesk { .. } => "add_to_service_desk",
            Mutation::AddToCustomerOrganization { .. } => "add_to_customer_organization",
        }
    }

    /// Customer mutations go to the site with Basic auth, managed ones to the admin API.
    pub fn family(&self) -> ApiFamily {
        match self {
            Mutation::RevokePortalAccess { .. }
            | Mutation::DeletePortalCustomer { .. }
            | Mutation::RemoveFromServiceDesk { .. }
            | Mutation::RemoveFromCustomerOrganization { .. }
            | Mutation::AddToServiceDesk { .. }
            | Mutation::AddToCustomerOrganization { .. } => ApiFamily::Site,
            Mutation::SuspendAccess { .. }
            | Mutation::RestoreAccess { .. }
            | Mutation::RemoveFromDirectory { .. }
            | Mutation::RemoveFromGroup { .. }
            | Mutation::DeactivateAccount { .. }
            | Mutation::DeleteAccount { .. }
            | Mutation::EnableAccount { .. }
            | Mutation::CancelDeleteAccount { .. }
            | Mutation::AddToGroup { .. } => ApiFamily::Admin,
        }
    }

    /// How a membership call changes its list: the additions give back what removals took.
    fn membership_method(&self) -> Method {
        match self {
            Mutation::AddToServiceDesk { .. } | Mutation::AddToCustomerOrganization { .. } => {
                Method::POST
            }
            _ => Method::DELETE,
        }
    }

    /// Every id this mutation puts into its URL.
    fn ids(&self) -> Vec<&str> {
        match self {
            Mutation::RemoveFromServiceDesk {
                service_desk_id: other,
                account_id,
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
        refuse_unsendable_ids(m)?;
        let response = self
            .send_request(m.endpoint(), self.request_for(m)?)
            .await?;
        match m {
            Mutation::RevokePortalAccess { .. } => revoke_portal_access(response).await,
            Mutation::DeletePortalCustomer { .. } => delete_portal_customer(response).await,
            Mutation::RemoveFromServiceDesk {
                service_desk_id, ..
            } => remove_from_service_desk(response, service_desk_id).await,
            Mutation::RemoveFromCustomerOrganization {
                organization_id, ..
            } => remove_from_customer_organization(response, organization_id).await,
            Mutation::SuspendAccess { account_id } => {
                suspend_access(self, response, account_id).await
            }
            Mutation::RestoreAccess { account_id } => {
                restore_access(self, response, account_id).await
            }
            Mutation::RemoveFromDirectory { account_id } => {
                remove_from_directory(self, response, account_id).await
            }
            Mutation::RemoveFromGroup { group_id, .. } => {
                remove_from_group(self, response, group_id).await
            }
            Mutation::DeactivateAccount { account_id, .. } => {
                deactivate_account(self, response, account_id).await
            }
            Mutation::DeleteAccount { account_id } => {
                delete_account(self, response, account_id).await
            }
            Mutation::EnableAccount { account_id }
            | Mutation::CancelDeleteAccount { account_id } => {
                activate_account(self, response, account_id).await
            }
            Mutation::AddToGroup { group_id, .. } => add_to_group(self, response, group_id).await,
            Mutation::AddToServiceDesk {
                service_desk_id, ..
            } => not_found_is_a_missing_target(response, "service_desk", service_desk_id).await,
            Mutation::AddToCustomerOrganization {
                organization_id, ..
            } => not_found_is_a_missing_target(response, "organization", organization_id).await,
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
            }
            | Mutation::AddToServiceDesk {
                service_desk_id,
                account_id,
            } => Request::servicedesk(
                m.membership_method(),
                self.desk_customers(service_desk_id)?,
                account_id,
            ),
            Mutation::RemoveFromCustomerOrganization {
                organization_id,
                account_id,
            }
            | Mutation::AddToCustomerOrganization {
                organization_id,
                account_id,
            } => Request::servicedesk(
                m.membership_method(),
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

/// Ids that the URL parser would rewrite must not reach the wire: the call would hit a
/// different resource. Nothing was sent, but the mutation can never succeed as given.
fn refuse_unsendable_ids(m: &Mutation) -> Result<(), CallError> {
    match m.ids().into_iter().find(|id| !is_sendable_id(id)) {
        None => Ok(()),
        Some(id) => Err(CallError::unsendable(id)),
    }
}

/// Revoke portal-only access: 404 "account ID is invalid". What a repeat returns is
/// unconfirmed, so a missing account counts as already revoked.
async fn revoke_portal_access(response: Response) -> Result<Applied, CallError> {
    not_found_is_already_done(response).await
}

/// Delete user: 404 is "user not found", i.e. already deleted. 400 "user cannot be removed"
/// is permanent and falls to the shared rules.
async fn delete_portal_customer(response: Response) -> Result<Applied, CallError> {
    not_found_is_already_done(response).await
}

/// Remove customers from a service desk: 204 even when the customer was not on it, so a 404
/// means the desk is missing. The desk id comes from our rules: a mistake to report.
async fn remove_from_service_desk(response: Response, desk: &str) -> Result<Applied, CallError> {
    not_found_is_a_missing_target(response, "service_desk", desk).await
}

/// Remove users from an organization: 404 means the organization is missing, and the id is
/// ours. Whether a non-member answers 204 or 400 is unconfirmed; a 400 stays a failure
/// with its body, never a success we cannot vouch for.
async fn remove_from_customer_organization(
    response: Response,
    organization: &str,
) -> Result<Applied, CallError> {
    not_found_is_a_missing_target(response, "organization", organization).await
}

/// Directory suspend: 404 means the account is gone from the directory. A 409 (a repeat,
/// possibly) is read back: an account already suspended is already done.
async fn suspend_access(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    let in_target = |a: &Account| {
        a.directory_status.as_deref() == Some("suspended")
            || a.membership_status.as_deref() == Some("suspended")
    };
    lifecycle_answer(client, response, account_id, in_target, false).await
}

/// Directory restore: 404 means the account is gone, so there is nothing left to restore. A
/// 409 is read back: an active account is already restored.
async fn restore_access(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    let in_target = |a: &Account| a.directory_status.as_deref() == Some("active");
    lifecycle_answer(client, response, account_id, in_target, false).await
}

/// Directory remove: 404 means the account already left the directory; so does a 409 whose
/// read-back no longer finds it.
async fn remove_from_directory(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    lifecycle_answer(client, response, account_id, |_| false, true).await
}

/// Group membership removal: a 404 is either "not a member" or "no such group", and only
/// the second is a mistake in our rules, so the group is read back to tell them apart.
async fn remove_from_group(
    client: &Client,
    response: Response,
    group_id: &str,
) -> Result<Applied, CallError> {
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::NOT_FOUND => match client.group_exists(group_id).await? {
            true => Ok(Applied::AlreadyDone),
            false => Err(CallError::MissingTarget {
                kind: "group",
                id: group_id.to_owned(),
            }),
        },
        _ => Err(CallError::rejected(response).await),
    }
}

/// Lifecycle disable: 404 means the account is gone. 409 "not eligible" is also what a
/// repeat answers, so the account is read back: already deactivated is already done.
async fn deactivate_account(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    let in_target = |a: &Account| {
        a.directory_status.as_deref() == Some("deactivated")
            || a.status.as_deref() == Some("inactive")
    };
    lifecycle_answer(client, response, account_id, in_target, false).await
}

/// Lifecycle delete: 200 with `{"message":"Success"}`; 404 means the account is gone. A 409
/// (a repeat inside the 14-day grace period, possibly) is read back: an account already
/// scheduled for deletion or closed, or no longer in the directory, is already done.
async fn delete_account(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    let in_target = |a: &Account| {
        a.directory_status.as_deref() == Some("for_deletion")
            || a.status.as_deref() == Some("closed")
    };
    lifecycle_answer(client, response, account_id, in_target, true).await
}

/// Lifecycle enable (204) and cancel-delete (200, within the 14 days of grace), the calls
/// that give an account back. A 409 "not eligible" is read back: an active account is
/// already given back (a deleted one needs cancel-delete before enable, and fails with the
/// body). Anything else, a 404 included, fails: an account that is gone cannot be given
/// anything back, so a 404 is never `already_done` here.
async fn activate_account(
    client: &Client,
    response: Response,
    account_id: &str,
) -> Result<Applied, CallError> {
    let active = |a: &Account| a.directory_status.as_deref() == Some("active");
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::CONFLICT => lifecycle_answer(client, response, account_id, active, false).await,
        _ => Err(CallError::rejected(response).await),
    }
}

/// Group membership add: 2xx. A 404 is "no such group" (a missing target) or an account not
/// in the group's directory (a failure): the group is read back to tell them apart. What a
/// repeat answers is unconfirmed; a 409 stays a failure with its body (an IdP-synced group
/// refuses too), never a success we cannot vouch for.
async fn add_to_group(
    client: &Client,
    response: Response,
    group_id: &str,
) -> Result<Applied, CallError> {
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::NOT_FOUND => match client.group_exists(group_id).await? {
            true => Err(CallError::rejected(response).await),
            false => Err(CallError::MissingTarget {
                kind: "group",
                id: group_id.to_owned(),
            }),
        },
        _ => Err(CallError::rejected(response).await),
    }
}

/// 2xx: done; 404: the account is already gone; 409: the account is read back from the
/// directory, and is already done only if it is in the target state (or, with
/// `gone_is_done`, no longer there). Anything else is permanent.
async fn lifecycle_answer(
    client: &Client,
    response: Response,
    account_id: &str,
    in_target: impl Fn(&Account) -> bool,
    gone_is_done: bool,
) -> Result<Applied, CallError> {
    if response.status() != StatusCode::CONFLICT {
        return not_found_is_already_done(response).await;
    }
    let status = response.status().as_u16();
    let body = read_body_prefix(response).await;
    match client.directory_user(account_id).await? {
        Some(account) if in_target(&account) => Ok(Applied::AlreadyDone),
        None if gone_is_done => Ok(Applied::AlreadyDone),
        found => {
            let now = found.map_or("not in the directory".to_owned(), |a| {
                format!(
                    "status {}, accountStatus {}",
                    a.directory_status.as_deref().unwrap_or("unknown"),
                    a.status.as_deref().unwrap_or("unknown")
                )
            });
            Err(CallError::Rejected {
                status,
                body: format!("{body} (read back: {now})"),
            })
        }
    }
}

/// 2xx: done; 404: the account is already gone; anything else is permanent.
async fn not_found_is_already_done(response: Response) -> Result<Applied, CallError> {
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::NOT_FOUND => Ok(Applied::AlreadyDone),
        _ => Err(CallError::rejected(response).await),
    }
}

/// 2xx: done; 404: the configured target (`kind`, `id`) does not exist; anything else is
/// permanent.
async fn not_found_is_a_missing_target(
    response: Response,
    kind: &'static str,
    id: &str,
) -> Result<Applied, CallError> {
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::NOT_FOUND => Err(CallError::MissingTarget {
            kind,
            id: id.to_owned(),
        }),
        _ => Err(CallError::rejected(response).await),
    }
}
