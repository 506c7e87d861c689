//! The HTTP surface: webhooks, health, admin API. One `router()` per resource, merged here.

mod error;
mod health;
mod hooks;

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
        .with_state(state)
}
