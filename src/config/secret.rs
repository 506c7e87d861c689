//! Secrets in the configuration: `env:NAME` and `file:PATH` references, resolved into
//! [`SecretString`]s, and the [`DatabaseUrl`], which may hold a password and so is shown only
//! redacted. No message here repeats a secret's value.

use std::fmt;

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::{DEFAULT_DATABASE_URL, Problems};

/// A database URL, which may hold a password: shown only with the password masked.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: &str) -> Self {
        DatabaseUrl(SecretString::from(url.to_owned()))
    }

    /// The URL itself, for connecting. Never log it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// The URL with any password replaced by `***`: the userinfo one, and query parameters
    /// such as `?password=` (which sqlx reads too) or `?sslpassword=`.
    pub fn redacted(&self) -> String {
        let url = self.expose();
        let Ok(mut parsed) = Url::parse(url) else {
            // Unparseable URLs are rejected at validation; never echo them raw in case they
            // hold a password.
            return "<invalid url>".to_owned();
        };
        if parsed.password().is_some() {
            // set_password fails only for URLs that cannot have one, not the case here.
            let _ = parsed.set_password(Some("***"));
        }
        if let Some(query) = parsed.query() {
            let query = redact_query(query);
            parsed.set_query(Some(&query));
        }
        parsed.to_string()
    }
}

/// A query string with the value of every parameter that may hold a password replaced by
/// `***`; the other parameters stay exactly as written.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let name = pair.split_once('=').map_or(pair, |(name, _)| name);
            let decoded = percent_decode(name).to_ascii_lowercase();
            let secret = ["pass", "pwd", "secret", "token"]
                .iter()
                .any(|word| decoded.contains(word));
            if secret && pair.contains('=') {
                format!("{name}=***")
            } else {
                pair.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// A query parameter's name as sqlx reads it (`%77` is `w`), so no spelling hides one.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

/// `DATABASE_URL`, else the file's `database_url` (which may hold a password, so it may be a
/// secret reference like any other), else the SQLite default.
pub(super) fn database_url(
    raw: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> DatabaseUrl {
    let url = match env("DATABASE_URL").filter(|u| !u.is_empty()) {
        Some(url) => DatabaseUrl::new(&url),
        None => match raw.and_then(|raw| resolve_secret(&raw, "database_url", env, problems)) {
            Some(url) => DatabaseUrl::new(url.expose_secret()),
            None => DatabaseUrl::new(DEFAULT_DATABASE_URL),
        },
    };
    validate_database_url(&url, problems);
    url
}

fn validate_database_url(url: &DatabaseUrl, problems: &mut Problems) {
    let text = url.expose();
    if text.starts_with("sqlite:") {
        return;
    }
    if !url.is_postgres() {
        problems.at(
            "database_url",
            format!(
                "must start with sqlite:// (e.g. {DEFAULT_DATABASE_URL}) or postgres:// (e.g. postgres://offboard@db/offboard)"
            ),
        );
    } else if Url::parse(text).is_err() {
        problems.at("database_url", "is not a valid postgres:// URL");
    }
}

/// Resolves `env:NAME`, `file:PATH` or a literal. Messages name the variable or file, never
/// the value.
pub(super) fn resolve_secret(
    raw: &str,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<SecretString> {
    if let Some(name) = raw.strip_prefix("env:") {
        return match env(name) {
            Some(value) => Some(SecretString::from(value)),
            None => {
                problems.at(path, format!("environment variable {name} is not set"));
                None
            }
        };
    }
    if let Some(file) = raw.strip_prefix("file:") {
        return match std::fs::read_to_string(file) {
            Ok(mut value) => {
                if value.ends_with('\n') {
                    value.pop();
                    if value.ends_with('\r') {
                        value.pop();
                    }
                }
                Some(SecretString::from(value))
            }
            Err(e) => {
                problems.at(path, format!("cannot read secret file {file}: {e}"));
                None
            }
        };
    }
    Some(SecretString::from(raw.to_owned()))
}

pub(super) fn required_secret(
    raw: Option<String>,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<SecretString> {
    let Some(raw) = raw else {
        problems.at(path, "is required");
        return None;
    };
    let secret = resolve_secret(&raw, path, env, problems)?;
    if secret.expose_secret().is_empty() {
        problems.at(path, "is empty");
        return None;
    }
    Some(secret)
}
