//! The Customers page (README, "Operator console"): search the site's portal-only customers
//! by email or domain, select many, choose an action, review, confirm. The jobs are created
//! with source `console`, awaiting approval unless the operator unticks it, through the
//! guards of every manual request (`crate::manual`).

use axum::extract::{Query, State};
use axum::http::Uri;
use axum::response::Html;
use maud::{Markup, html};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use tokio::time::Instant;

use super::session::{CheckedFields, Session};
use super::view::{Section, csrf_field, query_value};
use super::{ConsoleError, chrome, page};
use crate::atlassian::{CustomerFilter, PortalCustomer};
use crate::config::Config;
use crate::domain::{Action, ApiFamily, Domain, NewChain, TargetAccount};
use crate::http::AppState;
use crate::http::customers::READING_REUSED_FOR;
use crate::manual::{self, Entry, ManualSource};

/// The most customers one result page shows; a narrower search finds the others.
const SHOWN: usize = 500;

#[derive(Deserialize)]
pub(super) struct SearchQuery {
    q: Option<String>,
    inactive: Option<String>,
    /// Read Atlassian again instead of the reading of the last ten minutes.
    fresh: Option<String>,
}

pub(super) async fn search(
    State(state): State<AppState>,
    session: Session,
    uri: Uri,
    Query(query): Query<SearchQuery>,
) -> Result<Html<String>, ConsoleError> {
    let chrome = chrome(&state, &session, Section::Customers, uri.to_string()).await?;
    let q = query.q.unwrap_or_default().trim().to_owned();
    let inactive = query.inactive.is_some_and(|v| !v.is_empty());
    let asked = !q.is_empty() || inactive || query.fresh.is_some();
    let client = state
        .atlassian
        .as_ref()
        .filter(|client| client.is_configured(ApiFamily::Site));
    let found = match (client, asked) {
        (None, _) => Err(
            html! { p.notice { "The site credentials are not configured: set site_url, site_email and site_api_token in [atlassian] to list customers." } },
        ),
        (Some(_), false) => Ok(None),
        (Some(client), true) => {
            let now = Instant::now();
            let fresh_since = if query.fresh.is_some() {
                now
            } else {
                now.checked_sub(READING_REUSED_FOR).unwrap_or(now)
            };
            match state.customers.customers(client, fresh_since).await {
                Ok(all) => matching(&all, &q, inactive).map(Some),
                Err(e) => {
                    tracing::warn!(error = %e, "reading the customer inventory for the console failed");
                    Err(
                        html! { p.notice { "Atlassian did not answer the listing: " (e.to_string()) } },
                    )
                }
            }
        }
    };
    let content = html! {
        h1 { "Customers" }
        p.hint { "JSM portal-only customers of every service desk of the site, read from Atlassian (a reading is reused for ten minutes). Search by email (part of it) or by domain (" code { "@example.com" } ", subdomains included)." }
        form.filter method="get" action="/console/customers" {
            input type="search" name="q" value=(q) placeholder="email or @domain" aria-label="email or domain";
            label { input type="checkbox" name="inactive" value="1" checked[inactive]; " inactive only" }
            button type="submit" { "Search" }
            @if asked {
                a href={ "/console/customers?q=" (query_value(&q)) (if inactive { "&inactive=1" } else { "" }) "&fresh=1" } { "Read Atlassian again" }
            }
        }
        @match &found {
            Err(notice) => { (notice) }
            Ok(None) => { p.empty { "Search to list customers." } }
            Ok(Some(customers)) => { (results(customers, &session.csrf)) }
        }
    };
    Ok(page("Customers", Some(&chrome), content))
}

/// The customers the search names: a domain (`@example.com` or `example.com`) with its
/// subdomains, else a part of the email, ASCII case-insensitively.
fn matching(
    all: &[PortalCustomer],
    q: &str,
    inactive: bool,
) -> Result<Vec<PortalCustomer>, Markup> {
    let by_domain = !q.is_empty() && (q.starts_with('@') || !q.contains('@'));
    let domain = if by_domain && q.contains('.') {
        Some(Domain::parse(q).map_err(|why| html! { p.notice { "Not a domain: " (why) } })?)
    } else {
        None
    };
    let filter = CustomerFilter {
        domain,
        inactive_only: inactive,
    };
    let needle = q.to_ascii_lowercase();
    Ok(all
        .iter()
        .filter(|c| filter.admits(c))
        .filter(|c| {
            filter.domain.is_some()
                || needle.is_empty()
                || c.email
                    .as_deref()
                    .is_some_and(|e| e.to_ascii_lowercase().contains(&needle))
        })
        .cloned()
        .collect())
}

/// The customer actions and the parameter each needs, for the form.
fn customer_actions() -> impl Iterator<Item = Action> {
    Action::ALL
        .into_iter()
        .filter(|a| a.target() == TargetAccount::Customer)
}

fn results(customers: &[PortalCustomer], csrf: &str) -> Markup {
    html! {
        p { (customers.len()) " customers match" @if customers.len() > SHOWN { "; the first " (SHOWN) " are shown, search narrower for the others" } "." }
        @if !customers.is_empty() {
            form method="post" action="/console/customers/review" {
                (csrf_field(csrf))
                table.jobs.customers {
                    thead { tr { th { "Select" } th { "Email" } th { "Name" } th { "Account" } th { "Active" } th { "Service desks" } } }
                    tbody {
                        @for customer in customers.iter().take(SHOWN) {
                            tr {
                                td {
                                    @if let Some(email) = &customer.email {
                                        input type="checkbox" name="person" value={ (customer.account_id) " " (email) } aria-label={ "select " (email) };
                                    } @else {
                                        span.muted title="the email is hidden by the customer's privacy settings" { "—" }
                                    }
                                }
                                td.email { (customer.email.as_deref().unwrap_or("(hidden)")) }
                                td { (customer.display_name.as_deref().unwrap_or("")) }
                                td { code { (customer.account_id) } }
                                td { @if customer.active { "yes" } @else { span.badge.state-cancelled { "inactive" } } }
                                td { (customer.service_desks.join(", ")) }
                            }
                        }
                    }
                }
                (action_fields())
                button.primary type="submit" { "Review the selection" }
            }
        }
    }
}

fn action_fields() -> Markup {
    html! {
        fieldset.enqueue {
            label { "Action "
                select name="action" {
                    @for action in customer_actions() {
                        option value=(action.as_str()) { (action.as_str()) }
                    }
                }
            }
            label { " Service desk or organization id (for remove_from_service_desk / remove_from_customer_organization) "
                input type="text" name="param" size="10";
            }
            label { input type="checkbox" name="approval" value="1" checked; " create the jobs awaiting approval" }
        }
    }
}

/// What a review or confirmation form posts (the people as `account_id email`, the action,
/// its parameter, whether the jobs wait for approval), checked into the chains to enqueue.
struct Selection {
    chains: Vec<NewChain>,
    action: Action,
    approval: bool,
}

fn selection(config: &Config, form: &CheckedFields) -> Result<Selection, ConsoleError> {
    let action: Action = form
        .get("action")
        .unwrap_or_default()
        .parse()
        .map_err(ConsoleError::BadRequest)?;
    if action.target() != TargetAccount::Customer {
        return Err(ConsoleError::BadRequest(format!(
            "{action} is not an action on portal-only customers."
        )));
    }
    let param = form.get("param").map(str::trim).filter(|p| !p.is_empty());
    let mut params = serde_json::Map::new();
    if let (Some(name), Some(value)) = (action.required_param(), param) {
        params.insert(name.to_owned(), value.into());
    }
    let mut entries = Vec::new();
    for person in form.all("person") {
        let (account_id, email) = person
            .split_once(' ')
            .ok_or_else(|| ConsoleError::BadRequest("A selected customer is malformed.".into()))?;
        entries.push(Entry {
            action: action.as_str().to_owned(),
            email: email.to_owned(),
            account_id: Some(account_id.to_owned()),
            at: None,
            params: params.clone(),
            successor: None,
            lane: None,
        });
    }
    if entries.is_empty() {
        return Err(ConsoleError::BadRequest(
            "Select at least one customer.".into(),
        ));
    }
    if entries.len() > manual::MAX_ENTRIES {
        return Err(ConsoleError::BadRequest(format!(
            "At most {} customers at once.",
            manual::MAX_ENTRIES
        )));
    }
    let approval = form.get("approval").is_some();
    let chains =
        manual::chains(config, &entries, approval, chrono::Utc::now()).map_err(|invalid| {
            ConsoleError::BadRequest(
                invalid
                    .iter()
                    .map(|(i, why)| format!("{}: {why}", entries[*i].email))
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    Ok(Selection {
        chains,
        action,
        approval,
    })
}

pub(super) async fn review(
    State(state): State<AppState>,
    uri: Uri,
    form: CheckedFields,
) -> Result<Html<String>, ConsoleError> {
    let session = form.session();
    let chosen = selection(&state.config, &form)?;
    let chrome = chrome(&state, &session, Section::Customers, uri.to_string()).await?;
    let n = chosen.chains.len();
    let content = html! {
        section.confirm {
            h1 { (chosen.action.as_str()) " for " (n) " customers?" }
            @if chosen.approval {
                p { "The jobs are created " strong { "awaiting approval" } ": nothing happens until each is approved." }
            } @else {
                p.warning { "The jobs are created pending: the worker runs them as soon as it can." }
            }
            @if state.config.dry_run {
                p { "Dry run is on: the worker only resolves each account and records what it would do." }
            } @else {
                p.warning { "Dry run is off: once they run, these jobs change the accounts in Atlassian." }
            }
            table.jobs { tbody {
                @for chain in &chosen.chains {
                    tr { td.email { (chain.email.as_str()) } td { code { (chain.account_id.as_deref().unwrap_or("")) } } }
                }
            } }
            form method="post" action="/console/customers/enqueue" {
                (csrf_field(&session.csrf))
                input type="hidden" name="action" value=(chosen.action.as_str());
                @if let Some(param) = form.get("param") { input type="hidden" name="param" value=(param); }
                @if chosen.approval { input type="hidden" name="approval" value="1"; }
                @for person in form.all("person") { input type="hidden" name="person" value=(person); }
                button.primary type="submit" { "Enqueue " (n) " jobs" }
                a.back href="/console/customers" { "Back, change nothing" }
            }
        }
    };
    Ok(page("Review", Some(&chrome), content))
}

pub(super) async fn enqueue(
    State(state): State<AppState>,
    uri: Uri,
    form: CheckedFields,
) -> Result<Html<String>, ConsoleError> {
    let session = form.session();
    let chosen = selection(&state.config, &form)?;
    // The same confirmation posted twice (a double click, a reload) is one request.
    let mut hash = Sha256::new();
    for (name, value) in form.fields.iter().filter(|(n, _)| n != "csrf") {
        hash.update(format!("{name}={value}\n"));
    }
    let key = format!("customers:{}", hex::encode(hash.finalize()));
    let body = serde_json::to_vec(&form.fields).unwrap_or_default();
    let receipt = manual::enqueue(
        state.store.as_ref(),
        &state.config,
        ManualSource::Console,
        &key,
        &body,
        chosen.chains,
    )
    .await?;
    let chrome = chrome(&state, &session, Section::Customers, uri.to_string()).await?;
    Ok(page(
        "Enqueued",
        Some(&chrome),
        super::import::outcome(&super::import::accepted(receipt)?),
    ))
}
