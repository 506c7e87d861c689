//! The HTTP surface: webhooks, health, admin API. One `router()` per resource, merged here.

mod admin;
mod error;
mod health;
mod hooks;
mod request_id;

use std::sync::Arc;

use axum::Router;

pub use error::ApiError;

use crate::config::Config;
use crate::store::Store;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(health::router())
        .merge(hooks::router())
        .merge(admin::router(state.clone()))
        .fallback(not_found)
        .layer(axum::middleware::from_fn(request_id::request_id))
        .with_state(state)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such route".into())
}
