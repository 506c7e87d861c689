//! Console sign-in: the session cookie is an expiry and a random nonce, signed with the admin
//! token, and each form's CSRF token is the session cookie signed again. Changing the admin
//! token therefore ends every session and voids every open form. A logout also ends its own
//! session in the store, so a copy of the cookie stops working at once on every replica.
//! A cookie is taken in the one spelling it was issued in (lower-case hex), so that a logout
//! keyed on that spelling holds for the session whatever a copy of it is re-encoded as.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use secrecy::ExposeSecret as _;
use sha2::{Digest, Sha256};

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

/// `verify_slice` compares in constant time, so a forger learns nothing from timing. Only the
/// encoding `sign` writes is taken (see [`canonical_hex`]).
fn signature_matches(key: &[u8], context: &str, message: &str, presented_hex: &str) -> bool {
    canonical_hex::<32>(presented_hex)
        .is_some_and(|presented| mac(key, context, message).verify_slice(&presented).is_ok())
}

/// `N` bytes written as `hex::encode` writes them: exactly `2 * N` lower-case digits. Any other
/// spelling of the same bytes (upper or mixed case) is refused, so a value has one text, and
/// whatever is keyed on that text (a logout) holds for every copy of the value.
fn canonical_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
    if text.len() != 2 * N || !text.as_bytes().iter().all(lower_hex) {
        return None;
    }
    let mut bytes = [0; N];
    hex::decode_to_slice(text, &mut bytes).ok()?;
    Some(bytes)
}

/// A session cookie in the one form [`issue`] writes: `<expiry_unix>.<nonce>.<hex HMAC>`,
/// the expiry in decimal without sign or leading zero, nonce and HMAC in lower-case hex.
struct SessionCookie {
    expiry: i64,
    nonce: [u8; 16],
    signature: [u8; 32],
}

impl SessionCookie {
    fn parse(value: &str) -> Option<SessionCookie> {
        let mut parts = value.split('.');
        let (expiry, nonce, signature) = (parts.next()?, parts.next()?, parts.next()?);
        let decimal = !expiry.is_empty()
            && !expiry.starts_with('0')
            && expiry.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some() || !decimal {
            return None;
        }
        Some(SessionCookie {
            expiry: expiry.parse().ok()?,
            nonce: canonical_hex(nonce)?,
            signature: canonical_hex(signature)?,
        })
    }

    /// What the HMAC covers.
    fn claims(&self) -> String {
        format!("{}.{}", self.expiry, hex::encode(self.nonce))
    }

    /// The cookie's one text, written from what was parsed rather than copied from the
    /// request: what a logout and the CSRF tokens are keyed on.
    fn canonical(&self) -> String {
        format!("{}.{}", self.claims(), hex::encode(self.signature))
    }
}

/// A fresh session cookie value: `<expiry_unix>.<nonce>.<hex HMAC>`. The nonce makes every
/// sign-in a session of its own, so logging one out leaves the others alone. It never
/// contains the token.
pub(super) fn issue(key: &[u8], now: DateTime<Utc>) -> String {
    let expiry = now.timestamp() + SESSION_SECONDS;
    let claims = format!("{expiry}.{}", hex::encode(rand::random::<[u8; 16]>()));
    let signature = sign(key, SESSION_CONTEXT, &claims);
    format!("{claims}.{signature}")
}

/// A session this key issued that has not expired yet: when it expires, and its canonical
/// text. Any other spelling of a cookie (upper-case hex, a leading zero) is no session.
fn verified(key: &[u8], value: &str, now: DateTime<Utc>) -> Option<(DateTime<Utc>, String)> {
    let cookie = SessionCookie::parse(value)?;
    let expiry = DateTime::from_timestamp(cookie.expiry, 0)?;
    let genuine = mac(key, SESSION_CONTEXT, &cookie.claims())
        .verify_slice(&cookie.signature)
        .is_ok();
    (expiry > now && genuine).then(|| (expiry, cookie.canonical()))
}

/// How the store knows a session: a digest of its canonical text, so the cookie itself is
/// never written down. Sessions logged out before only the canonical text was accepted are
/// stored under the same digest (their cookie was canonical), so they stay logged out.
fn session_sha256(canonical: &str) -> String {
    hex::encode(Sha256::digest(canonical.as_bytes()))
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

/// A session that this key issued, has not expired and was not logged out.
struct ValidSession<'a> {
    key: &'a [u8],
    /// The cookie's canonical text.
    cookie: String,
    expires_at: DateTime<Utc>,
}

/// The presented session, if it is valid. A store that cannot answer whether it was logged
/// out is an error, not a yes: a copied cookie must not work while the database is away.
async fn valid_session<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<Option<ValidSession<'a>>, ConsoleError> {
    let Some(key) = signing_key(state) else {
        return Ok(None);
    };
    let Some(cookie) = presented_cookie(headers) else {
        return Ok(None);
    };
    let Some((expires_at, cookie)) = verified(key, cookie, Utc::now()) else {
        return Ok(None);
    };
    if state
        .store
        .is_session_revoked(&session_sha256(&cookie))
        .await?
    {
        return Ok(None);
    }
    Ok(Some(ValidSession {
        key,
        cookie,
        expires_at,
    }))
}

/// A signed-in operator. Extracting it from a page request without a valid session sends the
/// browser to the login form.
pub(super) struct Session {
    /// For the hidden field of every form on the page.
    pub csrf: String,
}

impl FromRequestParts<AppState> for Session {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        match valid_session(state, &parts.headers).await {
            Ok(Some(session)) => Ok(Session {
                csrf: csrf_token(session.key, &session.cookie),
            }),
            Ok(None) => Err(Redirect::to(super::LOGIN_PATH).into_response()),
            Err(err) => Err(err.into_response()),
        }
    }
}

/// A POST from a signed-in operator whose form carries this session's CSRF token. Anything
/// else is refused with 403 before the handler runs, so it changes nothing.
pub(super) struct CheckedPost {
    pub return_to: Option<String>,
    cookie: String,
    expires_at: DateTime<Utc>,
}

impl CheckedPost {
    /// Logs this session out on every replica, for the rest of its lifetime.
    pub(super) async fn end_session(&self, state: &AppState) -> Result<(), ConsoleError> {
        state
            .store
            .revoke_session(&session_sha256(&self.cookie), self.expires_at)
            .await?;
        Ok(())
    }
}

impl FromRequest<AppState> for CheckedPost {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let form = CheckedFields::from_request(request, state).await?;
        Ok(CheckedPost {
            return_to: form.get("return_to").map(str::to_owned),
            cookie: form.cookie,
            expires_at: form.expires_at,
        })
    }
}

/// A POST from a signed-in operator, with every field of its form (checkboxes post one name
/// several times), or a multipart upload with its one file; refused with 403 before the
/// handler runs unless a field `csrf` carries this session's token.
pub(super) struct CheckedFields {
    pub fields: Vec<(String, String)>,
    /// The bytes of the form's file field, for an upload.
    pub file: Option<Vec<u8>>,
    cookie: String,
    expires_at: DateTime<Utc>,
}

impl CheckedFields {
    /// The session that posted, for the page the handler answers with.
    pub(super) fn session(&self) -> Session {
        Session {
            csrf: self.get("csrf").unwrap_or_default().to_owned(),
        }
    }

    /// The first value of `name`, if the form has one.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in the form's order.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl FromRequest<AppState> for CheckedFields {
    type Rejection = Response;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let forbidden = || ConsoleError::Forbidden.into_response();
        let session = valid_session(state, request.headers())
            .await
            .map_err(IntoResponse::into_response)?
            .ok_or_else(forbidden)?;
        let multipart = request
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("multipart/form-data"));
        let too_large = |e: &dyn std::fmt::Display| {
            ConsoleError::BadRequest(format!("The form could not be read: {e}")).into_response()
        };
        let mut checked = CheckedFields {
            fields: Vec::new(),
            file: None,
            cookie: session.cookie.clone(),
            expires_at: session.expires_at,
        };
        if multipart {
            let mut form = axum::extract::Multipart::from_request(request, state)
                .await
                .map_err(|e| too_large(&e))?;
            while let Some(field) = form.next_field().await.map_err(|e| too_large(&e))? {
                let name = field.name().unwrap_or_default().to_owned();
                let is_file = field.file_name().is_some();
                let bytes = field.bytes().await.map_err(|e| too_large(&e))?;
                if is_file {
                    checked.file = Some(bytes.to_vec());
                } else {
                    checked
                        .fields
                        .push((name, String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
        } else {
            let body = axum::body::Bytes::from_request(request, state)
                .await
                .map_err(|e| too_large(&e))?;
            checked.fields = form_urlencoded::parse(&body).into_owned().collect();
        }
        if !csrf_matches(
            session.key,
            &session.cookie,
            checked.get("csrf").unwrap_or(""),
        ) {
            tracing::warn!("console POST with a wrong CSRF token refused");
            return Err(forbidden());
        }
        Ok(checked)
    }
}

/// Whether the browser already holds a valid session (the login page then moves on).
pub(super) async fn is_signed_in(
    state: &AppState,
    headers: &HeaderMap,
) -> Result<bool, ConsoleError> {
    Ok(valid_session(state, headers).await?.is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    const KEY: &[u8] = b"admin-token";

    fn expiry(key: &[u8], value: &str, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        verified(key, value, now).map(|(expiry, _)| expiry)
    }

    #[test]
    fn a_session_is_valid_until_it_expires_and_only_under_its_key() {
        let now = Utc::now();
        let value = issue(KEY, now);
        assert!(!value.contains("admin-token"));
        let expires = DateTime::from_timestamp(now.timestamp() + 12 * 3600, 0);
        assert_eq!(expiry(KEY, &value, now), expires);
        assert!(expiry(KEY, &value, now + Duration::hours(11)).is_some());
        assert!(expiry(KEY, &value, now + Duration::hours(12)).is_none());
        assert!(expiry(b"rotated-token", &value, now).is_none());
    }

    #[test]
    fn every_sign_in_is_a_session_of_its_own() {
        let now = Utc::now();
        let (one, two) = (issue(KEY, now), issue(KEY, now));
        assert_ne!(one, two);
        assert_ne!(session_sha256(&one), session_sha256(&two));
        assert_eq!(session_sha256(&one).len(), 64);
    }

    #[test]
    fn a_tampered_session_is_refused() {
        let now = Utc::now();
        let value = issue(KEY, now);
        let parts: Vec<&str> = value.split('.').collect();
        let [expiry_text, nonce, signature] = parts[..] else {
            panic!("three parts: {value}");
        };
        let later = expiry_text.parse::<i64>().unwrap() + 3600;
        // Another first digit, whatever the random nonce starts with.
        let flipped = if nonce.starts_with('0') { '1' } else { '0' };
        for forged in [
            format!("{later}.{nonce}.{signature}"),
            format!("{expiry_text}.{flipped}{}.{signature}", &nonce[1..]),
            format!("{expiry_text}.{signature}"),
            format!("{expiry_text}.{nonce}.{}", &signature[1..]),
            format!("{expiry_text}.{nonce}.zz{}", &signature[2..]),
            format!("{expiry_text}.{nonce}"),
            expiry_text.to_owned(),
            String::new(),
            "..".to_owned(),
        ] {
            assert!(expiry(KEY, &forged, now).is_none(), "{forged}");
        }
    }

    /// The same bytes spelt another way are not the session: a logout keyed on the text
    /// would not hold for them.
    #[test]
    fn only_the_issued_spelling_of_a_session_is_one() {
        let now = Utc::now();
        let value = issue(KEY, now);
        assert_eq!(
            verified(KEY, &value, now).map(|(_, text)| text),
            Some(value.clone())
        );
        let (claims, signature) = value.rsplit_once('.').unwrap();
        let (expiry_text, nonce) = claims.split_once('.').unwrap();
        let mixed: String = signature
            .chars()
            .enumerate()
            .map(|(i, c)| {
                if i % 2 == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c
                }
            })
            .collect();
        for respelt in [
            format!("{claims}.{}", signature.to_uppercase()),
            format!("{claims}.{mixed}"),
            format!("{expiry_text}.{}.{signature}", nonce.to_uppercase()),
            format!("0{expiry_text}.{nonce}.{signature}"),
            format!("+{expiry_text}.{nonce}.{signature}"),
            format!("{claims}.{signature}."),
            format!("{claims}.{signature}00"),
            format!(" {value}"),
            format!("{value} "),
            format!("\"{value}\""),
            value.replace('.', "%2E"),
        ] {
            assert_ne!(respelt, value);
            assert!(verified(KEY, &respelt, now).is_none(), "{respelt}");
        }
    }

    #[test]
    fn a_csrf_token_is_taken_in_its_one_spelling() {
        let session = issue(KEY, Utc::now());
        let token = csrf_token(KEY, &session);
        assert!(csrf_matches(KEY, &session, &token));
        assert!(!csrf_matches(KEY, &session, &token.to_uppercase()));
        assert!(!csrf_matches(KEY, &session, &format!("{token}00")));
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
        assert_ne!(token, session.rsplit_once('.').unwrap().1);
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
