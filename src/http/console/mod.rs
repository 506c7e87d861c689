//! The operator console: server-rendered HTML over the same store operations as the admin
//! API, for people who would rather click than curl. Not part of the OpenAPI document.
//!
//! Sign-in is the admin token entered once, at most ten wrong tries a minute per client, counted
//! with the admin API's (see `crate::http::throttle`); after that a signed session cookie that a logout ends for good (see
//! [`session`]) and a CSRF token in every form. Nothing needs JavaScript.

mod customers;
mod deliveries;
mod import;
mod jobs;
mod login;
mod people;
mod session;
mod view;
mod worker;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::handler::Handler as _;
use axum::http::header::{
    CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, REFERRER_POLICY, X_CONTENT_TYPE_OPTIONS,
    X_FRAME_OPTIONS,
};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use maud::{Markup, html};

use super::AppState;
use crate::store::StoreError;
use view::{Chrome, Section};

const LOGIN_PATH: &str = "/console/login";
/// Who the audit trail names for changes made in the console.
const ACTOR: &str = "console";
const STYLESHEET: &str = include_str!("style.css");

/// The most a signed-in form of buttons (log out, a transition, pause) may be.
const MAX_FORM_BYTES: usize = 16 * 1024;
/// A customers review or confirmation: up to 500 ticked customers, an account id and an
/// email each.
const MAX_SELECTION_BYTES: usize = 1024 * 1024;
/// An import posts its file, and its confirmation the file again, as form fields.
const MAX_IMPORT_BYTES: usize = 3 * import::MAX_FILE_BYTES;

/// Each route reads at most the body it needs (README, "Operator console"): the login its few
/// KiB (`login::submit`, before any session exists), every other POST only once its session
/// is known to be valid (`session::CheckedFields`), under the limit of its route.
pub fn router() -> Router<AppState> {
    let limit = DefaultBodyLimit::max;
    Router::new()
        .route("/console", get(jobs::list))
        .route("/console/style.css", get(stylesheet))
        .route(LOGIN_PATH, get(login::form).post(login::submit))
        .route("/console/logout", post(login::logout))
        .route("/console/jobs/{id}", get(jobs::show))
        .route(
            "/console/jobs/{id}/{transition}",
            get(jobs::confirm).post(jobs::transition),
        )
        .route("/console/deliveries", get(deliveries::list))
        .route("/console/people", get(people::list))
        .route("/console/people/{email}", get(people::show))
        .route("/console/evidence", get(people::evidence))
        .route("/console/evidence.csv", get(people::evidence_csv))
        .route("/console/customers", get(customers::search))
        .route(
            "/console/customers/review",
            post(customers::review).layer(limit(MAX_SELECTION_BYTES)),
        )
        .route(
            "/console/customers/enqueue",
            post(customers::enqueue).layer(limit(MAX_SELECTION_BYTES)),
        )
        .route(
            "/console/import",
            get(import::form).post(import::checked.layer(limit(MAX_IMPORT_BYTES))),
        )
        .route(
            "/console/import/confirm",
            post(import::confirm).layer(limit(MAX_IMPORT_BYTES)),
        )
        .route("/console/worker/pause", post(worker::pause))
        .route("/console/worker/resume", post(worker::resume))
        // Outermost, so that a route's own limit above replaces it.
        .layer(limit(MAX_FORM_BYTES))
        .layer(middleware::from_fn(protective_headers))
}

/// The pages run no script and load nothing from elsewhere, so the policy can forbid both;
/// no framing, so nobody can overlay the approve button with something innocent-looking.
async fn protective_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    headers.insert(X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers
        .entry(CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

async fn stylesheet() -> impl IntoResponse {
    (
        [
            (CONTENT_TYPE, "text/css; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=300"),
        ],
        STYLESHEET,
    )
}

/// What a signed-in page needs for its header.
async fn chrome(
    state: &AppState,
    session: &session::Session,
    section: Section,
    here: String,
) -> Result<Chrome, ConsoleError> {
    Ok(Chrome {
        section,
        worker: state.store.worker_state().await?,
        dry_run: state.config.dry_run,
        doctor_failures: state.doctor.get().map_or(Vec::new(), |report| {
            report.failures().map(|c| c.name.clone()).collect()
        }),
        budget: state
            .atlassian
            .as_ref()
            .map_or(Vec::new(), |client| client.budget_use().to_vec()),
        csrf: session.csrf.clone(),
        here,
    })
}

fn page(title: &str, chrome: Option<&Chrome>, content: Markup) -> Html<String> {
    Html(view::document(title, chrome, content).into_string())
}

/// Console failures as HTML pages; like the API's errors, internals are logged, never shown.
#[derive(Debug, thiserror::Error)]
enum ConsoleError {
    #[error("This form is not valid any more: the session ended or the page is stale.")]
    Forbidden,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    #[error("The database is not answering right now. Nothing was changed; try again shortly.")]
    Unavailable,
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::Forbidden => StatusCode::FORBIDDEN,
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ConsoleError::Conflict(_) => StatusCode::CONFLICT,
            ConsoleError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

impl From<StoreError> for ConsoleError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::NotFound(id) => ConsoleError::NotFound(format!("There is no job #{id}.")),
            StoreError::InvalidTransition { .. } => ConsoleError::Conflict(format!(
                "{}: someone or something changed the job first. Nothing was changed.",
                err
            )),
            other => {
                tracing::error!(error = %other, "store error in the console");
                ConsoleError::Unavailable
            }
        }
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let title = self.status().canonical_reason().unwrap_or("Error");
        let content = html! {
            h1 { (title) }
            p.notice { (self.to_string()) }
            p {
                a href="/console" { "Back to the jobs" }
                @if matches!(self, ConsoleError::Forbidden) {
                    " · " a href=(LOGIN_PATH) { "Log in again" }
                }
            }
        };
        (self.status(), page(title, None, content)).into_response()
    }
}
