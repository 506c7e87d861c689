//! `offboard doctor` and `GET /api/v1/doctor`: read-only checks of the configuration against
//! the live Atlassian APIs, so that wrong credentials, a missing permission or a mistyped id
//! show up before the first job, not as jobs that "succeed" without doing anything.
//!
//! Only the API families the rules use are checked. No check calls a mutating endpoint.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::sync::{Arc, PoisonError, RwLock};

use serde::Serialize;
use utoipa::ToSchema;

use crate::atlassian::{ALL_DIRECTORIES, CallError, Client, NO_JSM_AGENT_LICENCE};
use crate::config::Config;
use crate::domain::{ALLOW_CONTENT_LOSS, Action, ApiFamily, DoctorCheck, HandOver, Param};

/// One check: its name (`site_credentials`, `group:<id>`, …), whether it passed, and what it
/// found or, when it failed, why and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

/// Every check that applies to the configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct Report {
    pub ok: bool,
    pub checks: Vec<Check>,
}

impl Report {
    fn new(checks: Vec<Check>) -> Report {
        Report {
            ok: checks.iter().all(|check| check.ok),
            checks,
        }
    }

    /// One line per check: `PASS name` or `FAIL name: reason — how to fix`.
    pub fn text(&self) -> String {
        let mut out = String::new();
        if self.checks.is_empty() {
            out.push_str("no rule names an Atlassian action: nothing to check\n");
        }
        for check in &self.checks {
            let _ = if check.ok {
                writeln!(out, "PASS {}", check.name)
            } else {
                writeln!(out, "FAIL {}: {}", check.name, check.detail)
            };
        }
        out
    }

    pub fn failures(&self) -> impl Iterator<Item = &Check> {
        self.checks.iter().filter(|check| !check.ok)
    }
}

/// The latest report of this process, for the console's header: set by `serve`'s check at
/// start and by every `GET /api/v1/doctor`.
#[derive(Clone, Default)]
pub struct LatestReport(Arc<RwLock<Option<Report>>>);

impl LatestReport {
    pub fn get(&self) -> Option<Report> {
        self.0
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn set(&self, report: Report) {
        *self.0.write().unwrap_or_else(PoisonError::into_inner) = Some(report);
    }
}

/// The ids the rules name, by kind.
#[derive(Default)]
struct Targets {
    groups: BTreeSet<String>,
    service_desks: BTreeSet<String>,
    organizations: BTreeSet<String>,
    /// The rules' actions that write to the directory (`directory_id` must be a real one).
    directory_writers: BTreeSet<Action>,
    /// A rule deletes accounts, and their owned filters and dashboards must be counted first.
    owned_content: bool,
    /// What the rules hand over: the site user must be able to find and change it.
    handovers: BTreeSet<HandOver>,
    site: bool,
    admin: bool,
}

fn targets(config: &Config) -> Targets {
    let mut targets = Targets::default();
    let steps = config
        .sources
        .iter()
        .flat_map(|source| source.rules.iter())
        .flat_map(|rule| rule.steps());
    for (action, params) in steps {
        for check in action.spec().doctor_checks() {
            match check {
                DoctorCheck::Credentials(ApiFamily::Site) => targets.site = true,
                DoctorCheck::Credentials(ApiFamily::Admin) => targets.admin = true,
                DoctorCheck::WritableDirectory => {
                    targets.directory_writers.insert(action);
                }
                DoctorCheck::OwnedContentSearch => {
                    // The count is made with the site credentials, whatever the action's family.
                    if params.get(ALLOW_CONTENT_LOSS) != Some(&serde_json::Value::Bool(true)) {
                        targets.owned_content = true;
                        targets.site = true;
                    }
                }
                DoctorCheck::HandOver(kind) => {
                    targets.handovers.insert(kind);
                }
                DoctorCheck::TargetExists(param) => {
                    let Some(id) = params.get(param.name()).and_then(|v| v.as_str()) else {
                        continue;
                    };
                    let set = match param {
                        Param::GroupId => &mut targets.groups,
                        Param::ServiceDeskId => &mut targets.service_desks,
                        Param::OrganizationId => &mut targets.organizations,
                    };
                    set.insert(id.to_owned());
                }
            }
        }
    }
    targets
}

/// Runs every check that applies to `config`, each once, one after the other (they share the
/// pacing of the client they are given).
pub async fn run(config: &Config) -> Report {
    let targets = targets(config);
    let client = config
        .atlassian
        .as_ref()
        .map(|a| Client::from_config(a, config.worker.requests_per_second));
    let client = match client {
        Some(Ok(client)) => Some(client),
        Some(Err(e)) => {
            let check = failed("atlassian", format!("{e:#} — fix [atlassian]"));
            return Report::new(vec![check]);
        }
        None => None,
    };
    let configured = |family| client.as_ref().filter(|c| c.is_configured(family));
    let mut checks = Vec::new();
    if targets.site {
        checks.extend(site_checks(configured(ApiFamily::Site), &targets).await);
    }
    if targets.admin {
        checks.extend(admin_checks(configured(ApiFamily::Admin), &targets).await);
    }
    Report::new(checks)
}

async fn site_checks(client: Option<&Client>, targets: &Targets) -> Vec<Check> {
    let dependent = site_dependents(targets);
    let Some(client) = client else {
        let mut checks = vec![failed(
            "site_credentials",
            "not configured, but a rule uses a customer action — set site_url, site_email and \
             site_api_token in [atlassian]",
        )];
        checks.extend(not_checked(dependent, "no site credentials"));
        return checks;
    };
    // GET /rest/api/3/myself
    let (credentials, myself) = match client.site_myself().await {
        Ok((name, id)) => (
            passed("site_credentials", format!("authenticated as {name}")),
            id,
        ),
        Err(e) => (failed("site_credentials", explain(&e, SITE_FIX)), None),
    };
    if !credentials.ok {
        let mut checks = vec![credentials];
        checks.extend(not_checked(dependent, "the site credentials failed"));
        return checks;
    }
    let mut checks = vec![credentials];
    // GET /rest/api/3/mypermissions?permissions=USER_PICKER
    checks.push(match client.can_browse_users().await {
        Ok(true) => passed(
            "site_browse_users",
            "the site user may browse users and groups",
        ),
        Ok(false) => failed(
            "site_browse_users",
            "the site user lacks the global permission \"Browse users and groups\", so every \
             user search answers an empty list — grant it to site_email (Jira settings → \
             System → Global permissions)",
        ),
        Err(e) => failed("site_browse_users", explain(&e, SITE_FIX)),
    });
    if targets.owned_content {
        // GET /rest/api/3/filter/search and /rest/api/3/dashboard/search, of the site user
        let id = myself.as_deref().unwrap_or_default();
        checks.push(match client.owned_content(id).await {
            Ok(_) => passed(
                "owned_content",
                "the site user may count the filters and dashboards a leaver owns before \
                 delete_account",
            ),
            Err(e) => failed(
                "owned_content",
                explain(
                    &e,
                    "delete_account counts the leaver's filters (with \
                     overrideSharePermissions, which needs the global permission \"Administer \
                     Jira\") and dashboards first: grant it to site_email, or let the step say \
                     allow_content_loss = true",
                ),
            ),
        });
    }
    for kind in &targets.handovers {
        let id = myself.as_deref().unwrap_or_default();
        checks.push(handover_check(client, *kind, id).await);
    }
    for id in &targets.service_desks {
        // GET /rest/servicedeskapi/servicedesk/{id}
        let found = client.service_desk_exists(id).await;
        checks.push(desk_existence(
            format!("service_desk:{id}"),
            found,
            "service desk",
            Param::ServiceDeskId.name(),
        ));
    }
    for id in &targets.organizations {
        // GET /rest/servicedeskapi/organization/{id}
        let found = client.organization_exists(id).await;
        checks.push(desk_existence(
            format!("organization:{id}"),
            found,
            "customer organization",
            Param::OrganizationId.name(),
        ));
    }
    checks
}

async fn admin_checks(client: Option<&Client>, targets: &Targets) -> Vec<Check> {
    let dependent = admin_dependents(targets);
    let Some(client) = client else {
        let mut checks = vec![failed(
            "admin_credentials",
            "not configured, but a rule uses a managed-account action — set admin_api_key, \
             org_id and directory_id in [atlassian]",
        )];
        checks.extend(not_checked(dependent, "no admin credentials"));
        return checks;
    };
    // GET /admin/v1/orgs/{orgId}
    let credentials = match client.org_exists().await {
        Ok(true) => passed("admin_credentials", "the admin API key reaches the org"),
        Ok(false) => failed(
            "admin_credentials",
            "the org_id is not an org this key can see (HTTP 404) — copy the org id from \
             admin.atlassian.com (Settings → API keys)",
        ),
        Err(e) => failed("admin_credentials", explain(&e, ADMIN_FIX)),
    };
    if !credentials.ok {
        let mut checks = vec![credentials];
        checks.extend(not_checked(dependent, "the admin credentials failed"));
        return checks;
    }
    let mut checks = vec![credentials, directory_check(client, targets).await];
    for id in &targets.groups {
        // GET /admin/v2/orgs/{orgId}/directories/{directoryId}/groups/{id}
        let found = client.group_exists(id).await;
        checks.push(existence(
            format!("group:{id}"),
            found,
            "group",
            Param::GroupId.name(),
        ));
    }
    checks
}

/// GET /admin/v2/orgs/{orgId}/directories, every page. `-` (all directories) passes only
/// while the rules just read the directory: it is documented for reads only.
async fn directory_check(client: &Client, targets: &Targets) -> Check {
    let Some(wanted) = client.directory_id() else {
        return failed(
            "directory",
            "not configured — set directory_id in [atlassian]",
        );
    };
    if wanted == ALL_DIRECTORIES && targets.directory_writers.is_empty() {
        return passed(
            "directory",
            "`-`: every directory of the org (the rules only read it)",
        );
    }
    let directories = match client.directories().await {
        Ok(directories) => directories,
        Err(e) => return failed("directory", explain(&e, ADMIN_FIX)),
    };
    let listed = if directories.is_empty() {
        "none".to_owned()
    } else {
        let names: Vec<String> = directories.iter().map(ToString::to_string).collect();
        names.join(", ")
    };
    if wanted == ALL_DIRECTORIES {
        let writers: Vec<&str> = targets
            .directory_writers
            .iter()
            .map(|a| a.as_str())
            .collect();
        return failed(
            "directory",
            format!(
                "`-` (all directories) is documented for reads only, but the rules write to the \
                 directory ({}); the org's directories: {listed} — set directory_id to the one \
                 that holds the people to offboard",
                writers.join(", ")
            ),
        );
    }
    if directories.iter().any(|directory| directory.id == wanted) {
        passed("directory", format!("{wanted} is a directory of the org"))
    } else {
        failed(
            "directory",
            format!(
                "{wanted} is not a directory of the org (it has: {listed}) — set directory_id to \
                 one of them"
            ),
        )
    }
}

const SITE_FIX: &str = "check site_url, and that site_api_token is an API token of site_email";
const ADMIN_FIX: &str = "check admin_url, and that admin_api_key is an org API key without scopes";

fn existence(name: String, found: Result<bool, CallError>, what: &str, param: &str) -> Check {
    match found {
        Ok(true) => passed(&name, format!("the {what} exists")),
        Ok(false) => failed(
            &name,
            format!("no {what} has this id (HTTP 404) — fix the {param} in the rules"),
        ),
        Err(e) => failed(&name, explain(&e, "check the credentials' access to it")),
    }
}

/// A service desk API read (`/rest/servicedeskapi/…`): as [`existence`], except that a 403
/// with an empty body is what every such endpoint answers a site user without a JSM agent
/// licence.
fn desk_existence(name: String, found: Result<bool, CallError>, what: &str, param: &str) -> Check {
    match found {
        Err(e) if e.is_bare_forbidden() => failed(
            &name,
            format!(
                "{NO_JSM_AGENT_LICENCE} (every service desk API call answers HTTP 403 with an \
                 empty body) — give site_email a Jira Service Management agent licence \
                 (admin.atlassian.com → Users → the user → product access: Jira Service \
                 Management), then run offboard doctor again"
            ),
        ),
        found => existence(name, found, what, param),
    }
}

fn explain(err: &CallError, fix: &str) -> String {
    match err {
        CallError::Unauthorized { .. } => format!("{err} — {fix}"),
        CallError::Rejected { status: 403, .. } => {
            format!("{err} — the credentials may not read this; {fix}")
        }
        CallError::RateLimited { .. } | CallError::Transient { .. } => {
            format!("{err} — try again; if it persists, check the network and Atlassian's status")
        }
        // Listed, not caught by `_`: a new kind of error must say here what fixes it.
        CallError::Rejected { .. }
        | CallError::NotConfigured { .. }
        | CallError::MissingTarget { .. }
        | CallError::DirectoryNotWritable => format!("{err} — {fix}"),
    }
}

/// Whether the site user can find and change what a hand-over moves (README, "Hand-over
/// before removal", which names the permissions each needs), by one read of the kind.
async fn handover_check(client: &Client, kind: HandOver, myself: &str) -> Check {
    let name = handover_check_name(kind);
    let (read, needs) = match kind {
        // GET /rest/api/3/filter/search and /rest/api/3/dashboard/search
        HandOver::Filters | HandOver::Dashboards => (
            client.owned_content(myself).await.map(|_| true),
            "\"Administer Jira\" (filters of every owner, and dashboards of others)",
        ),
        // POST /rest/api/3/search/jql
        HandOver::OpenIssues => (
            client.open_issues(myself).await.map(|_| true),
            "\"Browse projects\", \"Assign issues\" and \"Edit issues\" in every project, and \
             the global \"Make bulk changes\"",
        ),
        // GET /rest/api/3/project/search?action=edit
        HandOver::ProjectLeads => (
            client.administers_projects().await,
            "\"Administer projects\" in every project whose lead may leave",
        ),
        // GET {admin_url}/automation/public/jira/{cloudId}/rest/v1/rule/summary
        HandOver::AutomationRules => (
            client.reads_rules().await.map(|()| true),
            "Jira admin (the Rule Management API answers site and project admins)",
        ),
    };
    match read {
        Ok(true) => passed(
            &name,
            format!("the site user can find and hand over {}s", kind.item_kind()),
        ),
        Ok(false) => failed(
            &name,
            format!("the site user administers no project — grant site_email {needs}"),
        ),
        Err(e) => failed(&name, explain(&e, &format!("grant site_email {needs}"))),
    }
}

fn handover_check_name(kind: HandOver) -> String {
    format!("handover:{}", kind.item_kind())
}

fn site_dependents(targets: &Targets) -> Vec<String> {
    let mut names = vec!["site_browse_users".to_owned()];
    if targets.owned_content {
        names.push("owned_content".to_owned());
    }
    names.extend(
        targets
            .handovers
            .iter()
            .map(|kind| handover_check_name(*kind)),
    );
    names.extend(
        targets
            .service_desks
            .iter()
            .map(|id| format!("service_desk:{id}")),
    );
    names.extend(
        targets
            .organizations
            .iter()
            .map(|id| format!("organization:{id}")),
    );
    names
}

fn admin_dependents(targets: &Targets) -> Vec<String> {
    let mut names = vec!["directory".to_owned()];
    names.extend(targets.groups.iter().map(|id| format!("group:{id}")));
    names
}

fn not_checked(names: Vec<String>, why: &str) -> Vec<Check> {
    names
        .into_iter()
        .map(|name| failed(&name, format!("not checked: {why} — fix that first")))
        .collect()
}

fn passed(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok: true,
        detail: detail.into(),
    }
}

fn failed(name: &str, detail: impl Into<String>) -> Check {
    Check {
        name: name.to_owned(),
        ok: false,
        detail: detail.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_has_one_line_per_check() {
        let report = Report::new(vec![
            passed("site_credentials", "authenticated as bot"),
            failed(
                "group:g-1",
                "no group has this id (HTTP 404) — fix the group_id in the rules",
            ),
        ]);
        assert!(!report.ok);
        assert_eq!(
            report.text(),
            "PASS site_credentials\nFAIL group:g-1: no group has this id (HTTP 404) — fix the group_id in the rules\n"
        );
        assert!(Report::new(Vec::new()).ok);
    }
}
