//! The ten mutating calls: what each sends, and what each one's answers mean.

use reqwest::{Method, Response, StatusCode, Url};
use serde::Serialize;
use serde_json::{Value, json};

use super::client::{Client, is_sendable_id};
use super::error::ApiError;
use crate::jobs::ApiFamily;

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
    },
    DeleteAccount {
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
        }
    }

    /// Customer mutations go to the site with Basic auth, managed ones to the admin API.
    pub fn family(&self) -> ApiFamily {
        match self {
            Mutation::RevokePortalAccess { .. }
            | Mutation::DeletePortalCustomer { .. }
            | Mutation::RemoveFromServiceDesk { .. }
            | Mutation::RemoveFromCustomerOrganization { .. } => ApiFamily::Site,
            Mutation::SuspendAccess { .. }
            | Mutation::RestoreAccess { .. }
            | Mutation::RemoveFromDirectory { .. }
            | Mutation::RemoveFromGroup { .. }
            | Mutation::DeactivateAccount { .. }
            | Mutation::DeleteAccount { .. } => ApiFamily::Admin,
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
            } => vec![other, account_id],
            Mutation::RevokePortalAccess { account_id }
            | Mutation::DeletePortalCustomer { account_id }
            | Mutation::SuspendAccess { account_id }
            | Mutation::RestoreAccess { account_id }
            | Mutation::RemoveFromDirectory { account_id }
            | Mutation::DeactivateAccount { account_id }
            | Mutation::DeleteAccount { account_id } => vec![account_id],
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
struct Plan {
    family: ApiFamily,
    method: Method,
    url: Url,
    body: Option<Value>,
    /// JSM endpoints may want `X-ExperimentalApi: opt-in`; sending it elsewhere is harmless,
    /// but it is kept to the endpoints that asked for it.
    servicedesk_api: bool,
}

impl Plan {
    fn new(family: ApiFamily, method: Method, url: Url) -> Plan {
        Plan {
            family,
            method,
            url,
            body: None,
            servicedesk_api: false,
        }
    }

    fn servicedesk(method: Method, url: Url, account_id: &str) -> Plan {
        Plan {
            body: Some(json!({ "accountIds": [account_id] })),
            servicedesk_api: true,
            ..Plan::new(ApiFamily::Site, method, url)
        }
    }
}

impl Client {
    /// The request `apply` would send. A mutation with an id that `apply` refuses to send is
    /// described as the URL parser makes it; `apply` then fails it as `Rejected`.
    pub fn describe(&self, m: &Mutation) -> PlannedRequest {
        let plan = self.plan(m);
        PlannedRequest {
            method: plan.method.to_string(),
            url: plan.url.to_string(),
            body: plan.body,
        }
    }

    pub async fn apply(&self, m: &Mutation) -> Result<Applied, ApiError> {
        refuse_unsendable_ids(m)?;
        let response = self.send_plan(m.endpoint(), self.plan(m)).await?;
        match m {
            Mutation::RevokePortalAccess { .. } => revoke_portal_access(response).await,
            Mutation::DeletePortalCustomer { .. } => delete_portal_customer(response).await,
            Mutation::RemoveFromServiceDesk { .. } => remove_from_service_desk(response).await,
            Mutation::RemoveFromCustomerOrganization { .. } => {
                remove_from_customer_organization(response).await
            }
            Mutation::SuspendAccess { .. } => suspend_access(response).await,
            Mutation::RestoreAccess { .. } => restore_access(response).await,
            Mutation::RemoveFromDirectory { .. } => remove_from_directory(response).await,
            Mutation::RemoveFromGroup { .. } => remove_from_group(response).await,
            Mutation::DeactivateAccount { .. } => deactivate_account(response).await,
            Mutation::DeleteAccount { .. } => delete_account(response).await,
        }
    }

    async fn send_plan(&self, endpoint: &'static str, plan: Plan) -> Result<Response, ApiError> {
        let mut request = self.request(plan.family, plan.method, plan.url);
        if plan.servicedesk_api {
            request = request.header("X-ExperimentalApi", "opt-in");
        }
        if let Some(body) = &plan.body {
            request = request.json(body);
        }
        self.send(plan.family, endpoint, request).await
    }

    fn plan(&self, m: &Mutation) -> Plan {
        use ApiFamily::Admin;
        match m {
            Mutation::RevokePortalAccess { account_id } => {
                let path = ["rest", "servicedeskapi", "customer", "user", account_id];
                let url = self.site_endpoint(&[&path[..], &["revoke-portal-only-access"]].concat());
                Plan {
                    servicedesk_api: true,
                    ..Plan::new(ApiFamily::Site, Method::PUT, url)
                }
            }
            Mutation::DeletePortalCustomer { account_id } => {
                let mut url = self.site_endpoint(&["rest", "api", "3", "user"]);
                url.query_pairs_mut().append_pair("accountId", account_id);
                Plan::new(ApiFamily::Site, Method::DELETE, url)
            }
            Mutation::RemoveFromServiceDesk {
                service_desk_id,
                account_id,
            } => {
                let path = ["rest", "servicedeskapi", "servicedesk", service_desk_id];
                let url = self.site_endpoint(&[&path[..], &["customer"]].concat());
                Plan::servicedesk(Method::DELETE, url, account_id)
            }
            Mutation::RemoveFromCustomerOrganization {
                organization_id,
                account_id,
            } => {
                let path = ["rest", "servicedeskapi", "organization", organization_id];
                let url = self.site_endpoint(&[&path[..], &["user"]].concat());
                Plan::servicedesk(Method::DELETE, url, account_id)
            }
            Mutation::SuspendAccess { account_id } => {
                let url = self.directory_endpoint(&["users", account_id, "suspend"]);
                Plan::new(Admin, Method::POST, url)
            }
            Mutation::RestoreAccess { account_id } => {
                let url = self.directory_endpoint(&["users", account_id, "restore"]);
                Plan::new(Admin, Method::POST, url)
            }
            Mutation::RemoveFromDirectory { account_id } => {
                let url = self.directory_endpoint(&["users", account_id]);
                Plan::new(Admin, Method::DELETE, url)
            }
            Mutation::RemoveFromGroup {
                group_id,
                account_id,
            } => {
                let path = ["groups", group_id, "memberships", account_id];
                Plan::new(Admin, Method::DELETE, self.directory_endpoint(&path))
            }
            Mutation::DeactivateAccount { account_id } => {
                let path = ["users", account_id, "manage", "lifecycle", "disable"];
                Plan::new(Admin, Method::POST, self.admin_endpoint(&path))
            }
            Mutation::DeleteAccount { account_id } => {
                let path = ["users", account_id, "manage", "lifecycle", "delete"];
                Plan::new(Admin, Method::POST, self.admin_endpoint(&path))
            }
        }
    }
}

/// Ids that the URL parser would rewrite must not reach the wire: the call would hit a
/// different resource. Nothing was sent, but the mutation can never succeed as given.
fn refuse_unsendable_ids(m: &Mutation) -> Result<(), ApiError> {
    match m.ids().into_iter().find(|id| !is_sendable_id(id)) {
        None => Ok(()),
        Some(id) => Err(ApiError::Rejected {
            status: StatusCode::BAD_REQUEST.as_u16(),
            body: format!("not sent: the id {id:?} cannot be used in a URL"),
        }),
    }
}

/// Revoke portal-only access: 404 "account ID is invalid". What a repeat returns is
/// unconfirmed, so a missing account counts as already revoked.
async fn revoke_portal_access(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Delete user: 404 is "user not found", i.e. already deleted. 400 "user cannot be removed"
/// is permanent and falls to the shared rules.
async fn delete_portal_customer(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Remove customers from a service desk: 204 even when the customer was not on it, and 404
/// means the desk is missing. The desk id comes from our rules, so that is a mistake to
/// report, not a job that is done.
async fn remove_from_service_desk(response: Response) -> Result<Applied, ApiError> {
    only_success_is_done(response).await
}

/// Remove users from an organization: the codes are unconfirmed and the organization id is
/// ours, so a 404 is read like the service desk's: the organization is missing.
async fn remove_from_customer_organization(response: Response) -> Result<Applied, ApiError> {
    only_success_is_done(response).await
}

/// Directory suspend: 404 means the account is gone from the directory.
async fn suspend_access(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Directory restore: 404 means the account is gone, so there is nothing left to restore.
async fn restore_access(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Directory remove: 404 means the account already left the directory.
async fn remove_from_directory(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Group membership removal: 404 means the account, and with it the membership, is gone. A
/// 404 for a missing group cannot be told apart, and such a group has no member left anyway.
async fn remove_from_group(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Lifecycle disable: 404 means the account is gone.
async fn deactivate_account(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// Lifecycle delete: 404 means the account is gone. A repeat inside the 14-day grace period
/// is unconfirmed; if it answers 404, that too is an account already on its way out.
async fn delete_account(response: Response) -> Result<Applied, ApiError> {
    not_found_is_already_done(response).await
}

/// 2xx: done; 404: the account is already gone; anything else is permanent.
async fn not_found_is_already_done(response: Response) -> Result<Applied, ApiError> {
    match response.status() {
        status if status.is_success() => Ok(Applied::Done),
        StatusCode::NOT_FOUND => Ok(Applied::AlreadyDone),
        _ => Err(ApiError::rejected(response).await),
    }
}

/// 2xx: done; anything else, 404 included, is permanent.
async fn only_success_is_done(response: Response) -> Result<Applied, ApiError> {
    if response.status().is_success() {
        Ok(Applied::Done)
    } else {
        Err(ApiError::rejected(response).await)
    }
}
