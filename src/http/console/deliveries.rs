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
    let content = html! {
        h1 { "Recent deliveries" }
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
                    tr {
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
