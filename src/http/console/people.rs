//! People and their cases (README, "Proof for auditors"): the list with its filters (SLA
//! missed, verification failed, reactivated), a person's page with the timeline of the case,
//! and the download of the time-to-revoke report as CSV for the console's session (the
//! admin API's `/api/v1/evidence/report` takes the bearer token instead).

use axum::extract::{Path, Query, State};
use axum::http::Uri;
use axum::response::{Html, Response};
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use maud::{Markup, html};
use serde::Deserialize;

use super::session::Session;
use super::view::{Section, job_link, query_value, state_badge, when};
use super::{ConsoleError, chrome, page};
use crate::evidence::case::{Case, CaseSummary, MomentKind, time_to_revoke};
use crate::evidence::people::{self, CaseFilter, Cursor, SlaFilter};
use crate::evidence::report::{self, Period};
use crate::http::AppState;
use crate::store::VerifiedState;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize)]
pub(super) struct ListQuery {
    show: Option<String>,
    after: Option<String>,
}

/// The list's tabs: (query value, label), the first shows everyone.
const TABS: [(&str, &str); 4] = [
    ("", "everyone"),
    ("sla_missed", "SLA missed"),
    ("verification_failed", "verification failed"),
    ("reactivated", "reactivated"),
];

fn filter_of(show: &str) -> Result<CaseFilter, ConsoleError> {
    let mut filter = CaseFilter {
        limit: PAGE_SIZE,
        ..CaseFilter::default()
    };
    match show {
        "" => {}
        "sla_missed" => filter.sla = Some(SlaFilter::Missed),
        "verification_failed" => filter.verification_failed = true,
        "reactivated" => filter.reactivated = true,
        other => {
            return Err(ConsoleError::BadRequest(format!(
                "There is no list of people named {other}."
            )));
        }
    }
    Ok(filter)
}

fn list_href(show: &str, after: Option<&Cursor>) -> String {
    let mut query = Vec::new();
    if !show.is_empty() {
        query.push(format!("show={show}"));
    }
    if let Some(after) = after {
        query.push(format!("after={after}"));
    }
    if query.is_empty() {
        "/console/people".to_owned()
    } else {
        format!("/console/people?{}", query.join("&"))
    }
}

fn person_href(email: &str) -> String {
    format!("/console/people/{}", query_value(email))
}

/// This calendar quarter, the period an auditor asks about most.
fn this_quarter(now: DateTime<Utc>) -> (NaiveDate, NaiveDate) {
    let first_month = (now.month0() / 3) * 3 + 1;
    let start = NaiveDate::from_ymd_opt(now.year(), first_month, 1).expect("a first of a month");
    let next = if first_month == 10 {
        NaiveDate::from_ymd_opt(now.year() + 1, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(now.year(), first_month + 3, 1)
    }
    .expect("a first of a month");
    (start, next.pred_opt().expect("a day before"))
}

fn evidence_href(from: NaiveDate, to: NaiveDate) -> String {
    format!("/console/evidence.csv?from={from}&to={to}")
}

pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Query(query): Query<ListQuery>,
) -> Result<Html<String>, ConsoleError> {
    let show = query.show.unwrap_or_default();
    let mut filter = filter_of(&show)?;
    filter.after = query
        .after
        .filter(|a| !a.is_empty())
        .map(|a| Cursor::parse(&a))
        .transpose()
        .map_err(ConsoleError::BadRequest)?;
    let now = Utc::now();
    let page_of = people::list(
        state.store.as_ref(),
        &filter,
        state.config.evidence.sla,
        now,
    )
    .await?;
    let chrome = chrome(&state, &session, Section::People, uri.to_string()).await?;
    let (from, to) = this_quarter(now);
    let content = html! {
        h1 { "People" }
        nav.tabs {
            @for (value, label) in TABS {
                a href=(list_href(value, None)) aria-current=[(show == value).then_some("page")] { (label) }
            }
        }
        p.muted {
            "One case per person a delivery or request named, oldest first seen first. "
            "The SLA target is "
            (crate::domain::duration::Span::from_secs(state.config.evidence.sla.as_secs()))
            ", counted from when offboard heard of them or when they were due, whichever is "
            "later, to when their access was removed; a case is open until it is met or missed."
        }
        p.evidence {
            a.button href=(evidence_href(from, to)) { "Evidence: download this quarter's CSV" }
            " " a href="/console/evidence" { "another period" }
        }
        div.scroll { table.people {
            thead {
                tr {
                    th { "Person" } th { "First seen" } th { "Due" } th { "Access removed" }
                    th { "SLA" } th { "Verification" } th { "Reactivated" }
                }
            }
            tbody {
                @for case in &page_of.cases {
                    tr {
                        td.email { a href=(person_href(&case.email)) { (case.email) } }
                        td.when { (when(&case.first_seen, now)) }
                        td.when { (when(&case.effective_at, now)) }
                        td.when { (optional_when(case.access_removed_at, now)) }
                        td { (sla_badge(case)) }
                        td { (verification_badge(case.verified_state)) }
                        td.when { (optional_when(case.reactivated_at, now)) }
                    }
                }
                @if page_of.cases.is_empty() {
                    tr { td.empty colspan="7" { "Nobody here." } }
                }
            }
        } }
        nav.pages {
            @if filter.after.is_some() {
                a href=(list_href(&show, None)) { "← First" }
            }
            @if let Some(next) = &page_of.next_after {
                a href=(list_href(&show, Some(next))) { "More people →" }
            }
        }
    };
    Ok(page("People", Some(&chrome), content))
}

fn optional_when(at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Markup {
    html! {
        @if let Some(at) = at { (when(&at, now)) } @else { span.muted { "—" } }
    }
}

fn sla_badge(case: &CaseSummary) -> Markup {
    let word = report::sla_word(case.sla.met);
    let class = match case.sla.met {
        Some(true) => "badge state-succeeded",
        Some(false) => "badge state-failed",
        None => "badge state-pending",
    };
    html! { span class=(class) title={ "target " (case.sla.target) } { (word) } }
}

fn verification_badge(state: Option<VerifiedState>) -> Markup {
    html! {
        @match state {
            Some(VerifiedState::Verified) => span.badge.state-succeeded { "verified" },
            Some(VerifiedState::VerificationFailed) => span.badge.state-failed { "verification failed" },
            None => span.muted { "not verified" },
        }
    }
}

pub(super) async fn show(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Path(email): Path<String>,
) -> Result<Html<String>, ConsoleError> {
    let now = Utc::now();
    let case = people::case(state.store.as_ref(), &email, state.config.evidence.sla, now)
        .await?
        .ok_or_else(|| ConsoleError::NotFound(format!("No delivery or request named {email}.")))?;
    let chrome = chrome(&state, &session, Section::People, uri.to_string()).await?;
    let c = &case.summary;
    let content = html! {
        h1 { (c.email) " " (sla_badge(c)) }
        dl.fields {
            dt { "First seen" } dd { (when(&c.first_seen, now)) }
            dt { "Due" } dd { (when(&c.effective_at, now)) }
            dt { "Access removed" } dd { (optional_when(c.access_removed_at, now)) }
            dt { "Time to revoke" } dd {
                @match time_to_revoke(c.first_seen, c.effective_at, c.access_removed_at) {
                    Some(took) => (took_text(took)),
                    None => span.muted { "not removed yet" },
                }
                " (target " (c.sla.target) ")"
            }
            dt { "Verification" } dd {
                (verification_badge(c.verified_state))
                @if let Some(at) = &c.verified_at { " " (when(at, now)) }
            }
            dt { "Reactivated" } dd { (optional_when(c.reactivated_at, now)) }
        }
        (handed_over(&case))
        h2 { "Timeline" }
        (timeline(&case, now))
        h2 { "Jobs" }
        div.scroll { table.jobs {
            thead { tr { th { "Job" } th { "Action" } th { "State" } th { "Outcome or last error" } th { "Source / rule" } } }
            tbody {
                @for job in &case.jobs {
                    @let j = &job.job;
                    tr {
                        td { (job_link(j.id)) }
                        td { code { (j.action) } }
                        td { (state_badge(j.state)) }
                        td.result {
                            @if let Some(outcome) = j.outcome { span.outcome { (outcome.as_str()) } }
                            @else if let Some(error) = &j.last_error { span.error { (error) } }
                            @else { span.muted { "—" } }
                        }
                        td.origin { (j.source.as_deref().unwrap_or("—")) @if let Some(rule) = &j.rule { " / " span.rule { (rule) } } }
                    }
                }
            }
        } }
    };
    Ok(page(&c.email, Some(&chrome), content))
}

/// What the person's hand-over steps gave their successor, item by item: no API gives a
/// transfer back, so this is what an operator gives back by hand after a rehire (README,
/// "Hand-over before removal").
fn handed_over(case: &Case) -> Markup {
    let steps: Vec<_> = case
        .jobs
        .iter()
        .map(|job| &job.job)
        .filter(|job| job.handover.as_ref().is_some_and(|h| !h.is_empty()))
        .collect();
    html! {
        @if !steps.is_empty() {
            h2 { "Handed over" }
            p.muted { "A transfer is not undone by a rehire: give these back by hand if needed." }
            div.scroll { table.handover {
                thead { tr { th { "Job" } th { "Action" } th { "Successor" } th { "Moved" } th { "Stayed with the person" } } }
                tbody {
                    @for job in steps {
                        @let done = job.handover.as_ref().expect("filtered on");
                        tr {
                            td { (job_link(job.id)) }
                            td { code { (job.action) } }
                            td { code { (job.successor_account_id.as_deref().unwrap_or("—")) } }
                            td.items { @for item in &done.moved { code { (item) } " " } }
                            td.items {
                                @for kept in &done.kept { code { (kept.item) } " " span.muted { "(" (kept.reason) ")" } br; }
                            }
                        }
                    }
                }
            } }
        }
    }
}

fn took_text(took: chrono::Duration) -> String {
    let minutes = took.num_minutes();
    if minutes < 1 {
        format!("{} s", took.num_seconds())
    } else if minutes < 120 {
        format!("{minutes} min")
    } else {
        format!("{:.1} hours", took.num_minutes() as f64 / 60.0)
    }
}

fn timeline(case: &Case, now: DateTime<Utc>) -> Markup {
    html! {
        div.scroll { table.timeline {
            thead { tr { th { "When" } th { "What" } th { "Job" } th { "Detail" } } }
            tbody {
                @for moment in case.timeline() {
                    tr class={ "moment-" (moment.kind.as_str()) } {
                        td.when { (when(&moment.at, now)) }
                        td { span class={ "badge kind-" (moment.kind.as_str()) } { (kind_label(moment.kind)) } }
                        td { @if let Some(id) = moment.job { (job_link(id)) } }
                        td.detail { (moment.what) }
                    }
                }
            }
        } }
    }
}

fn kind_label(kind: MomentKind) -> &'static str {
    match kind {
        MomentKind::Delivery => "delivery",
        MomentKind::Job => "job",
        MomentKind::Inverse => "inverse (undo)",
        MomentKind::Verification => "verification",
        MomentKind::VerificationFailed => "verification failed",
        MomentKind::Recheck => "recheck",
        MomentKind::Reactivated => "reactivated",
    }
}

#[derive(Deserialize)]
pub(super) struct EvidenceQuery {
    from: Option<String>,
    to: Option<String>,
}

/// The form that picks a period for the CSV.
pub(super) async fn evidence(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let chrome = chrome(&state, &session, Section::People, uri.to_string()).await?;
    let (from, to) = this_quarter(Utc::now());
    let content = html! {
        h1 { "Evidence" }
        p.muted {
            "The time-to-revoke report: one row per person first seen in the period, with when "
            "they were named, due and removed, the verification, SLA met or missed, and each job's "
            "action and outcome. Cells a spreadsheet would run as a formula are prefixed with "
            code { "'" } "."
        }
        form.filter method="get" action="/console/evidence.csv" {
            label for="from" { "From" }
            input #from type="date" name="from" value=(from.to_string()) required;
            label for="to" { "to" }
            input #to type="date" name="to" value=(to.to_string()) required;
            button.primary type="submit" { "Download CSV" }
        }
    };
    Ok(page("Evidence", Some(&chrome), content))
}

/// The report of a period as a CSV attachment.
pub(super) async fn evidence_csv(
    State(state): State<AppState>,
    _session: Session,
    Query(query): Query<EvidenceQuery>,
) -> Result<Response, ConsoleError> {
    let period = Period::parse(
        query.from.as_deref().unwrap_or_default(),
        query.to.as_deref().unwrap_or_default(),
    )
    .map_err(ConsoleError::BadRequest)?;
    let report = report::build(
        state.store.as_ref(),
        period,
        state.config.evidence.sla,
        Utc::now(),
    )
    .await?;
    Ok(crate::http::people::csv_attachment(&report))
}
