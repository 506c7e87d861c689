//! The vocabulary of offboarding actions: every action ([`Action::ALL`]: ten that offboard,
//! five that give back on a rehire), the API family each calls, and the kind of account
//! each may touch.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Which Atlassian credentials and host an action uses; each has its own token bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiFamily {
    /// `site_url`, HTTP Basic.
    Site,
    /// `admin_url`, Bearer org API key.
    Admin,
}

impl ApiFamily {
    /// Its name in messages, metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ApiFamily::Site => "site",
            ApiFamily::Admin => "admin",
        }
    }
}

/// The kind of Atlassian account an action may touch (the account-type guard).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetAccount {
    /// JSM portal-only customers (`accountType = customer`).
    Customer,
    /// Managed accounts (`accountType = atlassian`).
    Managed,
}

/// The actions: ten that offboard (README, "Which account a job acts on") and five that give
/// back what they took (README, "Undo on rehire").
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    RevokePortalAccess,
    DeletePortalCustomer,
    RemoveFromServiceDesk,
    RemoveFromCustomerOrganization,
    SuspendAccess,
    RestoreAccess,
    RemoveFromDirectory,
    RemoveFromGroup,
    DeactivateAccount,
    DeleteAccount,
    EnableAccount,
    CancelDeleteAccount,
    AddToGroup,
    AddToServiceDesk,
    AddToCustomerOrganization,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Action::RevokePortalAccess,
        Action::DeletePortalCustomer,
        Action::RemoveFromServiceDesk,
        Action::RemoveFromCustomerOrganization,
        Action::SuspendAccess,
        Action::RestoreAccess,
        Action::RemoveFromDirectory,
        Action::RemoveFromGroup,
        Action::DeactivateAccount,
        Action::DeleteAccount,
        Action::EnableAccount,
        Action::CancelDeleteAccount,
        Action::AddToGroup,
        Action::AddToServiceDesk,
        Action::AddToCustomerOrganization,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::RevokePortalAccess => "revoke_portal_access",
            Action::DeletePortalCustomer => "delete_portal_customer",
            Action::RemoveFromServiceDesk => "remove_from_service_desk",
            Action::RemoveFromCustomerOrganization => "remove_from_customer_organization",
            Action::SuspendAccess => "suspend_access",
            Action::RestoreAccess => "restore_access",
            Action::RemoveFromDirectory => "remove_from_directory",
            Action::RemoveFromGroup => "remove_from_group",
            Action::DeactivateAccount => "deactivate_account",
            Action::DeleteAccount => "delete_account",
            Action::EnableAccount => "enable_account",
            Action::CancelDeleteAccount => "cancel_delete_account",
            Action::AddToGroup => "add_to_group",
            Action::AddToServiceDesk => "add_to_service_desk",
            Action::AddToCustomerOrganization => "add_to_customer_organization",
        }
    }

    /// The account type this action may touch.
    pub fn target(self) -> TargetAccount {
        match self {
            Action::RevokePortalAccess
            | Action::DeletePortalCustomer
            | Action::RemoveFromServiceDesk
            | Action::RemoveFromCustomerOrganization
            | Action::AddToServiceDesk
            | Action::AddToCustomerOrganization => TargetAccount::Customer,
            Action::SuspendAccess
            | Action::RestoreAccess
            | Action::RemoveFromDirectory
            | Action::RemoveFromGroup
            | Action::DeactivateAccount
            | Action::DeleteAccount
            | Action::EnableAccount
            | Action::CancelDeleteAccount
            | Action::AddToGroup => TargetAccount::Managed,
        }
    }

    /// Whether the action's call writes to the org directory (`…/directories/{directoryId}/…`),
    /// where `directory_id = "-"` ("all directories") is documented for reads only.
    pub fn writes_directory(self) -> bool {
        match self {
            Action::SuspendAccess
            | Action::RestoreAccess
            | Action::RemoveFromDirectory
            | Action::RemoveFromGroup
            | Action::AddToGroup => true,
            // The lifecycle calls act on the account, not on a directory.
            Action::DeactivateAccount
            | Action::DeleteAccount
            | Action::EnableAccount
            | Action::CancelDeleteAccount => false,
            Action::RevokePortalAccess
            | Action::DeletePortalCustomer
            | Action::RemoveFromServiceDesk
            | Action::RemoveFromCustomerOrganization
            | Action::AddToServiceDesk
            | Action::AddToCustomerOrganization => false,
        }
    }

    /// The API family of the mutating call.
    pub fn family(self) -> ApiFamily {
        match self.target() {
            TargetAccount::Customer => ApiFamily::Site,
            TargetAccount::Managed => ApiFamily::Admin,
        }
    }

    /// A parameter's value as it is stored: a non-empty string, or an integer written out
    /// (TOML and JSON senders write ids either way). Anything else is no value.
    pub fn param_text(value: &serde_json::Value) -> Option<String> {
        if let Some(text) = value.as_str() {
            return (!text.is_empty()).then(|| text.to_owned());
        }
        value
            .as_number()
            .filter(|number| number.is_i64() || number.is_u64())
            .map(|number| number.to_string())
    }

    /// The one parameter an action needs besides the account, if any.
    pub fn required_param(self) -> Option<&'static str> {
        match self {
            Action::RemoveFromServiceDesk | Action::AddToServiceDesk => Some("service_desk_id"),
            Action::RemoveFromCustomerOrganization | Action::AddToCustomerOrganization => {
                Some("organization_id")
            }
            Action::RemoveFromGroup | Action::AddToGroup => Some("group_id"),
            Action::RevokePortalAccess
            | Action::DeletePortalCustomer
            | Action::SuspendAccess
            | Action::RestoreAccess
            | Action::RemoveFromDirectory
            | Action::DeactivateAccount
            | Action::DeleteAccount
            | Action::EnableAccount
            | Action::CancelDeleteAccount => None,
        }
    }

    /// The target of a job of this action with these parameters: with the action and the
    /// email, the key of its one live job (README, "One live job per (action, email,
    /// target)"). It is the `group_id`, `service_desk_id` or `organization_id` of the actions
    /// that take one, written as it is stored (`param_text`), so that removing a person from
    /// two groups makes two jobs; empty for every other action. The stores bind it as the
    /// `target` column; nothing else decides it.
    pub fn key_target(self, params: &serde_json::Map<String, serde_json::Value>) -> String {
        self.required_param()
            .and_then(|name| params.get(name))
            .and_then(Action::param_text)
            .unwrap_or_default()
    }
}

/// How long after a step succeeded its inverse can still give back what it took
/// (README, "Undo on rehire").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UndoWindow {
    Always,
    /// Atlassian keeps a deleted managed account for 14 days; cancel-delete works until then.
    Days(i64),
}

impl Action {
    /// The action that gives back what this one took, with the window it has, if there is
    /// one. Inverses have no inverse of their own: an undo is never undone.
    pub fn inverse(self) -> Option<(Action, UndoWindow)> {
        Some(match self {
            Action::SuspendAccess => (Action::RestoreAccess, UndoWindow::Always),
            Action::DeactivateAccount => (Action::EnableAccount, UndoWindow::Always),
            Action::DeleteAccount => (Action::CancelDeleteAccount, UndoWindow::Days(14)),
            Action::RemoveFromGroup => (Action::AddToGroup, UndoWindow::Always),
            Action::RemoveFromServiceDesk => (Action::AddToServiceDesk, UndoWindow::Always),
            Action::RemoveFromCustomerOrganization => {
                (Action::AddToCustomerOrganization, UndoWindow::Always)
            }
            // Irreversible by nature (`irreversible_because`), or an inverse already.
            Action::RevokePortalAccess
            | Action::DeletePortalCustomer
            | Action::RemoveFromDirectory
            | Action::RestoreAccess
            | Action::EnableAccount
            | Action::CancelDeleteAccount
            | Action::AddToGroup
            | Action::AddToServiceDesk
            | Action::AddToCustomerOrganization => return None,
        })
    }

    /// Why a step of this action cannot be undone, where that is so by its nature.
    pub fn irreversible_because(self) -> Option<&'static str> {
        match self {
            Action::DeletePortalCustomer => {
                Some("a deleted portal-only customer cannot be restored")
            }
            Action::RemoveFromDirectory => Some(
                "a re-invite exists (POST /admin/v2/orgs/{orgId}/users/invite, paid plans), \
                 but the directory's groups and roles are lost: invite and re-assign by hand",
            ),
            Action::RevokePortalAccess => {
                Some("no API restores portal access: grant it again in the admin UI")
            }
            Action::RemoveFromServiceDesk
            | Action::RemoveFromCustomerOrganization
            | Action::SuspendAccess
            | Action::RestoreAccess
            | Action::RemoveFromGroup
            | Action::DeactivateAccount
            | Action::DeleteAccount
            | Action::EnableAccount
            | Action::CancelDeleteAccount
            | Action::AddToGroup
            | Action::AddToServiceDesk
            | Action::AddToCustomerOrganization => None,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
                format!(
                    "unknown action `{s}` (expected one of: {})",
                    known.join(", ")
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>().unwrap(), action);
            assert_eq!(
                serde_json::to_value(action).unwrap(),
                serde_json::json!(action.as_str())
            );
        }
        assert!("delete".parse::<Action>().is_err());
    }

    #[test]
    fn the_key_target_is_the_id_of_the_actions_that_take_one() {
        let params = |value: serde_json::Value| value.as_object().cloned().unwrap();
        let group = params(serde_json::json!({ "group_id": "g-1" }));
        assert_eq!(Action::RemoveFromGroup.key_target(&group), "g-1");
        assert_eq!(Action::AddToGroup.key_target(&group), "g-1");
        let desk = params(serde_json::json!({ "service_desk_id": 10 }));
        assert_eq!(Action::RemoveFromServiceDesk.key_target(&desk), "10");
        let organization = params(serde_json::json!({ "organization_id": "3" }));
        assert_eq!(
            Action::AddToCustomerOrganization.key_target(&organization),
            "3"
        );
        // Another action's parameter is not its target, and actions without one have none.
        assert_eq!(Action::RemoveFromServiceDesk.key_target(&group), "");
        assert_eq!(Action::SuspendAccess.key_target(&group), "");
        assert_eq!(
            Action::DeleteAccount.key_target(&params(serde_json::json!({}))),
            ""
        );
    }

    #[test]
    fn customer_actions_use_the_site_family() {
        assert_eq!(Action::DeletePortalCustomer.family(), ApiFamily::Site);
        assert_eq!(Action::DeleteAccount.family(), ApiFamily::Admin);
        assert_eq!(Action::SuspendAccess.target(), TargetAccount::Managed);
    }

    #[test]
    fn only_directory_calls_write_to_the_directory() {
        let writers: Vec<Action> = Action::ALL
            .into_iter()
            .filter(|action| action.writes_directory())
            .collect();
        assert_eq!(
            writers,
            [
                Action::SuspendAccess,
                Action::RestoreAccess,
                Action::RemoveFromDirectory,
                Action::RemoveFromGroup,
                Action::AddToGroup,
            ]
        );
        // Every writer is a managed action, and so is its inverse.
        for action in writers {
            assert_eq!(action.target(), TargetAccount::Managed);
            if let Some((inverse, _)) = action.inverse() {
                assert!(inverse.writes_directory(), "{inverse}");
            }
        }
    }
}
