//! The jobs list, a job's page with its audit trail, and the approve / cancel / retry
//! buttons, each behind a confirmation page.

use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{Html, Redirect};
use chrono::{DateTime, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::{CheckedPost, Session};
use super::view::{self, Section, csrf_field, job_link, query_value, state_badge, when};
use super::{ACTOR, ConsoleError, chrome, page};
use crate::domain::{Job, JobId, JobState, JobWithEvents, Transition, parse_job_id};
use crate::http::AppState;
use crate::store::JobFilter;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    state: Option<String>,
    email: Option<String>,
    before: Option<String>,
}

/// The filters of the list as they appear in links.
#[derive(Clone, Default)]
struct Filters {
    state: Option<JobState>,
    email: Option<String>,
}

impl Filters {
    fn href(&self, state: Option<JobState>, before: Option<JobId>) -> String {
        let mut query = Vec::new();
        if let Some(state) = state {
            query.push(format!("state={state}"));
        }
        if let Some(email) = &self.email {
            query.push(format!("email={}", query_value(email)));
        }
        if let Some(before) = before {
            query.push(format!("before={before}"));
        }
        if query.is_empty() {
            "/console".to_owned()
        } else {
            format!("/console?{}", query.join("&"))
        }
    }
}

pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, ConsoleError> {
    let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let filters = Filters {
        state: non_empty(query.state)
            .map(|s| s.parse::<JobState>())
            .transpose()
            .map_err(ConsoleError::BadRequest)?,
        email: non_empty(query.email).map(|e| e.trim().to_owned()),
    };
    let before = non_empty(query.before)
        .map(|b| parse_job_id(&b))
        .transpose()
        .map_err(ConsoleError::BadRequest)?;
    let jobs = state
        .store
        .list_jobs(&JobFilter {
            state: filters.state,
            email: filters.email.clone(),
            action: None,
            before,
            limit: PAGE_SIZE,
        })
        .await?;
    let counts = state.store.count_by_state().await?;
    let chrome = chrome(&state, &session, Section::Jobs, uri.to_string()).await?;
    let older = (jobs.len() == PAGE_SIZE as usize)
        .then(|| jobs.last().map(|job| job.id))
        .flatten();
    let content = html! {
        h1 { "Jobs" }
        (tabs(&filters, &counts))
        form.filter method="get" action="/console" {
            @if let Some(state) = filters.state {
                input type="hidden" name="state" value=(state.as_str());
            }
            label for="email" { "Person" }
            input #email type="search" name="email" placeholder="email address" value=[filters.email.as_deref()];
            button type="submit" { "Find" }
            @if filters.email.is_some() {
                a href=(Filters { email: None, ..filters.clone() }.href(filters.state, None)) { "clear" }
            }
        }
        (jobs_table(&jobs, Utc::now()))
        nav.pages {
            @if before.is_some() {
                a href=(filters.href(filters.state, None)) { "← Newest" }
            }
            @if let Some(older) = older {
                a href=(filters.href(filters.state, Some(older))) { "Older jobs →" }
            }
        }
    };
    Ok(page("Jobs", Some(&chrome), content))
}

const TABS: [Option<JobState>; 7] = [
    None,
    Some(JobState::Pending),
    Some(JobState::AwaitingApproval),
    Some(JobState::Running),
    Some(JobState::Failed),
    Some(JobState::Succeeded),
    Some(JobState::Cancelled),
];

fn tabs(filters: &Filters, counts: &[(JobState, u64)]) -> Markup {
    let count = |tab: Option<JobState>| -> u64 {
        counts
            .iter()
            .filter(|(state, _)| tab.is_none_or(|tab| tab == *state))
            .map(|(_, n)| n)
            .sum()
    };
    html! {
        nav.tabs {
            @for tab in TABS {
                a href=(filters.href(tab, None)) aria-current=[(filters.state == tab).then_some("page")] {
                    (tab.map_or("all", view::state_label))
                    " " span.count { (count(tab)) }
                }
            }
        }
    }
}

fn jobs_table(jobs: &[Job], now: DateTime<Utc>) -> Markup {
    html! {
        div.scroll { table.jobs {
            thead {
                tr {
                    th { "Job" } th { "Person" } th { "Action" } th { "State" } th { "Lane" } th { "Runs" }
                    th { "Source / rule" } th { "Attempts" } th { "Outcome or last error" }
                }
            }
            tbody {
                @for job in jobs {
                    tr {
                        td { (job_link(job.id)) }
                        td.email { (job.email) }
                        td { (action(job)) }
                        td { (state_badge(job.state)) }
                        td { span class={ "badge lane-" (job.lane.as_str()) } { (job.lane.as_str()) } }
                        td.when { (when(&job.run_at, now)) }
                        td.origin { (origin(job)) }
                        td.num { (job.attempts) "/" (job.max_attempts) }
                        td.result { (result(job)) }
                    }
                }
                @if jobs.is_empty() {
                    tr { td.empty colspan="9" { "No jobs here." } }
                }
            }
        } }
    }
}

fn action(job: &Job) -> Markup {
    html! {
        code { (job.action) }
        @for (name, value) in &job.params {
            br;
            span.param { (name) " " (value.as_str().map_or_else(|| value.to_string(), str::to_owned)) }
        }
    }
}

fn origin(job: &Job) -> Markup {
    html! {
        (job.source.as_deref().unwrap_or("—"))
        @if let Some(rule) = &job.rule {
            " / " span.rule { (rule) }
        }
    }
}

fn result(job: &Job) -> Markup {
    html! {
        @if let Some(outcome) = job.outcome {
            span.outcome { (outcome.as_str()) }
        } @else if let Some(error) = &job.last_error {
            // A cancelled job's "error" is why it was cancelled: not an alarm.
            span class=(if job.state == JobState::Cancelled { "reason" } else { "error" }) { (error) }
        } @else {
            span.muted { "—" }
        }
    }
}

fn job_id(text: &str) -> Result<JobId, ConsoleError> {
    parse_job_id(text).map_err(|_| ConsoleError::NotFound(format!("There is no job {text}.")))
}

async fn load(state: &AppState, id: JobId) -> Result<JobWithEvents, ConsoleError> {
    state
        .store
        .get_job(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no job #{id}.")))
}

pub(super) async fn show(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Path(id): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let JobWithEvents { job, events } = load(&state, job_id(&id)?).await?;
    let chrome = chrome(&state, &session, Section::Jobs, uri.to_string()).await?;
    let now = Utc::now();
    let title = format!("Job #{}", job.id);
    let content = html! {
        h1 { (title) " " (state_badge(job.state)) }
        p.summary { code { (job.action) } " for " strong { (job.email) } }
        div.actions {
            @for transition in [Transition::Approve, Transition::Cancel, Transition::Retry] {
                @if transition.allowed_from().contains(&job.state) {
                    a class={ "button " (transition_class(transition)) }
                        href={ "/console/jobs/" (job.id) "/" (transition.as_str()) } {
                        (transition_label(transition))
                    }
                }
            }
        }
        (fields(&job, now))
        h2 { "Audit trail" }
        table.events {
            thead { tr { th { "When" } th { "Change" } th { "Actor" } th { "Detail" } } }
            tbody {
                @for event in &events {
                    tr {
                        td.when { (when(&event.at, now)) }
                        td {
                            @if let Some(from) = event.from { (state_badge(from)) " → " }
                            (state_badge(event.to))
                        }
                        td { (event.actor) }
                        td.detail { (event.detail) }
                    }
                }
            }
        }
    };
    Ok(page(&title, Some(&chrome), content))
}

fn fields(job: &Job, now: DateTime<Utc>) -> Markup {
    let optional = |value: Option<&str>| value.unwrap_or("—").to_owned();
    html! {
        dl.fields {
            dt { "Person" } dd { (job.email) }
            dt { "Account id" } dd { (optional(job.account_id.as_deref())) }
            dt { "Action" } dd { code { (job.action) } }
            @if job.action.handover().is_some() {
                dt { "Successor" } dd { (optional(job.successor_account_id.as_deref())) }
                @if let Some(done) = &job.handover {
                    dt { "Handed over" } dd.items { @for item in &done.moved { code { (item) } " " } }
                    @if !done.kept.is_empty() {
                        dt { "Stayed" } dd.items {
                            @for kept in &done.kept { code { (kept.item) } " (" (kept.reason) ")" br; }
                        }
                    }
                }
            }
            dt { "Parameters" } dd { code { (serde_json::Value::Object(job.params.clone())) } }
            dt { "Runs" } dd { (when(&job.run_at, now)) }
            dt { "Lane" } dd { span class={ "badge lane-" (job.lane.as_str()) } { (job.lane.as_str()) } }
            dt { "Attempts" } dd { (job.attempts) " of " (job.max_attempts) }
            dt { "Outcome" } dd { (optional(job.outcome.map(|o| o.as_str()))) }
            dt { (if job.state == JobState::Cancelled { "Reason" } else { "Last error" }) }
            dd.detail { (optional(job.last_error.as_deref())) }
            dt { "After step" } dd {
                @if let Some(previous) = job.depends_on { (job_link(previous)) } @else { "—" }
            }
            dt { "Source" } dd { (optional(job.source.as_deref())) }
            dt { "Rule" } dd { (optional(job.rule.as_deref())) }
            dt { "Delivery id" } dd { (optional(job.delivery_id.as_deref())) }
            dt { "Created" } dd { (when(&job.created_at, now)) }
            dt { "Updated" } dd { (when(&job.updated_at, now)) }
        }
    }
}

fn transition_label(transition: Transition) -> &'static str {
    match transition {
        Transition::Approve => "Approve",
        Transition::Cancel => "Cancel",
        Transition::Retry => "Retry",
    }
}

fn transition_class(transition: Transition) -> &'static str {
    match transition {
        Transition::Approve => "primary",
        Transition::Cancel => "danger",
        Transition::Retry => "secondary",
    }
}

fn parse_transition(text: &str) -> Result<Transition, ConsoleError> {
    [Transition::Approve, Transition::Cancel, Transition::Retry]
        .into_iter()
        .find(|t| t.as_str() == text)
        .ok_or_else(|| ConsoleError::NotFound(format!("There is no action `{text}` for jobs.")))
}

/// What the operator is about to do, in words, before the button that does it.
fn consequence(transition: Transition, job: &Job, dry_run: bool, now: DateTime<Utc>) -> Markup {
    let effect = if dry_run {
        "Dry run is on: the worker only resolves the account and records what it would do."
    } else {
        "Dry run is off: this changes the account in Atlassian."
    };
    html! {
        @match transition {
            Transition::Approve => {
                p { "The job becomes pending. The worker runs it when due: "
                    (job.run_at.format("%Y-%m-%d %H:%M UTC")) " (" (view::relative(job.run_at, now)) ")." }
                p.warning { (effect) }
            }
            Transition::Cancel => {
                p { "The job is cancelled, and so are the later steps of its chain." }
                p.warning { "A cancelled job cannot be brought back: to do it after all, the sender must deliver the event again." }
            }
            Transition::Retry => {
                p { "The job goes back to pending with its attempts reset, and runs as soon as the worker picks it up. Later steps of its chain that were cancelled with it stay cancelled." }
                p.warning { (effect) }
            }
        }
    }
}

pub(super) async fn confirm(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Path((id, transition)): Path<(String, String)>,
) -> Result<Html<String>, ConsoleError> {
    let transition = parse_transition(&transition)?;
    let JobWithEvents { job, .. } = load(&state, job_id(&id)?).await?;
    if !transition.allowed_from().contains(&job.state) {
        return Err(ConsoleError::Conflict(format!(
            "Job #{} is {}: it cannot be {}.",
            job.id,
            view::state_label(job.state),
            match transition {
                Transition::Approve => "approved",
                Transition::Cancel => "cancelled",
                Transition::Retry => "retried",
            }
        )));
    }
    let chrome = chrome(&state, &session, Section::Jobs, uri.to_string()).await?;
    let now = Utc::now();
    let title = format!("{} job #{}?", transition_label(transition), job.id);
    let content = html! {
        section.confirm {
            h1 { (title) }
            table.jobs { tbody { tr {
                td { (job_link(job.id)) }
                td.email { (job.email) }
                td { (action(&job)) }
                td { (state_badge(job.state)) }
                td.when { (when(&job.run_at, now)) }
                td.origin { (origin(&job)) }
            } } }
            (consequence(transition, &job, state.config.dry_run, now))
            form method="post" action={ "/console/jobs/" (job.id) "/" (transition.as_str()) } {
                (csrf_field(&session.csrf))
                button class=(transition_class(transition)) type="submit" {
                    (transition_label(transition)) " job #" (job.id)
                }
                a.back href={ "/console/jobs/" (job.id) } { "Back, change nothing" }
            }
        }
    };
    Ok(page(&title, Some(&chrome), content))
}

pub(super) async fn transition(
    State(state): State<AppState>,
    Path((id, transition)): Path<(String, String)>,
    _post: CheckedPost,
) -> Result<Redirect, ConsoleError> {
    let transition = parse_transition(&transition)?;
    let id = job_id(&id)?;
    match transition {
        Transition::Approve => state.store.approve(id, ACTOR).await?,
        Transition::Cancel => {
            state
                .store
                .cancel(id, ACTOR, "cancelled by an operator in the console")
                .await?
        }
        Transition::Retry => state.store.retry(id, ACTOR).await?,
    };
    tracing::info!(job_id = %id, transition = %transition, "job changed in the console");
    Ok(Redirect::to(&format!("/console/jobs/{id}")))
}
