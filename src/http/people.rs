//! People and their cases (README, "Proof for auditors"): `GET /api/v1/people`,
//! `GET /api/v1/people/{email}` and the time-to-revoke report the console downloads,
//! `GET /api/v1/evidence/report`, behind the admin token like the rest of `/api/v1`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::admin::{limit_within, non_empty, require_admin};
use super::error::{ApiError, ErrorBody};
use crate::evidence::case::{Case, CaseSummary};
use crate::evidence::people::{self, CaseFilter, Cursor};
use crate::evidence::report::{self, Period, Report};

const DEFAULT_LIMIT: u32 = 50;
const MAX_LIMIT: u32 = 500;

pub fn router(state: AppState) -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_people))
        .routes(routes!(get_person))
        .routes(routes!(evidence_report))
        .route_layer(middleware::from_fn_with_state(state, require_admin))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct PeopleQuery {
    /// `missed` or `met`: only cases whose SLA was missed (or met). An open case is neither.
    sla: Option<String>,
    /// `failed`: only cases whose newest verification contradicted the chain's outcomes.
    verification: Option<String>,
    /// `true`: only cases a recheck found active again.
    reactivated: Option<String>,
    /// Only people first seen at or after this day (`2026-01-01`) or RFC 3339 time.
    from: Option<String>,
    /// Only people first seen before the end of this day, or before this RFC 3339 time.
    to: Option<String>,
    /// At most this many cases (default 50, at most 500).
    limit: Option<String>,
    /// The `next_after` of the previous page.
    after: Option<String>,
}

/// A page of cases by first_seen, then email.
#[derive(Serialize, ToSchema)]
struct PeoplePage {
    people: Vec<CaseSummary>,
    /// Pass as `after` for the next page; null once every case was walked. A page walks at
    /// most 5000 people, so a narrow filter may answer fewer than `limit` cases and a cursor.
    next_after: Option<String>,
}

fn filter_of(query: PeopleQuery) -> Result<CaseFilter, ApiError> {
    let verification_failed = match non_empty(query.verification).as_deref() {
        None => false,
        Some("failed") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "verification must be `failed`, not `{other}`"
            )));
        }
    };
    let reactivated = match non_empty(query.reactivated).as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "reactivated must be `true` or `false`, not `{other}`"
            )));
        }
    };
    // One bound alone leaves the other side open.
    let (from, to) = match (non_empty(query.from), non_empty(query.to)) {
        (None, None) => (None, None),
        (from, to) => {
            let period = Period::parse(
                from.as_deref().unwrap_or("0001-01-01"),
                to.as_deref().unwrap_or("9999-12-30"),
            )
            .map_err(ApiError::BadRequest)?;
            (Some(period.from), Some(period.to))
        }
    };
    Ok(CaseFilter {
        sla: non_empty(query.sla)
            .map(|s| s.parse())
            .transpose()
            .map_err(ApiError::BadRequest)?,
        verification_failed,
        reactivated,
        from,
        to,
        after: non_empty(query.after)
            .map(|a| Cursor::parse(&a))
            .transpose()
            .map_err(ApiError::BadRequest)?,
        limit: limit_within(query.limit, DEFAULT_LIMIT, MAX_LIMIT)?,
    })
}

/// Lists cases, oldest first seen first.
#[utoipa::path(get, path = "/api/v1/people", tag = "admin", params(PeopleQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "A page of cases", body = PeoplePage),
        (status = 400, description = "`bad_request`: an unknown filter value, a bad date, limit or cursor", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn list_people(
    State(state): State<AppState>,
    Query(query): Query<PeopleQuery>,
) -> Result<Json<PeoplePage>, ApiError> {
    let filter = filter_of(query)?;
    let page = people::list(
        state.store.as_ref(),
        &filter,
        state.config.evidence.sla,
        chrono::Utc::now(),
    )
    .await?;
    Ok(Json(PeoplePage {
        people: page.cases,
        next_after: page.next_after.map(|c| c.to_string()),
    }))
}

/// One person's case: times, verification, SLA, every job with its events, the deliveries.
#[utoipa::path(get, path = "/api/v1/people/{email}", tag = "admin",
    params(("email" = String, Path, description = "The person's email (case-insensitive)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The person's case", body = Case),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
        (status = 404, description = "`not_found`: no delivery or request named this person", body = ErrorBody),
    ))]
async fn get_person(
    State(state): State<AppState>,
    Path(email): Path<String>,
) -> Result<Json<Case>, ApiError> {
    people::case(
        state.store.as_ref(),
        &email,
        state.config.evidence.sla,
        chrono::Utc::now(),
    )
    .await?
    .map(Json)
    .ok_or_else(|| ApiError::NotFound(format!("no case for {email}")))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ReportQuery {
    /// The first day (`2026-01-01`) or RFC 3339 time of the period (first_seen).
    from: String,
    /// The last day of the period, or the RFC 3339 time it ends before.
    to: String,
    /// `json` (default) or `csv`.
    format: Option<String>,
}

/// The time-to-revoke report: one row per case first seen in the period.
#[utoipa::path(get, path = "/api/v1/evidence/report", tag = "admin", params(ReportQuery),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The report, as JSON or (`format=csv`) as a CSV attachment",
            content((Report = "application/json"), (String = "text/csv"))),
        (status = 400, description = "`bad_request`: a bad date or format", body = ErrorBody),
        (status = 401, description = "`unauthorized`", body = ErrorBody),
    ))]
async fn evidence_report(
    State(state): State<AppState>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, ApiError> {
    let period = Period::parse(&query.from, &query.to).map_err(ApiError::BadRequest)?;
    let csv = match non_empty(query.format).as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be `json` or `csv`, not `{other}`"
            )));
        }
    };
    let report = report::build(
        state.store.as_ref(),
        period,
        state.config.evidence.sla,
        chrono::Utc::now(),
    )
    .await?;
    if !csv {
        return Ok(Json(report).into_response());
    }
    Ok(csv_attachment(&report))
}

/// The report as the CSV file the API and the console's Evidence link both download, named
/// after its period.
pub(super) fn csv_attachment(report: &Report) -> Response {
    let name = format!(
        "attachment; filename=\"offboard-evidence-{}-{}.csv\"",
        report.from.format("%Y%m%d"),
        report.to.format("%Y%m%d")
    );
    (
        [
            (CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (CONTENT_DISPOSITION, name),
        ],
        report.csv(),
    )
        .into_response()
}
