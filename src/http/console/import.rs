//! The Import page (README, "Operator console"): upload a CSV, see every row checked (bad
//! rows marked, nothing created), then confirm. The file is the same CSV `offboard jobs
//! import` takes, checked by the same code (`crate::manual::import`); the jobs have source
//! `console`, awaiting approval unless the operator unticks it. The same file confirmed
//! again creates nothing.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Html;
use maud::{Markup, html};

use super::session::{CheckedFields, Session};
use super::view::{Section, csrf_field};
use super::{ConsoleError, chrome, page};
use crate::domain::{Action, Answer, DeliveryAnswer, Param};
use crate::http::AppState;
use crate::manual::import::{BadRow, CheckedRow, check, check_rows};
use crate::manual::{self, ManualSource, Summary};
use crate::store::DeliveryReceipt;

/// The largest file the page takes, the size of 10,000 generous rows.
pub(super) const MAX_FILE_BYTES: usize = 4 * 1024 * 1024;

pub(super) async fn form(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let chrome = chrome(&state, &session, Section::Import, uri.to_string()).await?;
    let content = html! {
        h1 { "Import" }
        p.hint { "A CSV file with a header row: " code { "email" } " is required; " code { "action" } ", " code { "account_id" } ", " code { "at" } @for param in Param::ALL { ", " code { (param.name()) } } " are taken; " code { "display_name" } ", " code { "active" } ", " code { "service_desks" } " (what the Customers listing exports) are ignored. Every row is checked and shown before anything is created." }
        form method="post" action="/console/import" enctype="multipart/form-data" {
            (csrf_field(&session.csrf))
            p { label { "CSV file " input type="file" name="file" accept=".csv,text/csv" required; } }
            p { label { "Action of rows without one "
                select name="action" {
                    option value="" { "(each row names its action)" }
                    @for action in Action::ALL { option value=(action.as_str()) { (action.as_str()) } }
                }
            } }
            p { label { input type="checkbox" name="approval" value="1" checked; " create the jobs awaiting approval" } }
            button.primary type="submit" { "Check the file" }
        }
    };
    Ok(page("Import", Some(&chrome), content))
}

/// The options an import form posts.
fn options(form: &CheckedFields) -> (Option<String>, bool) {
    let action = form
        .get("action")
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_owned);
    (action, form.get("approval").is_some())
}

pub(super) async fn checked(
    State(state): State<AppState>,
    uri: Uri,
    form: CheckedFields,
) -> Result<Html<String>, ConsoleError> {
    let session = form.session();
    let file = form
        .file
        .clone()
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ConsoleError::BadRequest("Choose a CSV file to import.".into()))?;
    if file.len() > MAX_FILE_BYTES {
        return Err(ConsoleError::BadRequest(format!(
            "The file is larger than {} MiB.",
            MAX_FILE_BYTES / (1024 * 1024)
        )));
    }
    let (action, approval) = options(&form);
    let rows = check_rows(
        &state.config,
        &file,
        action.as_deref(),
        approval,
        chrono::Utc::now(),
        |_| {},
    );
    let chrome = chrome(&state, &session, Section::Import, uri.to_string()).await?;
    let content = match rows {
        Err(file_errors) => html! {
            h1 { "The file cannot be imported" }
            (bad_rows(&file_errors))
            p { "Nothing was created. " a href="/console/import" { "Choose another file" } }
        },
        Ok(rows) => {
            let bad = rows.iter().filter(|r| r.result.is_err()).count();
            html! {
                h1 { "Checked " (rows.len()) " rows" }
                @if bad > 0 {
                    p.notice { (bad) (if bad == 1 { " row cannot" } else { " rows cannot" }) " be imported (marked below). Nothing was created: fix the file and check it again." }
                } @else {
                    p { "Every row is valid. Nothing is created until you confirm." }
                }
                (rows_table(&rows))
                @if bad == 0 {
                    form method="post" action="/console/import/confirm" {
                        (csrf_field(&session.csrf))
                        // The file goes back with the confirmation, checked again there.
                        input type="hidden" name="csv" value=(String::from_utf8_lossy(&file));
                        @if let Some(action) = &action { input type="hidden" name="action" value=(action); }
                        @if approval { input type="hidden" name="approval" value="1"; }
                        @if approval {
                            p { "The jobs are created " strong { "awaiting approval" } "." }
                        } @else {
                            p.warning { "The jobs are created pending: the worker runs them when due." }
                        }
                        button.primary type="submit" { "Import " (rows.len()) " rows" }
                        a.back href="/console/import" { "Back, change nothing" }
                    }
                } @else {
                    p { a href="/console/import" { "Choose another file" } }
                }
            }
        }
    };
    Ok(page("Import", Some(&chrome), content))
}

pub(super) async fn confirm(
    State(state): State<AppState>,
    uri: Uri,
    form: CheckedFields,
) -> Result<Html<String>, ConsoleError> {
    let session = form.session();
    let file = form.get("csv").unwrap_or_default().as_bytes().to_vec();
    let (action, approval) = options(&form);
    let chains = check(
        &state.config,
        &file,
        action.as_deref(),
        approval,
        chrono::Utc::now(),
        |_| {},
    )
    .map_err(|bad| {
        ConsoleError::BadRequest(format!(
            "The file is not valid any more ({} bad rows); nothing was created.",
            bad.len()
        ))
    })?;
    // The console does not vouch for account ids (README, "Manual and bulk jobs").
    let key = manual::import::key(&file, action.as_deref(), approval, false);
    let receipt = manual::enqueue(
        state.store.as_ref(),
        &state.config,
        ManualSource::Console,
        &key,
        &file,
        chains,
    )
    .await?;
    let chrome = chrome(&state, &session, Section::Import, uri.to_string()).await?;
    Ok(page(
        "Imported",
        Some(&chrome),
        outcome(&accepted(receipt)?),
    ))
}

fn rows_table(rows: &[CheckedRow]) -> Markup {
    html! {
        table.jobs.import {
            thead { tr { th { "Line" } th { "Email" } th { "Action" } th { "Account" } th { "Check" } } }
            tbody {
                @for row in rows {
                    tr class=[row.result.is_err().then_some("bad")] {
                        td { (row.line) }
                        td.email { (row.entry.as_ref().map_or("", |e| e.email.as_str())) }
                        td { (row.entry.as_ref().map_or("", |e| e.action.as_str())) }
                        td { code { (row.entry.as_ref().and_then(|e| e.account_id.as_deref()).unwrap_or("")) } }
                        td {
                            @match &row.result {
                                Ok(_) => { span.badge.state-succeeded { "ok" } }
                                Err(why) => { span.badge.state-failed { "bad" } " " (why) }
                            }
                        }
                    }
                }
            }
        }
    }
}

fn bad_rows(bad: &[BadRow]) -> Markup {
    html! {
        ul.bad { @for row in bad { li { (row.to_string()) } } }
    }
}

/// What a manual request did, for the page after the confirmation.
/// A manual request's answer: always accepted (no rule maps it, so it cannot be unmappable).
pub(super) fn accepted(receipt: DeliveryReceipt) -> Result<DeliveryAnswer, ConsoleError> {
    match receipt.answer {
        Answer::Accepted(answer) => Ok(answer),
        Answer::Unmappable { message, .. } => Err(ConsoleError::BadRequest(message)),
    }
}

pub(super) fn outcome(answer: &DeliveryAnswer) -> Markup {
    let summary = Summary::of(ManualSource::Console, answer);
    html! {
        h1 { "Created " (summary.created) " jobs" }
        p.summary { (summary.to_string()) @if answer.duplicate { " — this was confirmed before: nothing new was created" } "." }
        @if let Some(reason) = &answer.approval_required {
            p.notice { "Every job awaits approval: " (reason) }
        }
        @if !answer.refused.is_empty() {
            h2 { "Refused" }
            ul { @for r in &answer.refused { li { (r.email) ": " (r.reason) } } }
        }
        p {
            a href="/console?state=awaiting_approval" { "Jobs awaiting approval" } " · "
            a href="/console" { "All jobs" }
        }
    }
}
