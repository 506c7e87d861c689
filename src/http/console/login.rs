//! Signing in with the admin token, once, and signing out.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::header::ACCEPT;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use maud::{Markup, html};
use secrecy::ExposeSecret as _;
use serde::Deserialize;

use super::session::{self, CheckedPost};
use super::{ConsoleError, LOGIN_PATH, page};
use crate::http::admin::token_matches;
use crate::http::hooks::read_capped;
use crate::http::throttle::{self, Client};
use crate::http::{ApiError, AppState};

pub(super) async fn form(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ConsoleError> {
    if session::signing_key(&state).is_none() {
        return Ok(disabled(StatusCode::OK));
    }
    if session::is_signed_in(&state, &headers).await? {
        return Ok(Redirect::to("/console").into_response());
    }
    Ok(login_page(StatusCode::OK, None))
}

#[derive(Deserialize)]
pub(super) struct LoginForm {
    #[serde(default)]
    token: String,
}

/// The most a login form may be: the token, URL-encoded, with room to spare (README,
/// "Operator console"). A login is unauthenticated, so its body is read only under this cap,
/// and only once the console is known to be enabled and the client not throttled.
const MAX_FORM_BYTES: usize = 4 * 1024;

pub(super) async fn submit(State(state): State<AppState>, request: Request) -> Response {
    let Some(expected) = state.config.admin_token.as_ref() else {
        return disabled(StatusCode::FORBIDDEN);
    };
    let (client, throttle) = (
        Client::of_request(request.extensions()),
        &state.token_guesses,
    );
    if let Err(wait) = throttle.check(client, Instant::now()) {
        tracing::warn!("console login refused: too many wrong tokens from this client");
        return too_many_attempts(request.headers(), wait);
    }
    let login = match read_form(request).await {
        Ok(login) => login,
        Err(refused) => return refused,
    };
    if !token_matches(expected.expose_secret(), &login.token) {
        throttle.record_failure(client, Instant::now());
        tracing::warn!("console login with a wrong admin token");
        return login_page(
            StatusCode::UNAUTHORIZED,
            Some("That is not the admin token. Try again."),
        );
    }
    throttle.forget(client);
    let key = expected.expose_secret().as_bytes();
    let cookie = session::issue(key, Utc::now());
    tracing::info!("operator signed in to the console");
    (session::set_cookie(&cookie), Redirect::to("/console")).into_response()
}

/// The login form, its body read under [`MAX_FORM_BYTES`]: a larger one (by its
/// `Content-Length`, or once more has arrived) is `413 payload_too_large` without the rest
/// being read; anything but a form is axum's `415`.
async fn read_form(request: Request) -> Result<LoginForm, Response> {
    let (parts, body) = request.into_parts();
    let body = read_capped(&parts.headers, body, MAX_FORM_BYTES)
        .await
        .map_err(IntoResponse::into_response)?;
    let read = Request::from_parts(parts, Body::from(body));
    let Form(login) = Form::<LoginForm>::from_request(read, &())
        .await
        .map_err(IntoResponse::into_response)?;
    Ok(login)
}

/// 429 with `Retry-After`: the login page for a browser, the JSON error for anything else.
fn too_many_attempts(headers: &HeaderMap, wait: Duration) -> Response {
    let retry_after = throttle::retry_after(wait);
    let wait_seconds = wait.as_secs().max(1);
    let wants_html = headers
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if !wants_html {
        return (retry_after, ApiError::TooManyAttempts).into_response();
    }
    let message = format!(
        "Too many wrong tokens from your address. Wait {wait_seconds} seconds, then try again."
    );
    (
        retry_after,
        login_page(StatusCode::TOO_MANY_REQUESTS, Some(&message)),
    )
        .into_response()
}

pub(super) async fn logout(
    State(state): State<AppState>,
    post: CheckedPost,
) -> Result<Response, ConsoleError> {
    post.end_session(&state).await?;
    tracing::info!("operator signed out of the console");
    Ok((session::clear_cookie(), Redirect::to(LOGIN_PATH)).into_response())
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
