//! Recent deliveries and what became of them.

use axum::extract::State;
use axum::http::Uri;
use axum::response::Html;
use chrono::Utc;
use maud::html;

use super::session::Session;
use super::view::{Section, job_link, when};
use super::{ConsoleError, chrome, page};
use crate::http::AppState;
use crate::store::DeliveryStatus;

const RECENT: u32 = 100;

pub(super) async fn list(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
) -> Result<Html<String>, ConsoleError> {
    let deliveries = state.store.list_deliveries(None, RECENT).await?;
    let chrome = chrome(&state, &session, Section::Deliveries, uri.to_string()).await?;
    let now = Utc::now();
    let held: Vec<_> = deliveries
        .iter()
        .filter(|d| d.approval_required.is_some())
        .collect();
    let content = html! {
        h1 { "Recent deliveries" }
        // A mass offboarding must not go unnoticed: its jobs wait until a person approves them.
        @if !held.is_empty() {
            section.mass-approval role="alert" {
                h2 {
                    (held.len()) " mass offboarding" @if held.len() != 1 { "s" }
                    " held for approval"
                }
                ul {
                    @for delivery in &held {
                        li {
                            "Delivery " code { (delivery.delivery_id) } " from " strong { (delivery.source) } ": "
                            (delivery.approval_required.as_deref().unwrap_or_default()) "."
                        }
                    }
                }
                p {
                    "None of their jobs runs until a person approves it: "
                    a href="/console?state=awaiting_approval" { "review the jobs awaiting approval" } "."
                }
            }
        }
        p.muted {
            "The last " (RECENT) " webhooks that passed their signature check, newest first. "
            "A repeated delivery gets the first one's answer and is not listed again; "
            "a delivery with a bad signature or a stale timestamp is never recorded "
            "(it is counted in " code { "offboard_deliveries_total" } " on " code { "/metrics" } ")."
        }
        table.deliveries {
            thead {
                tr { th { "Received" } th { "Source" } th { "Delivery id" } th { "Result" } th { "Jobs" } }
            }
            tbody {
                @for delivery in &deliveries {
                    tr.mass-approval[delivery.approval_required.is_some()] {
                        td.when { (when(&delivery.received_at, now)) }
                        td { (delivery.source) }
                        td { code { (delivery.delivery_id) } }
                        td.result {
                            @match delivery.status {
                                DeliveryStatus::Accepted => span.badge.state-succeeded { "accepted" },
                                DeliveryStatus::Unmappable => span.badge.state-failed { "unmappable" },
                            }
                            @if let Some(error) = &delivery.error {
                                div.error { (error) }
                            }
                            @if let Some(reason) = &delivery.approval_required {
                                " " span.badge.state-awaiting_approval { "approval required" }
                                div.reason { (reason) }
                            }
                        }
                        td {
                            @for id in &delivery.job_ids { (job_link(id)) " " }
                            @if delivery.job_ids.is_empty() { span.muted { "none" } }
                        }
                    }
                }
                @if deliveries.is_empty() {
                    tr { td.empty colspan="5" { "No deliveries yet." } }
                }
            }
        }
    };
    Ok(page("Deliveries", Some(&chrome), content))
}
