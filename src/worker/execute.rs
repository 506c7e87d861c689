//! One job, start to end: resolve the email to exactly one account, apply every guard, make
//! (or, in dry run, describe) the one mutating call, and classify what happened into the next
//! step for the store. Nothing here writes to the store.

use std::time::Duration;

use super::account_reads::SiteAccountReads;
use crate::atlassian::{
    Account, Applied, CallError, Client, Mutation, NO_JSM_AGENT_LICENCE, PlannedRequest, Settled,
};
use crate::domain::{
    ApiFamily, Job, JobState, ManualSource, Outcome, PauseReason, Safety, TargetAccount,
};

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
    /// Credentials or permissions are wrong for every job, not this one: pause the worker
    /// with `reason` and put the job back without using an attempt.
    Pause {
        reason: PauseReason,
        detail: String,
    },
}

impl Step {
    pub(super) fn failed(error: impl Into<String>, detail: impl Into<String>) -> Step {
        Step::Failed {
            error: error.into(),
            detail: detail.into(),
        }
    }

    fn not_found(detail: impl Into<String>) -> Step {
        Step::Succeeded {
            outcome: Outcome::NotFound,
            detail: detail.into(),
        }
    }
}

/// Guards and settings the execution needs besides the job.
pub struct Guards<'a> {
    pub safety: &'a Safety,
    pub dry_run: bool,
}

/// Where the job's lookups go: the client, and for customers read by id the worker's
/// batched reader.
pub struct Lookups<'a> {
    pub client: &'a Client,
    pub site_accounts: &'a SiteAccountReads,
}

/// The call to make, as it will be sent, and the account to record on the job before making
/// it, when the job did not have it yet.
#[derive(Debug)]
pub struct Target {
    pub mutation: Mutation,
    pub planned: PlannedRequest,
    pub record: Option<Account>,
}

/// How long an inverse waits between looks at an original still in flight.
const ORIGINAL_RUNNING_WAIT: Duration = Duration::from_secs(5);

/// For an inverse and the step it gives back: `None` to go ahead (the original took
/// something), else what to do instead. An original still in flight is waited for without
/// using an attempt; one that ended otherwise than `done` took nothing, so nothing is
/// given back.
pub fn give_back_once_done(job: &Job, original: Option<&Job>) -> Option<Step> {
    let Some(original) = original else {
        return Some(Step::failed(
            "original_missing",
            format!("{} gives back a step that does not exist", job.action),
        ));
    };
    match (original.state, original.outcome) {
        (JobState::Succeeded, Some(Outcome::Done)) => None,
        (JobState::Pending | JobState::Running | JobState::AwaitingApproval, _) => {
            Some(Step::Snooze {
                wait: Some(ORIGINAL_RUNNING_WAIT),
                detail: format!(
                    "waiting for job {} ({}) to end before giving it back",
                    original.id, original.action
                ),
            })
        }
        (state, outcome) => Some(Step::Succeeded {
            outcome: Outcome::AlreadyDone,
            detail: format!(
                "job {} ({}) ended {}{}: it took nothing, so nothing is given back",
                original.id,
                original.action,
                state.as_str(),
                outcome
                    .map(|o| format!(" {}", o.as_str()))
                    .unwrap_or_default()
            ),
        }),
    }
}

/// Resolves the job's account and checks every guard; `Ok` holds the call to make. `earlier`
/// is the step this job depends on, whose recorded account the job acts on.
pub async fn plan(
    lookups: &Lookups<'_>,
    guards: &Guards<'_>,
    job: &Job,
    earlier: Option<&Job>,
) -> Result<Target, Step> {
    let client = lookups.client;
    if !client.is_configured(job.action.family()) {
        return Err(Step::failed(
            "atlassian_not_configured",
            format!(
                "{} needs the {} credentials in [atlassian], which are not configured",
                job.action,
                job.action.family().as_str()
            ),
        ));
    }
    let (account, newly_resolved) = resolve(lookups, job, earlier).await?;
    check_account(guards.safety, job, &account)?;
    let mutation = mutation_for(job, &account.account_id)?;
    let planned = client
        .describe(&mutation)
        .map_err(|e| classify_error(e, "the request"))?;
    Ok(Target {
        mutation,
        planned,
        record: newly_resolved.then_some(account),
    })
}

/// The account the job acts on, and whether it was resolved just now (so it must be
/// recorded). A recorded account, or the one the chain's earlier step recorded, is used as
/// it is: the email search no longer returns a revoked customer or a suspended account.
pub(super) async fn resolve(
    lookups: &Lookups<'_>,
    job: &Job,
    earlier: Option<&Job>,
) -> Result<(Account, bool), Step> {
    if let Some(account) = recorded_account(job) {
        return Ok((account, false));
    }
    if let Some(account_id) = given_account(job) {
        return Ok((look_up_by_id(lookups, job, account_id).await?, true));
    }
    if let Some(earlier) = earlier {
        if earlier.outcome == Some(Outcome::NotFound) {
            return Err(Step::not_found(format!(
                "the earlier step of this chain (job {}) found no account; nothing to do",
                earlier.id
            )));
        }
        if let Some(account) = recorded_account(earlier) {
            return Ok((account, true));
        }
    }
    let account = look_up_by_email(lookups.client, job).await?;
    Ok((account, true))
}

/// The account an entry enqueued by hand names (README, "Manual and bulk jobs"): acted on by
/// its id, never searched for by email. A rule's `account_id` is only a cross-check.
fn given_account(job: &Job) -> Option<&str> {
    ManualSource::named(job.source.as_deref()?)?;
    job.account_id.as_deref()
}

/// The account with this id, read from its own record, which gives its type and, where
/// visible, its email. A record that hides its email shows nothing tying the account to the
/// job's email: the job acts on it only when its request vouched for the id.
async fn look_up_by_id(
    lookups: &Lookups<'_>,
    job: &Job,
    account_id: &str,
) -> Result<Account, Step> {
    let family = job.action.lookup_family();
    let found = match job.action.target() {
        TargetAccount::Customer => read_site_account(lookups, account_id).await,
        TargetAccount::Managed => lookups.client.directory_user(account_id).await,
    };
    match found.map_err(|e| classify_lookup_error(e, family, "read by id"))? {
        Some(account) if hides_email(&account) && !job.trusts_account_id() => Err(Step::failed(
            "account_unverifiable",
            format!(
                "account {account_id}'s record hides its email, so nothing shows it \
                 belongs to the job's email; to act on it anyway, enqueue it again with \
                 \"trust_account_id\": true (--trust-account-id)"
            ),
        )),
        Some(account) => Ok(account),
        None => Err(Step::not_found(format!(
            "no account has id {account_id}; nothing to do"
        ))),
    }
}

/// A site account by id: in the bulk read this job shares with the jobs reading alongside
/// it, else by itself. An id the bulk answer leaves out is not yet nobody's (whether the
/// bulk read returns portal-only customers is not documented): only the single read's 404
/// says so. Either read's 403 pauses the worker, as before.
async fn read_site_account(
    lookups: &Lookups<'_>,
    account_id: &str,
) -> Result<Option<Account>, CallError> {
    match lookups.site_accounts.read(account_id).await? {
        Some(account) => Ok(Some(account)),
        None => lookups.client.site_user(account_id).await,
    }
}

fn hides_email(account: &Account) -> bool {
    account.email.as_deref().is_none_or(str::is_empty)
}

/// The account a job recorded: an id resolved from Atlassian, with its type.
fn recorded_account(job: &Job) -> Option<Account> {
    let (account_id, account_type) = (job.account_id.as_ref()?, job.account_type.as_ref()?);
    Some(Account {
        account_id: account_id.to_string(),
        account_type: account_type.clone(),
        email: None,
        status: None,
        directory_status: None,
        membership_status: None,
    })
}

/// Exactly one account must have the job's email. Before "nobody has it" is believed for a
/// customer, the site credentials must still hold "Browse users and groups" (without it the
/// search answers an empty list to everything), and the service desks' customer lists must
/// not hold the email either: the search returns active users only, so a customer revoked
/// earlier is found only there.
async fn look_up_by_email(client: &Client, job: &Job) -> Result<Account, Step> {
    let family = job.action.lookup_family();
    let found = match job.action.target() {
        TargetAccount::Customer => client.find_site_accounts(&job.email).await,
        TargetAccount::Managed => client.find_directory_accounts(&job.email).await,
    };
    let accounts = found.map_err(|e| classify_lookup_error(e, family, "lookup"))?;
    match (accounts.as_slice(), job.action.target()) {
        ([], TargetAccount::Customer) => {
            confirm_browse_permission(client).await?;
            look_up_among_desk_customers(client, job).await
        }
        ([], TargetAccount::Managed) => {
            Err(Step::not_found("no account has this email; nothing to do"))
        }
        ([one], _) => Ok(one.clone()),
        (many, _) => {
            let ids: Vec<&str> = many.iter().map(|a| a.account_id.as_str()).collect();
            Err(ambiguous(&ids))
        }
    }
}

/// The customer the active-user search did not find, looked up on every service desk's
/// customer list. An entry there has no account type, so the account's own record gives it
/// (for the account-type guard).
async fn look_up_among_desk_customers(client: &Client, job: &Job) -> Result<Account, Step> {
    let call = "GET /rest/servicedeskapi/servicedesk/{id}/customer";
    let ids = client
        .find_desk_customers(&job.email)
        .await
        .map_err(|e| classify_desk_lookup_error(e, call))?;
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    match ids.as_slice() {
        [] => Err(Step::not_found(
            "no account has this email, in the active-user search or on any service desk's \
             customer list; nothing to do",
        )),
        [one] => match client.site_user(one).await {
            Ok(Some(account)) => Ok(account),
            Ok(None) => Err(Step::not_found(format!(
                "account {one}, listed with this email on a service desk, no longer exists \
                 (HTTP 404); nothing to do"
            ))),
            Err(e) => Err(classify_lookup_error(e, ApiFamily::Site, "read by id")),
        },
        many => Err(ambiguous(many)),
    }
}

fn ambiguous(ids: &[&str]) -> Step {
    Step::failed(
        "ambiguous_account",
        format!("{} accounts have this email: {}", ids.len(), ids.join(", ")),
    )
}

async fn confirm_browse_permission(client: &Client) -> Result<(), Step> {
    let call = "GET /rest/api/3/mypermissions";
    match client.can_browse_users().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Step::Pause {
            reason: PauseReason::Permission,
            detail: format!(
                "{call}: the site credentials lack \"Browse users and groups\" (USER_PICKER), \
                 so the user search finds nobody; not recording not_found"
            ),
        }),
        Err(e) => Err(classify_lookup_error(e, ApiFamily::Site, call)),
    }
}

/// The guards on the account, before any mutating call.
pub(super) fn check_account(safety: &Safety, job: &Job, account: &Account) -> Result<(), Step> {
    if let Some(expected) = &job.account_id
        && **expected != *account.account_id
    {
        return Err(Step::failed(
            "account_mismatch",
            format!(
                "the payload names account {expected}, but the email belongs to {}",
                account.account_id
            ),
        ));
    }
    if let Some(email) = account.email.as_deref()
        && !email.eq_ignore_ascii_case(&job.email)
    {
        return Err(Step::failed(
            "account_mismatch",
            format!(
                "account {} belongs to another email than the job's",
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

pub(super) fn mutation_for(job: &Job, account_id: &str) -> Result<Mutation, Step> {
    let name = job.action.required_param();
    let target_id = name.and_then(|name| job.param(name)).map(str::to_owned);
    let message = || deactivation_message(job);
    Mutation::new(
        job.action,
        account_id.to_owned(),
        target_id,
        &job.email,
        message,
    )
    .ok_or_else(|| {
        let name = name.unwrap_or_default();
        Step::failed(
            format!("missing_param:{name}"),
            format!("{} needs the parameter {name}", job.action),
        )
    })
}

/// Shown with the deactivation in Atlassian: which source and rule asked for it.
fn deactivation_message(job: &Job) -> String {
    format!(
        "Deactivated by offboard (source {}, rule {}, job {})",
        job.source.as_deref().unwrap_or("unknown"),
        job.rule.as_deref().unwrap_or("unknown"),
        job.id
    )
}

/// The dry-run result: the request that would have been sent, for the audit trail.
pub fn dry_run(target: &Target) -> Step {
    let planned = &target.planned;
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
pub async fn apply(client: &Client, target: &Target) -> Step {
    let planned = &target.planned;
    let call = format!("{} {}", planned.method, planned.url);
    match client.settle(&target.mutation).await {
        Ok(Settled {
            applied: Applied::Done,
            seen,
        }) => Step::Succeeded {
            outcome: Outcome::Done,
            detail: with_seen(format!("{call} succeeded"), seen),
        },
        Ok(Settled {
            applied: Applied::AlreadyDone,
            seen,
        }) => Step::Succeeded {
            outcome: Outcome::AlreadyDone,
            detail: with_seen(
                format!("{call}: the account is already gone or in that state"),
                seen,
            ),
        },
        Err(e) => classify_error(e, &call),
    }
}

/// Right before a call that also deletes what the account owns in Jira (its filters, even
/// shared ones, and its dashboards), two reads check that it owns none; a step that says
/// `allow_content_loss = true` goes ahead (README, "No silent loss").
pub async fn check_owned_content(client: &Client, job: &Job, target: &Target) -> Result<(), Step> {
    if !job.action.spec().deletes_owned_content || job.allows_content_loss() {
        return Ok(());
    }
    match client.owned_content(target.mutation.account_id()).await {
        Ok(owned) if owned.is_empty() => Ok(()),
        Ok(owned) => Err(Step::failed(
            format!(
                "owns_content:filters={},dashboards={}",
                owned.filters, owned.dashboards
            ),
            format!(
                "the account still owns {} filter(s) and {} dashboard(s), which {} would delete: \
                 hand them over first (transfer_filters, transfer_dashboards), or let the step \
                 say allow_content_loss = true",
                owned.filters, owned.dashboards, job.action
            ),
        )),
        Err(e) => Err(classify_error(
            e,
            "the check of the filters and dashboards the account owns",
        )),
    }
}

/// A step's detail, with what a membership check or a read-back saw.
fn with_seen(detail: String, seen: Option<String>) -> String {
    match seen {
        Some(seen) => format!("{detail} ({seen})"),
        None => detail,
    }
}

pub(super) fn classify_error(err: CallError, call: &str) -> Step {
    let detail = format!("{call}: {err}");
    match err {
        CallError::RateLimited { wait, .. } => Step::Snooze { wait, detail },
        CallError::Unauthorized { .. } => Step::Pause {
            reason: PauseReason::Auth,
            detail,
        },
        CallError::Transient { .. } => Step::Transient { detail },
        CallError::Rejected { status, .. } => Step::failed(format!("api_error:{status}"), detail),
        CallError::NotConfigured { .. } => Step::failed("atlassian_not_configured", detail),
        CallError::MissingTarget { kind, id } => {
            Step::failed(format!("missing_target:{kind}:{id}"), detail)
        }
        CallError::DirectoryNotWritable => Step::failed("directory_not_writable", detail),
    }
}

/// A service desk read refused with 403 is about the site credentials, as for every lookup;
/// with an empty body, what is missing is the JSM agent licence.
fn classify_desk_lookup_error(err: CallError, call: &str) -> Step {
    if err.is_bare_forbidden() {
        return Step::Pause {
            reason: PauseReason::Permission,
            detail: format!(
                "{call}: {NO_JSM_AGENT_LICENCE} (HTTP 403 with an empty body), so the service \
                 desks' customer lists cannot be read; not recording not_found"
            ),
        };
    }
    classify_lookup_error(err, ApiFamily::Site, call)
}

/// A lookup refused with 403 is about the credentials, not about this person: the site
/// credentials lack "Browse users and groups", or the admin key may not read the directory.
pub(super) fn classify_lookup_error(err: CallError, family: ApiFamily, call: &str) -> Step {
    match err {
        CallError::Rejected { status: 403, .. } => Step::Pause {
            reason: match family {
                ApiFamily::Site => PauseReason::Permission,
                ApiFamily::Admin => PauseReason::Auth,
            },
            detail: format!("{call}: {err}"),
        },
        other => classify_error(other, call),
    }
}
