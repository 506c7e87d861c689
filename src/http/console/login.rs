//! Signing in with the admin token, once, and signing out.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::session::{self, CheckedPost};
use super::{LOGIN_PATH, page};
use crate::http::AppState;
use crate::http::admin::token_matches;

pub(super) async fn form(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if session::signing_key(&state).is_none() {
        return disabled(StatusCode::OK);
    }
    if session::is_signed_in(&state, &headers) {
        return Redirect::to("/console").into_response();
    }
    login_page(StatusCode::OK, None)
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

pub(super) async fn submit(
    State(state): State<AppState>,
    Form(login): Form<LoginForm>,
) -> Response {
    let Some(expected) = state.config.admin_token.as_ref() else {
        return disabled(StatusCode::FORBIDDEN);
    };
    if !token_matches(expected.expose_secret(), &login.token) {
        tracing::warn!("console login with a wrong admin token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token. Try again."),
        );
    }
    let key = expected.expose_secret().as_bytes();
    let cookie = session::issue(key, Utc::now());
    tracing::info!("operator signed in to the console");
    (session::set_cookie(&cookie), Redirect::to("/console")).into_response()
}

pub(super) async fn logout(_post: CheckedPost) -> Response {
    (session::clear_cookie(), Redirect::to(LOGIN_PATH)).into_response()
}

fn login_page(status: StatusCode, error: Option<&str>) -> Response {
    let content = html! {
        section.login {
            h1 { "Operator console" }
            p { "Enter the admin token (" code { "admin_token" } " in the configuration) to see and steer offboarding jobs." }
            @if let Some(error) = error {
                p.error role="alert" { (error) }
            }
            form method="post" action=(LOGIN_PATH) {
                label for="token" { "Admin token" }
                input #token type="password" name="token" autocomplete="current-password" required autofocus;
                button.primary type="submit" { "Log in" }
            }
        }
    };
    (status, page("Log in", None, content)).into_response()
}

fn disabled(status: StatusCode) -> Response {
    let content: Markup = html! {
        section.login {
            h1 { "The console is disabled" }
            p.notice {
                "No admin token is configured, so nobody can sign in. Set "
                code { "admin_token" } " in the configuration (or "
                code { "OFFBOARD_ADMIN_TOKEN" } ") and restart offboard."
            }
        }
    };
    (status, page("Console disabled", None, content)).into_response()
}
