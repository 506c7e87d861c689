//! Console sign-in without server-side state: the session cookie is an expiry signed with the
//! admin token, and each form's CSRF token is the session cookie signed again. Changing the
//! admin token therefore ends every session and voids every open form.

use axum::extract::{Form, FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use serde::Deserialize;
use sha2::Sha256;

use super::ConsoleError;
use crate::http::AppState;

type HmacSha256 = Hmac<Sha256>;

pub(super) const COOKIE_NAME: &str = "offboard_session";
/// A working day: long enough not to nag, short enough that a forgotten laptop is not a key.
const SESSION_SECONDS: i64 = 12 * 60 * 60;
const SESSION_CONTEXT: &str = "console-session:";
const CSRF_CONTEXT: &str = "csrf:";

/// The admin token's bytes, the key of every console signature; `None` disables the console.
pub(super) fn signing_key(state: &AppState) -> Option<&[u8]> {
    state
        .config
        .admin_token
        .as_ref()
        .map(|token| token.expose_secret().as_bytes())
}

fn mac(key: &[u8], context: &str, message: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(context.as_bytes());
    mac.update(message.as_bytes());
    mac
}

fn sign(key: &[u8], context: &str, message: &str) -> String {
    hex::encode(mac(key, context, message).finalize().into_bytes())
}

/// `verify_slice` compares in constant time, so a forger learns nothing from timing.
fn signature_matches(key: &[u8], context: &str, message: &str, presented_hex: &str) -> bool {
    hex::decode(presented_hex)
        .is_ok_and(|presented| mac(key, context, message).verify_slice(&presented).is_ok())
}

/// A fresh session cookie value: `<expiry_unix>.<hex HMAC>`. It never contains the token.
pub(super) fn issue(key: &[u8], now: DateTime<Utc>) -> String {
    let expiry = (now.timestamp() + SESSION_SECONDS).to_string();
    let signature = sign(key, SESSION_CONTEXT, &expiry);
    format!("{expiry}.{signature}")
}

/// Whether `value` is a session this key issued that has not expired.
pub(super) fn is_valid(key: &[u8], value: &str, now: DateTime<Utc>) -> bool {
    let Some((expiry, signature)) = value.split_once('.') else {
        return false;
    };
    let unexpired = expiry
        .parse::<i64>()
        .is_ok_and(|expiry| expiry > now.timestamp());
    unexpired && signature_matches(key, SESSION_CONTEXT, expiry, signature)
}

/// The CSRF token of every form shown to this session.
pub(super) fn csrf_token(key: &[u8], session: &str) -> String {
    sign(key, CSRF_CONTEXT, session)
}

fn csrf_matches(key: &[u8], session: &str, presented: &str) -> bool {
    signature_matches(key, CSRF_CONTEXT, session, presented)
}

/// The `offboard_session` value the browser sent, if any.
fn presented_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE_NAME)
        .map(|(_, value)| value)
}

/// `Path=/console` keeps the cookie away from the JSON API; `SameSite=Strict` keeps it off
/// requests that another site starts; `HttpOnly` keeps it from scripts.
pub(super) fn set_cookie(value: &str) -> [(axum::http::HeaderName, HeaderValue); 1] {
    cookie_header(value, SESSION_SECONDS)
}

pub(super) fn clear_cookie() -> [(axum::http::HeaderName, HeaderValue); 1] {
    cookie_header("", 0)
}

fn cookie_header(value: &str, max_age: i64) -> [(axum::http::HeaderName, HeaderValue); 1] {
    let cookie = format!(
        "{COOKIE_NAME}={value}; Path=/console; Max-Age={max_age}; HttpOnly; SameSite=Strict"
    );
    [(
        SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("hex, digits and a dot are a valid header value"),
    )]
}

/// The key and the presented cookie, when the cookie is a session that key issued and that
/// has not expired.
fn valid_session<'a>(state: &'a AppState, headers: &HeaderMap) -> Option<(&'a [u8], String)> {
    let key = signing_key(state)?;
    let cookie = presented_cookie(headers)?;
    is_valid(key, cookie, Utc::now()).then(|| (key, cookie.to_owned()))
}

/// A signed-in operator. Extracting it from a page request without a valid session sends the
/// browser to the login form.
pub(super) struct Session {
    /// For the hidden field of every form on the page.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Redirect;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        valid_session(state, &parts.headers)
            .map(|(key, cookie)| Session {
                csrf: csrf_token(key, &cookie),
            })
            .ok_or_else(|| Redirect::to(super::LOGIN_PATH))
    }
}

/// The fields every console form posts.
#[derive(Deserialize)]
struct PostedForm {
    csrf: String,
    /// Where a header button (pause, resume) returns to.
    return_to: Option<String>,
}

/// A POST from a signed-in operator whose form carries this session's CSRF token. Anything
/// else is refused with 403 before the handler runs, so it changes nothing.
pub(super) struct CheckedPost {
    pub return_to: Option<String>,
}

impl FromRequest<AppState> for CheckedPost {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let forbidden = || ConsoleError::Forbidden.into_response();
        let (key, cookie) = valid_session(state, request.headers()).ok_or_else(forbidden)?;
        let Form(form) = Form::<PostedForm>::from_request(request, state)
            .await
            .map_err(|_| forbidden())?;
        if !csrf_matches(key, &cookie, &form.csrf) {
            tracing::warn!("console POST with a wrong CSRF token refused");
            return Err(forbidden());
        }
        Ok(CheckedPost {
            return_to: form.return_to,
        })
    }
}

/// Whether the browser already holds a valid session (the login page then moves on).
pub(super) fn is_signed_in(state: &AppState, headers: &HeaderMap) -> bool {
    valid_session(state, headers).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const KEY: &[u8] = b"admin-token";

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_key() {
        let now = Utc::now();
        let value = issue(KEY, now);
        assert!(!value.contains("admin-token"));
        assert!(is_valid(KEY, &value, now));
        assert!(is_valid(KEY, &value, now + Duration::hours(11)));
        assert!(!is_valid(KEY, &value, now + Duration::hours(12)));
        assert!(!is_valid(b"rotated-token", &value, now));
    }

    #[test]
    fn a_tampered_session_is_refused() {
        let now = Utc::now();
        let value = issue(KEY, now);
        let (expiry, signature) = value.split_once('.').unwrap();
        let later = expiry.parse::<i64>().unwrap() + 3600;
        for forged in [
            format!("{later}.{signature}"),
            format!("{expiry}.{}", &signature[1..]),
            format!("{expiry}.zz{}", &signature[2..]),
            expiry.to_owned(),
            String::new(),
            ".".to_owned(),
        ] {
            assert!(!is_valid(KEY, &forged, now), "{forged}");
        }
    }

    #[test]
    fn a_csrf_token_belongs_to_one_session() {
        let now = Utc::now();
        let session = issue(KEY, now);
        let other = issue(KEY, now + Duration::seconds(1));
        let token = csrf_token(KEY, &session);
        assert!(csrf_matches(KEY, &session, &token));
        assert!(!csrf_matches(KEY, &other, &token));
        assert!(!csrf_matches(KEY, &session, ""));
        assert_ne!(token, session.split_once('.').unwrap().1);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.append(
            COOKIE,
            HeaderValue::from_static("a=1; offboard_session=x.y"),
        );
        assert_eq!(presented_cookie(&headers), Some("x.y"));
        headers.clear();
        headers.append(COOKIE, HeaderValue::from_static("offboard_sessionx=1"));
        assert_eq!(presented_cookie(&headers), None);
    }
}
