//! One job, start to end: resolve the email to exactly one account, apply every guard, make
//! (or, in dry run, describe) the one mutating call, and classify what happened into the next
//! step for the store. Nothing here writes to the store.

use std::time::Duration;

use crate::atlassian::{Account, ApiError, Applied, Client, Mutation};
use crate::config::Safety;
use crate::jobs::{Action, ApiFamily, Outcome, TargetAccount};
use crate::store::Job;

/// What the worker does with the job next.
#[derive(Debug)]
pub enum Step {
    Succeeded {
        outcome: Outcome,
        detail: String,
    },
    Failed {
        error: String,
        detail: String,
    },
    /// Rate limited: come back after `wait` (or backoff when unknown) without using an attempt.
    Snooze {
        wait: Option<Duration>,
        detail: String,
    },
    /// Network error or 5xx: retry with backoff, using an attempt.
    Transient {
        detail: String,
    },
    /// 401: pause the worker (reason `auth`) and put the job back untouched.
    Unauthorized {
        detail: String,
    },
}

impl Step {
    fn failed(error: impl Into<String>, detail: impl Into<String>) -> Step {
        Step::Failed {
            error: error.into(),
            detail: detail.into(),
        }
    }
}

/// Guards and settings the execution needs besides the job.
pub struct Guards<'a> {
    pub safety: &'a Safety,
    pub dry_run: bool,
    /// Which API families have credentials configured.
    pub site_configured: bool,
    pub admin_configured: bool,
}

/// Resolves the job's target and checks every guard; `Ok` holds the call to make.
pub async fn plan(client: &Client, guards: &Guards<'_>, job: &Job) -> Result<Mutation, Step> {
    let configured = match job.action.family() {
        ApiFamily::Site => guards.site_configured,
        ApiFamily::Admin => guards.admin_configured,
    };
    if !configured {
        return Err(Step::failed(
            "atlassian_not_configured",
            format!(
                "{} needs the {} credentials in [atlassian], which are not configured",
                job.action,
                family_name(job.action.family())
            ),
        ));
    }
    let found = match job.action.target() {
        TargetAccount::Customer => client.find_site_accounts(&job.email).await,
        TargetAccount::Managed => client.find_directory_accounts(&job.email).await,
    };
    let accounts = found.map_err(|e| classify_error(e, "lookup"))?;
    let account = match accounts.as_slice() {
        [] => {
            return Err(Step::Succeeded {
                outcome: Outcome::NotFound,
                detail: "no account has this email; nothing to do".into(),
            });
        }
        [one] => one,
        many => {
            let ids: Vec<&str> = many.iter().map(|a| a.account_id.as_str()).collect();
            return Err(Step::failed(
                "ambiguous_account",
                format!(
                    "{} accounts have this email: {}",
                    many.len(),
                    ids.join(", ")
                ),
            ));
        }
    };
    check_account(guards.safety, job, account)?;
    mutation_for(job, &account.account_id)
}

/// The guards on the looked-up account, before any mutating call.
fn check_account(safety: &Safety, job: &Job, account: &Account) -> Result<(), Step> {
    if let Some(expected) = &job.account_id
        && expected != &account.account_id
    {
        return Err(Step::failed(
            "account_mismatch",
            format!(
                "the payload names account {expected}, but the email belongs to {}",
                account.account_id
            ),
        ));
    }
    let required = match job.action.target() {
        TargetAccount::Customer => "customer",
        TargetAccount::Managed => "atlassian",
    };
    if account.account_type != required {
        return Err(Step::failed(
            "account_type_mismatch",
            format!(
                "{} acts only on `{required}` accounts; account {} is `{}`",
                job.action, account.account_id, account.account_type
            ),
        ));
    }
    let email_protected = account
        .email
        .as_deref()
        .and_then(|email| safety.protects_email(email))
        .or_else(|| safety.protects_email(&job.email));
    if safety.protects_account(&account.account_id) || email_protected.is_some() {
        return Err(Step::failed(
            "protected_account",
            format!("account {} is protected by [safety]", account.account_id),
        ));
    }
    Ok(())
}

fn mutation_for(job: &Job, account_id: &str) -> Result<Mutation, Step> {
    let account_id = account_id.to_owned();
    let param = |name: &str| {
        job.param(name).map(str::to_owned).ok_or_else(|| {
            Step::failed(
                format!("missing_param:{name}"),
                format!("{} needs the parameter {name}", job.action),
            )
        })
    };
    Ok(match job.action {
        Action::RevokePortalAccess => Mutation::RevokePortalAccess { account_id },
        Action::DeletePortalCustomer => Mutation::DeletePortalCustomer { account_id },
        Action::RemoveFromServiceDesk => Mutation::RemoveFromServiceDesk {
            service_desk_id: param("service_desk_id")?,
            account_id,
        },
        Action::RemoveFromCustomerOrganization => Mutation::RemoveFromCustomerOrganization {
            organization_id: param("organization_id")?,
            account_id,
        },
        Action::SuspendAccess => Mutation::SuspendAccess { account_id },
        Action::RestoreAccess => Mutation::RestoreAccess { account_id },
        Action::RemoveFromDirectory => Mutation::RemoveFromDirectory { account_id },
        Action::RemoveFromGroup => Mutation::RemoveFromGroup {
            group_id: param("group_id")?,
            account_id,
        },
        Action::DeactivateAccount => Mutation::DeactivateAccount { account_id },
        Action::DeleteAccount => Mutation::DeleteAccount { account_id },
    })
}

/// The dry-run result: the request that would have been sent, for the audit trail.
pub fn dry_run(client: &Client, mutation: &Mutation) -> Step {
    let planned = client.describe(mutation);
    let body = planned
        .body
        .as_ref()
        .map(|b| format!(" {b}"))
        .unwrap_or_default();
    Step::Succeeded {
        outcome: Outcome::DryRun,
        detail: format!(
            "dry run: would send {} {}{body}",
            planned.method, planned.url
        ),
    }
}

/// Makes the mutating call and classifies its response.
pub async fn apply(client: &Client, mutation: &Mutation) -> Step {
    let planned = client.describe(mutation);
    match client.apply(mutation).await {
        Ok(Applied::Done) => Step::Succeeded {
            outcome: Outcome::Done,
            detail: format!("{} {} succeeded", planned.method, planned.url),
        },
        Ok(Applied::AlreadyDone) => Step::Succeeded {
            outcome: Outcome::AlreadyDone,
            detail: format!(
                "{} {}: the account is already gone or in that state",
                planned.method, planned.url
            ),
        },
        Err(e) => classify_error(e, &format!("{} {}", planned.method, planned.url)),
    }
}

fn classify_error(err: ApiError, call: &str) -> Step {
    let detail = format!("{call}: {err}");
    match err {
        ApiError::RateLimited { wait, .. } => Step::Snooze { wait, detail },
        ApiError::Unauthorized { .. } => Step::Unauthorized { detail },
        ApiError::Transient { .. } => Step::Transient { detail },
        ApiError::Rejected { status, .. } => Step::failed(format!("api_error:{status}"), detail),
    }
}

fn family_name(family: ApiFamily) -> &'static str {
    match family {
        ApiFamily::Site => "site",
        ApiFamily::Admin => "admin",
    }
}
