//! `GET /api/v1/customers` (README, "Customer inventory"): the site's portal-only customers,
//! read from Atlassian through the process's one client, so at the worker's pace and from its
//! buckets; filtered, and handed out in pages behind the admin token.
//!
//! A listing is read whole (Atlassian pages per service desk, we page over all of them), so a
//! first page reads it and the pages after it continue on that reading: walking a large
//! inventory costs one read, not one per page.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Query, State};
use axum::middleware;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;
use tokio::time::Instant;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::admin::{limit_within, non_empty, require_admin};
use super::error::{ApiError, ErrorBody};
use crate::atlassian::{CallError, Client, CustomerFilter, CustomerKey, PortalCustomer};
use crate::domain::{ApiFamily, Domain};

const DEFAULT_LIMIT: u32 = 100;
const MAX_LIMIT: u32 = 1000;

/// Pages after the first continue on the reading the first page made while it is at most
/// this old; an older one is read again (the cursor still continues after its customer).
pub(crate) const READING_REUSED_FOR: Duration = Duration::from_secs(600);

pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_customers))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

/// The latest reading of the inventory, shared by the requests of one process. Requests
/// queue for it, so listings that arrive together read Atlassian once.
#[derive(Clone, Default)]
pub struct CustomerSnapshot(Arc<Mutex<Option<Reading>>>);

struct Reading {
    finished: Instant,
    customers: Arc<Vec<PortalCustomer>>,
}

impl CustomerSnapshot {
    /// A reading that finished at or after `fresh_since`, else a new one.
    pub(crate) async fn customers(
        &self,
        client: &Client,
        fresh_since: Instant,
    ) -> Result<Arc<Vec<PortalCustomer>>, CallError> {
        let mut latest = self.0.lock().await;
        if let Some(reading) = latest.as_ref().filter(|r| r.finished >= fresh_since) {
            return Ok(reading.customers.clone());
        }
        let customers = Arc::new(client.portal_customers(&|_| {}).await?.customers);
        *latest = Some(Reading {
            finished: Instant::now(),
            customers: customers.clone(),
        });
        Ok(customers)
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct CustomersQuery {
    /// Only emails at this domain or one of its subdomains (case-insensitive).
    domain: Option<String>,
    /// `true` (or `1`): only customers whose access was revoked (`active: false`).
    inactive: Option<String>,
    /// At most this many customers (default 100, at most 1000).
    limit: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// A page of customers, by email (hidden emails last), then account id.
#[derive(Serialize, ToSchema)]
struct CustomerPage {
    customers: Vec<PortalCustomer>,
    /// Pass as `cursor` for the next page; null on the last page.
    next_cursor: Option<String>,
}

/// Lists the site's portal-only customers: every service desk's customer list, merged by
/// account. A first page reads Atlassian; the pages after it continue on that reading.
#[utoipa::path(get, path = "/api/v1/customers", tag = "admin", params(CustomersQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of portal-only customers", body = CustomerPage),
        (status = 400, description = "`bad_request`: a bad domain, inactive, limit or cursor", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 409, description = "`not_configured`: the site credentials are not in [atlassian]", body = ErrorBody),
        (status = 502, description = "`upstream_error`: Atlassian refused or failed a read", body = ErrorBody),
    ))]
async fn list_customers(
    State(state): State<AppState>,
    Query(query): Query<CustomersQuery>,
) -> Result<Json<CustomerPage>, ApiError> {
    let arrived = Instant::now();
    let limit = limit_within(query.limit, DEFAULT_LIMIT, MAX_LIMIT)? as usize;
    let filter = CustomerFilter {
        domain: non_empty(query.domain)
            .map(|d| Domain::parse(&d))
            .transpose()
            .map_err(|why| ApiError::BadRequest(format!("domain: {why}")))?,
        inactive_only: parse_flag(query.inactive)?,
    };
    let after = non_empty(query.cursor)
        .map(|c| parse_cursor(&c))
        .transpose()?;
    let client = state
        .atlassian
        .as_ref()
        .filter(|client| client.is_configured(ApiFamily::Site))
        .ok_or_else(|| ApiError::NotConfigured(NOT_CONFIGURED.into()))?;
    let fresh_since = match after {
        None => arrived,
        Some(_) => arrived.checked_sub(READING_REUSED_FOR).unwrap_or(arrived),
    };
    let customers = state
        .customers
        .customers(client, fresh_since)
        .await
        .map_err(upstream)?;
    Ok(Json(page(&customers, &filter, after.as_ref(), limit)))
}

const NOT_CONFIGURED: &str = "the site credentials are not configured: set site_url, site_email and site_api_token in [atlassian]";

fn upstream(err: CallError) -> ApiError {
    match err {
        CallError::NotConfigured { .. } => ApiError::NotConfigured(NOT_CONFIGURED.into()),
        other => {
            tracing::warn!(error = %other, "reading the customer inventory failed");
            ApiError::Upstream(other.to_string())
        }
    }
}

/// The customers after `after` that pass `filter`, at most `limit`, and the cursor of the
/// last one when more follow. `customers` is sorted by key.
fn page(
    customers: &[PortalCustomer],
    filter: &CustomerFilter,
    after: Option<&CustomerKey>,
    limit: usize,
) -> CustomerPage {
    let first = after.map_or(0, |after| customers.partition_point(|c| &c.key() <= after));
    let mut chosen = customers[first..].iter().filter(|c| filter.admits(c));
    let page: Vec<PortalCustomer> = chosen.by_ref().take(limit).cloned().collect();
    let next_cursor = match (chosen.next(), page.last()) {
        (Some(_), Some(last)) => Some(cursor_of(&last.key())),
        _ => None,
    };
    CustomerPage {
        customers: page,
        next_cursor,
    }
}

fn parse_flag(value: Option<String>) -> Result<bool, ApiError> {
    match non_empty(value).as_deref() {
        None | Some("false" | "0") => Ok(false),
        Some("true" | "1") => Ok(true),
        Some(_) => Err(ApiError::BadRequest(
            "inactive must be true, false, 1 or 0".into(),
        )),
    }
}

/// The cursor is the sort key of the last customer returned, so the next page starts after
/// it whatever was added or removed in between. Opaque to callers.
fn cursor_of(key: &CustomerKey) -> String {
    let json = serde_json::to_vec(key).expect("a key is plain strings and a bool");
    URL_SAFE_NO_PAD.encode(json)
}

fn parse_cursor(cursor: &str) -> Result<CustomerKey, ApiError> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|json| serde_json::from_slice(&json).ok())
        .ok_or_else(|| {
            ApiError::BadRequest("cursor is not a next_cursor this API handed out".into())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn customer(n: usize) -> PortalCustomer {
        PortalCustomer {
            account_id: format!("qm:{n}"),
            email: Some(format!("c{n:03}@example.com")),
            display_name: None,
            active: n.is_multiple_of(2),
            service_desks: vec!["1".into()],
        }
    }

    #[test]
    fn pages_follow_the_cursor_to_the_end() {
        let customers: Vec<PortalCustomer> = (0..10).map(customer).collect();
        let filter = CustomerFilter::default();
        let mut after = None;
        let mut seen = Vec::new();
        loop {
            let page = page(&customers, &filter, after.as_ref(), 4);
            seen.extend(page.customers.iter().map(|c| c.account_id.clone()));
            match page.next_cursor {
                Some(cursor) => after = Some(parse_cursor(&cursor).unwrap()),
                None => break,
            }
        }
        let all: Vec<String> = customers.iter().map(|c| c.account_id.clone()).collect();
        assert_eq!(seen, all);
    }

    #[test]
    fn a_filtered_last_page_has_no_cursor() {
        let customers: Vec<PortalCustomer> = (0..10).map(customer).collect();
        let inactive = CustomerFilter {
            inactive_only: true,
            ..CustomerFilter::default()
        };
        let page = page(&customers, &inactive, None, 5);
        assert_eq!(page.customers.len(), 5);
        assert_eq!(page.next_cursor, None);
    }

    #[test]
    fn bad_cursors_and_flags_are_refused() {
        for bad in ["%%%", "bm90IGpzb24", ""] {
            assert!(parse_cursor(bad).is_err(), "{bad:?}");
        }
        assert!(parse_flag(Some("yes".into())).is_err());
        assert!(parse_flag(Some("1".into())).unwrap());
        assert!(!parse_flag(None).unwrap());
    }
}
