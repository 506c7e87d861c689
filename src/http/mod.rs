//! The HTTP surface: webhooks, health, metrics, admin API. One `router()` per resource, merged
//! here; the OpenAPI document is generated from the same route definitions, so it cannot
//! drift from the routes that exist.

mod admin;
mod console;
mod customers;
mod error;
mod health;
mod hooks;
mod manual_jobs;
mod people;
mod rejections;
mod request_id;
pub mod server;
mod throttle;

use std::sync::Arc;

use axum::http::HeaderValue;
use axum::http::header::X_CONTENT_TYPE_OPTIONS;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;

pub use customers::CustomerSnapshot;
pub use error::{ApiError, ErrorBody};

use crate::atlassian::Client;
use crate::config::Config;
use crate::doctor::LatestReport;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    /// The latest `doctor` report, shown in the console's header when it fails.
    pub doctor: LatestReport,
    /// The process's Atlassian client, the worker's own: its clones share the pacing
    /// buckets. `None` without an `[atlassian]` section.
    pub atlassian: Option<Client>,
    /// The latest reading of the customer inventory (`GET /api/v1/customers`).
    pub customers: CustomerSnapshot,
    /// Wrong admin tokens per client, from the console's login and the admin API alike.
    pub(crate) token_guesses: Arc<throttle::TokenThrottle>,
}

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/api/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "offboard",
        description = "Signed webhooks in, safe and audited Atlassian offboarding actions out."
    ),
    tags(
        (name = "webhooks", description = "Signed deliveries from HR systems and Jira"),
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "admin", description = "Jobs, deliveries, the worker, the customer inventory and the people's cases; bearer admin_token")
    ),
    modifiers(&AdminTokenScheme)
)]
struct ApiDoc;

struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The routes and the OpenAPI document that describes them.
pub fn routes(state: AppState) -> (Router<AppState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(hooks::router())
        .merge(admin::router(state.clone()))
        .merge(customers::router(state.clone()))
        .merge(people::router(state))
        .split_for_parts()
}

pub fn router(state: AppState) -> Router {
    let (routes, openapi) = routes(state.clone());
    let openapi = Arc::new(openapi);
    routes
        .merge(console::router())
        .route(
            OPENAPI_PATH,
            get(move || {
                let openapi = openapi.clone();
                async move { Json(openapi.as_ref().clone()) }
            }),
        )
        .fallback(not_found)
        .layer(axum::middleware::from_fn(rejections::json_rejections))
        .layer(axum::middleware::map_response(no_sniffing))
        .layer(axum::middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// What a worker-only process serves: health and metrics, so it can be probed and scraped.
pub fn ops_router(state: AppState) -> Router {
    let (routes, _) = OpenApiRouter::new()
        .merge(health::router())
        .split_for_parts();
    routes
        .fallback(not_found)
        .layer(axum::middleware::from_fn(rejections::json_rejections))
        .layer(axum::middleware::map_response(no_sniffing))
        .layer(axum::middleware::from_fn(request_id::request_id))
        .with_state(state)
}

/// A browser must take a JSON answer (which may echo what a sender wrote) as JSON, never
/// sniff it into HTML; harmless on every other answer, so it is on all of them.
async fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
