//! The vocabulary of offboarding actions: every action ([`Action::ALL`]: ten that offboard,
//! five that give back on a rehire), and one table, [`Action::spec`], of what each one is.
//!
//! The table is the one place a fact about an action is stated: the account kind it may
//! touch, the API family it calls, the parameter it takes, how it is undone, and from those
//! the checks `offboard doctor` runs for it. The mutations (`src/atlassian/mutation.rs`),
//! the doctor (`src/doctor.rs`), the import's columns (`src/manual/import.rs`), the CLI's
//! help and the stores' `actions` reference table (seeded from [`Action::ALL`] at start)
//! read it, so a new action is a variant, its row here and its call in `mutation.rs`.

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

/// The one parameter an action may take besides the account: the id of the group, service
/// desk or customer organization it acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Param {
    GroupId,
    ServiceDeskId,
    OrganizationId,
}

impl Param {
    pub const ALL: [Param; 3] = [Param::GroupId, Param::ServiceDeskId, Param::OrganizationId];

    /// Its key in a job's `params`, a rule's step, an import's column and `--param`.
    pub const fn name(self) -> &'static str {
        match self {
            Param::GroupId => "group_id",
            Param::ServiceDeskId => "service_desk_id",
            Param::OrganizationId => "organization_id",
        }
    }

    /// The kind of object its id names, as the doctor's check names (`group:<id>`) and a
    /// failed job's `missing_target:<kind>:<id>` write it.
    pub const fn kind(self) -> &'static str {
        match self {
            Param::GroupId => "group",
            Param::ServiceDeskId => "service_desk",
            Param::OrganizationId => "organization",
        }
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

/// How a succeeded step of an action is undone on a rehire (README, "Undo on rehire").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reversal {
    /// This action gives back what the step took, within the window.
    Inverse(Action, UndoWindow),
    /// Nothing gives it back, by the nature of the call: why, for the undo's report.
    Irreversible(&'static str),
    /// It is an undo itself, and an undo is never undone.
    Undo,
}

/// What `offboard doctor` (`src/doctor.rs`) reads before a rule may use an action.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DoctorCheck {
    /// The family's credentials work (and, for the site, may browse users).
    Credentials(ApiFamily),
    /// `directory_id` names one directory of the org: `-` is documented for reads only.
    WritableDirectory,
    /// The group, service desk or organization the parameter names exists.
    TargetExists(Param),
    /// The site user may count what an account owns in Jira (`deletes_owned_content`,
    /// unless the step allows the loss).
    OwnedContentSearch,
    /// The site user may find and change what a hand-over moves (`ActionSpec::handover`).
    HandOver(HandOver),
}

/// What a hand-over step gives from the leaver to the successor (README, "Hand-over before
/// removal"). Each is a procedure, not one call: find the leaver's items by owner, move them,
/// read the owner back (`src/handover/`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HandOver {
    Filters,
    Dashboards,
    OpenIssues,
    ProjectLeads,
    AutomationRules,
}

impl HandOver {
    /// The kind of item it moves, as an item id is written in events and the undo's list
    /// (`filter:10001`); the project leads also move component leads (`component:…`).
    pub const fn item_kind(self) -> &'static str {
        match self {
            HandOver::Filters => "filter",
            HandOver::Dashboards => "dashboard",
            HandOver::OpenIssues => "issue",
            HandOver::ProjectLeads => "project",
            HandOver::AutomationRules => "rule",
        }
    }
}

/// One row of the action table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionSpec {
    /// Its name in rules, the API, the CLI and the `actions` table.
    pub name: &'static str,
    /// The account type it may touch.
    pub account: TargetAccount,
    /// The API family of its mutating call, whose credentials also look its account up.
    pub family: ApiFamily,
    /// Whether its call writes to the org directory (`…/directories/{directoryId}/…`), where
    /// `directory_id = "-"` ("all directories") is documented for reads only.
    pub writes_directory: bool,
    /// The one parameter it needs besides the account, if any.
    pub param: Option<Param>,
    /// How a succeeded step of it is undone.
    pub reversal: Reversal,
    /// Whether its call also deletes the Jira filters and dashboards the account owns
    /// (README, "No silent loss"): the step then first checks that there are none, unless
    /// it says `allow_content_loss = true`.
    pub deletes_owned_content: bool,
    /// Whether a step of it that succeeded `done` or `already_done` means the person has lost
    /// access: the moment a case's SLA is measured to (README, "A person's case"). Removing a
    /// membership leaves the account usable, so only revoke, suspend, deactivate and the two
    /// deletes do.
    pub removes_access: bool,
    /// What it hands over to a successor, for the five hand-over actions: a procedure run by
    /// `src/handover/` instead of one call in `src/atlassian/mutation.rs`.
    pub handover: Option<HandOver>,
}

impl ActionSpec {
    /// The doctor's checks for a rule that uses the action: its family's credentials, the
    /// directory where it writes there, and the object its parameter names.
    pub fn doctor_checks(&self) -> impl Iterator<Item = DoctorCheck> + use<> {
        let directory = self
            .writes_directory
            .then_some(DoctorCheck::WritableDirectory);
        let target = self.param.map(DoctorCheck::TargetExists);
        let content = self
            .deletes_owned_content
            .then_some(DoctorCheck::OwnedContentSearch);
        // A hand-over looks its leaver and successor up in the org directory, and calls the
        // site.
        let lookup = self
            .handover
            .map(|_| DoctorCheck::Credentials(ApiFamily::Admin));
        let handover = self.handover.map(DoctorCheck::HandOver);
        [
            Some(DoctorCheck::Credentials(self.family)),
            lookup,
            directory,
            target,
            content,
            handover,
        ]
        .into_iter()
        .flatten()
    }
}

/// The actions: ten that offboard (README, "Which account a job acts on"), five that give
/// back what they took (README, "Undo on rehire") and five that hand a leaver's work over to
/// a successor (README, "Hand-over before removal").
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
    TransferFilters,
    TransferDashboards,
    ReassignOpenIssues,
    TransferProjectLeads,
    ReportAutomationRules,
}

impl Action {
    pub const ALL: [Action; 20] = [
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
        Action::TransferFilters,
        Action::TransferDashboards,
        Action::ReassignOpenIssues,
        Action::TransferProjectLeads,
        Action::ReportAutomationRules,
    ];

    /// The action table: every fact about an action, stated once.
    pub const fn spec(self) -> ActionSpec {
        use ApiFamily::{Admin, Site};
        use Reversal::{Inverse, Irreversible, Undo};
        use TargetAccount::{Customer, Managed};
        match self {
            Action::RevokePortalAccess => ActionSpec {
                name: "revoke_portal_access",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: None,
                deletes_owned_content: false,
                reversal: Irreversible(
                    "no API restores portal access: grant it again in the admin UI",
                ),
                removes_access: true,
                handover: None,
            },
            Action::DeletePortalCustomer => ActionSpec {
                name: "delete_portal_customer",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: None,
                deletes_owned_content: false,
                reversal: Irreversible("a deleted portal-only customer cannot be restored"),
                removes_access: true,
                handover: None,
            },
            Action::RemoveFromServiceDesk => ActionSpec {
                name: "remove_from_service_desk",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: Some(Param::ServiceDeskId),
                deletes_owned_content: false,
                reversal: Inverse(Action::AddToServiceDesk, UndoWindow::Always),
                removes_access: false,
                handover: None,
            },
            Action::RemoveFromCustomerOrganization => ActionSpec {
                name: "remove_from_customer_organization",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: Some(Param::OrganizationId),
                deletes_owned_content: false,
                reversal: Inverse(Action::AddToCustomerOrganization, UndoWindow::Always),
                removes_access: false,
                handover: None,
            },
            Action::SuspendAccess => ActionSpec {
                name: "suspend_access",
                account: Managed,
                family: Admin,
                writes_directory: true,
                param: None,
                deletes_owned_content: false,
                reversal: Inverse(Action::RestoreAccess, UndoWindow::Always),
                removes_access: true,
                handover: None,
            },
            Action::RestoreAccess => ActionSpec {
                name: "restore_access",
                account: Managed,
                family: Admin,
                writes_directory: true,
                param: None,
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::RemoveFromDirectory => ActionSpec {
                name: "remove_from_directory",
                account: Managed,
                family: Admin,
                writes_directory: true,
                param: None,
                deletes_owned_content: false,
                reversal: Irreversible(
                    "a re-invite exists (POST /admin/v2/orgs/{orgId}/users/invite, paid plans), \
                     but the directory's groups and roles are lost: invite and re-assign by hand",
                ),
                removes_access: false,
                handover: None,
            },
            Action::RemoveFromGroup => ActionSpec {
                name: "remove_from_group",
                account: Managed,
                family: Admin,
                writes_directory: true,
                param: Some(Param::GroupId),
                deletes_owned_content: false,
                reversal: Inverse(Action::AddToGroup, UndoWindow::Always),
                removes_access: false,
                handover: None,
            },
            // The lifecycle calls act on the account, not on a directory.
            Action::DeactivateAccount => ActionSpec {
                name: "deactivate_account",
                account: Managed,
                family: Admin,
                writes_directory: false,
                param: None,
                deletes_owned_content: false,
                reversal: Inverse(Action::EnableAccount, UndoWindow::Always),
                removes_access: true,
                handover: None,
            },
            Action::DeleteAccount => ActionSpec {
                name: "delete_account",
                account: Managed,
                family: Admin,
                writes_directory: false,
                param: None,
                deletes_owned_content: true,
                reversal: Inverse(Action::CancelDeleteAccount, UndoWindow::Days(14)),
                removes_access: true,
                handover: None,
            },
            Action::EnableAccount => ActionSpec {
                name: "enable_account",
                account: Managed,
                family: Admin,
                writes_directory: false,
                param: None,
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::CancelDeleteAccount => ActionSpec {
                name: "cancel_delete_account",
                account: Managed,
                family: Admin,
                writes_directory: false,
                param: None,
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::AddToGroup => ActionSpec {
                name: "add_to_group",
                account: Managed,
                family: Admin,
                writes_directory: true,
                param: Some(Param::GroupId),
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::AddToServiceDesk => ActionSpec {
                name: "add_to_service_desk",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: Some(Param::ServiceDeskId),
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::AddToCustomerOrganization => ActionSpec {
                name: "add_to_customer_organization",
                account: Customer,
                family: Site,
                writes_directory: false,
                param: Some(Param::OrganizationId),
                deletes_owned_content: false,
                reversal: Undo,
                removes_access: false,
                handover: None,
            },
            Action::TransferFilters => handing_over("transfer_filters", HandOver::Filters),
            Action::TransferDashboards => handing_over("transfer_dashboards", HandOver::Dashboards),
            Action::ReassignOpenIssues => {
                handing_over("reassign_open_issues", HandOver::OpenIssues)
            }
            Action::TransferProjectLeads => {
                handing_over("transfer_project_leads", HandOver::ProjectLeads)
            }
            Action::ReportAutomationRules => {
                handing_over("report_automation_rules", HandOver::AutomationRules)
            }
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.spec().name
    }

    /// The account type this action may touch.
    pub const fn target(self) -> TargetAccount {
        self.spec().account
    }

    /// Whether the action's call writes to the org directory (`ActionSpec::writes_directory`).
    pub const fn writes_directory(self) -> bool {
        self.spec().writes_directory
    }

    /// The API family of the mutating call.
    pub const fn family(self) -> ApiFamily {
        self.spec().family
    }

    /// What it hands over, for a hand-over action (`ActionSpec::handover`).
    pub const fn handover(self) -> Option<HandOver> {
        self.spec().handover
    }

    /// The credentials that look its account up: the site's user search for a customer,
    /// the org directory for a managed account. Only a hand-over differs from
    /// [`Action::family`]: it looks a managed leaver up, and calls the site.
    pub const fn lookup_family(self) -> ApiFamily {
        match self.spec().account {
            TargetAccount::Customer => ApiFamily::Site,
            TargetAccount::Managed => ApiFamily::Admin,
        }
    }

    /// The credentials a step of it with these parameters uses: its family, the family that
    /// looks its account up, and the site's where it first counts what the account owns
    /// (unless the step says `allow_content_loss = true`).
    pub fn families(self, params: &serde_json::Map<String, serde_json::Value>) -> Vec<ApiFamily> {
        let counts_content = self.spec().deletes_owned_content
            && params.get(super::ALLOW_CONTENT_LOSS) != Some(&serde_json::Value::Bool(true));
        let mut families = vec![self.family(), self.lookup_family()];
        if counts_content {
            families.push(ApiFamily::Site);
        }
        families.dedup();
        families
    }

    /// Whether a step of it that took effect removed the person's access
    /// (`ActionSpec::removes_access`).
    pub const fn removes_access(self) -> bool {
        self.spec().removes_access
    }

    /// The one parameter an action needs besides the account, if any.
    pub const fn param(self) -> Option<Param> {
        self.spec().param
    }

    /// The name of [`Action::param`], as `params` holds it.
    pub fn required_param(self) -> Option<&'static str> {
        self.param().map(Param::name)
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

    /// The action that gives back what this one took, with the window it has, if there is
    /// one. Inverses have no inverse of their own: an undo is never undone.
    pub const fn inverse(self) -> Option<(Action, UndoWindow)> {
        match self.spec().reversal {
            Reversal::Inverse(inverse, window) => Some((inverse, window)),
            Reversal::Irreversible(_) | Reversal::Undo => None,
        }
    }

    /// Why a step of this action cannot be undone, where that is so by its nature.
    pub const fn irreversible_because(self) -> Option<&'static str> {
        match self.spec().reversal {
            Reversal::Irreversible(why) => Some(why),
            Reversal::Inverse(..) | Reversal::Undo => None,
        }
    }
}

/// A hand-over's row: it acts on a managed leaver (looked up in the org directory), calls the
/// site, takes its successor instead of a parameter, and moves items that only the successor
/// can give back.
const fn handing_over(name: &'static str, handover: HandOver) -> ActionSpec {
    ActionSpec {
        name,
        account: TargetAccount::Managed,
        family: ApiFamily::Site,
        writes_directory: false,
        param: None,
        deletes_owned_content: false,
        reversal: Reversal::Irreversible(
            "a hand-over is not undone: the moved items are listed by id, for an operator to \
             give back by hand",
        ),
        removes_access: false,
        handover: Some(handover),
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

    /// The table's rows agree with one another: what one row says of another holds there.
    #[test]
    fn the_table_agrees_with_itself() {
        let mut names: Vec<&str> = Action::ALL.iter().map(|a| a.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Action::ALL.len(), "two actions share a name");
        for action in Action::ALL {
            let spec = action.spec();
            // The worker looks the account up with the credentials of the action's family;
            // a hand-over looks it up in the directory and calls the site.
            if spec.handover.is_none() {
                assert_eq!(spec.family, action.lookup_family(), "{action}");
            } else {
                assert_eq!(spec.account, TargetAccount::Managed, "{action}");
                assert_eq!(spec.family, ApiFamily::Site, "{action}");
                assert!(action.irreversible_because().is_some(), "{action}");
                assert!(spec.param.is_none() && !spec.removes_access, "{action}");
            }
            if spec.writes_directory {
                assert_eq!(spec.family, ApiFamily::Admin, "{action}");
            }
            if let Reversal::Inverse(inverse, _) = spec.reversal {
                let given_back = inverse.spec();
                assert_eq!(given_back.reversal, Reversal::Undo, "{action}: {inverse}");
                assert_eq!(given_back.account, spec.account, "{action}: {inverse}");
                assert_eq!(given_back.family, spec.family, "{action}: {inverse}");
                assert_eq!(given_back.param, spec.param, "{action}: {inverse}");
                assert_eq!(
                    given_back.writes_directory, spec.writes_directory,
                    "{action}: {inverse}"
                );
            }
            if spec.reversal == Reversal::Undo {
                let undoes = Action::ALL
                    .into_iter()
                    .filter(|a| a.inverse().map(|(inverse, _)| inverse) == Some(action))
                    .count();
                assert_eq!(undoes, 1, "{action} is the undo of one action");
            }
        }
    }

    /// An action's parameter is its target and the doctor checks what it names; an action
    /// without one has no target.
    #[test]
    fn every_action_with_a_parameter_has_a_target() {
        for action in Action::ALL {
            let params: serde_json::Map<String, serde_json::Value> = Param::ALL
                .iter()
                .map(|param| (param.name().to_owned(), serde_json::json!(param.kind())))
                .collect();
            let checks: Vec<DoctorCheck> = action.spec().doctor_checks().collect();
            assert_eq!(checks[0], DoctorCheck::Credentials(action.family()));
            assert_eq!(
                checks.contains(&DoctorCheck::WritableDirectory),
                action.writes_directory()
            );
            match action.param() {
                Some(param) => {
                    assert_eq!(action.key_target(&params), param.kind(), "{action}");
                    assert!(checks.contains(&DoctorCheck::TargetExists(param)));
                }
                None => {
                    assert_eq!(action.key_target(&params), "", "{action}");
                    assert!(
                        !checks
                            .iter()
                            .any(|check| matches!(check, DoctorCheck::TargetExists(_)))
                    );
                }
            }
        }
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
