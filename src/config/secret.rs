//! Secrets in the configuration: `env:NAME` and `file:PATH` references, resolved into
//! [`SecretString`]s, and the [`DatabaseUrl`], which may hold a password and so is shown only
//! redacted. No message here repeats a secret's value.

use std::fmt;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::{ConfigOrigin, DEFAULT_DATABASE_URL, Problems};

/// A `file:` secret is a key, a token or a password: anything larger is a mistake (or
/// `/dev/zero`), refused before it fills the memory.
const MAX_SECRET_FILE_BYTES: u64 = 64 * 1024;

/// Where secret references are read: environment variables, and files, a relative `file:`
/// path being taken from the config file's folder (not from wherever the service happens to
/// be started).
pub(super) struct Secrets<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    folder: Option<PathBuf>,
}

impl<'a> Secrets<'a> {
    pub(super) fn new(env: &'a dyn Fn(&str) -> Option<String>, origin: &ConfigOrigin) -> Self {
        let folder = match origin {
            ConfigOrigin::File(path) => path.parent().map(Path::to_path_buf),
            ConfigOrigin::Defaults => None,
        };
        Secrets { env, folder }
    }

    /// An environment variable, for the overrides as for `env:` references.
    pub(super) fn env(&self, name: &str) -> Option<String> {
        (self.env)(name)
    }

    /// Resolves `env:NAME`, `file:PATH` or a literal. Messages name the variable or file,
    /// never the value.
    pub(super) fn resolve(
        &self,
        raw: &str,
        path: &str,
        problems: &mut Problems,
    ) -> Option<SecretString> {
        if let Some(name) = raw.strip_prefix("env:") {
            return match self.env(name) {
                Some(value) => Some(SecretString::from(value)),
                None => {
                    problems.at(path, format!("environment variable {name} is not set"));
                    None
                }
            };
        }
        if let Some(file) = raw.strip_prefix("file:") {
            let file = match &self.folder {
                Some(folder) => folder.join(file),
                None => PathBuf::from(file),
            };
            return match read_secret_file(&file) {
                Ok(mut value) => {
                    if value.ends_with('\n') {
                        value.pop();
                        if value.ends_with('\r') {
                            value.pop();
                        }
                    }
                    Some(SecretString::from(value))
                }
                Err(why) => {
                    problems.at(path, format!("secret file {} {why}", file.display()));
                    None
                }
            };
        }
        Some(SecretString::from(raw.to_owned()))
    }

    /// As [`Secrets::resolve`], for a key that must be given and not be empty.
    pub(super) fn required(
        &self,
        raw: Option<String>,
        path: &str,
        problems: &mut Problems,
    ) -> Option<SecretString> {
        let Some(raw) = raw else {
            problems.at(path, "is required");
            return None;
        };
        let secret = self.resolve(&raw, path, problems)?;
        if secret.expose_secret().is_empty() {
            problems.at(path, "is empty");
            return None;
        }
        Some(secret)
    }
}

/// A regular file of at most [`MAX_SECRET_FILE_BYTES`], as UTF-8. A FIFO would block `check`
/// and `serve` until something writes to it, and a device such as `/dev/zero` never ends: both
/// are refused before a byte is read. The reasons never quote the file.
fn read_secret_file(path: &Path) -> Result<String, String> {
    let refuse_kind = |metadata: &std::fs::Metadata| {
        if metadata.is_file() {
            Ok(())
        } else {
            Err("is not a regular file (a FIFO, a device or a folder is refused)".to_owned())
        }
    };
    let too_large = || format!("is larger than {} KiB", MAX_SECRET_FILE_BYTES / 1024);
    let cannot_read = |e: std::io::Error| format!("cannot be read: {e}");
    refuse_kind(&std::fs::metadata(path).map_err(cannot_read)?)?;
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    // Should the path become a FIFO between the check above and the open, opening it still
    // returns at once instead of waiting for a writer; the check below then refuses it.
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(cannot_read)?;
    let metadata = file.metadata().map_err(cannot_read)?;
    refuse_kind(&metadata)?;
    if metadata.len() > MAX_SECRET_FILE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // The cap holds even for a file that grows while it is read.
    file.take(MAX_SECRET_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > MAX_SECRET_FILE_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| "is not UTF-8 text".to_owned())
}

/// A database URL, which may hold a password: shown only with the password masked.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

/// The query parameters that the Postgres driver (sqlx) reads, as it spells them. It ignores
/// any other with a warning that prints the parameter's value, whatever that is (a
/// `sslpassword`, which it does not support, or a mistyped `password`), and a misspelt
/// `sslmode` would silently connect without the TLS it asked for: so any other is refused.
const POSTGRES_PARAMETERS: [&str; 18] = [
    "sslmode",
    "ssl-mode",
    "sslrootcert",
    "ssl-root-cert",
    "ssl-ca",
    "sslcert",
    "ssl-cert",
    "sslkey",
    "ssl-key",
    "statement-cache-capacity",
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "application_name",
    "options",
];

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

    /// The URL with every value that may be a secret replaced by `***`: the userinfo
    /// password, a `#` fragment, and the value of every query parameter but those the
    /// drivers read that are not passwords (`?password=`, `?sslpassword=`, an unknown
    /// `?apikey=` are all masked; `?sslmode=require` is shown).
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
        if parsed.fragment().is_some() {
            parsed.set_fragment(Some("***"));
        }
        parsed.to_string()
    }

    /// Why the drivers must not be handed this URL: a `#` fragment, which no driver reads
    /// and which may hold what was meant as a password, and any Postgres query parameter the
    /// driver does not read. Neither value is repeated.
    fn problems(&self, parsed: &Url) -> Vec<String> {
        let mut found = Vec::new();
        if parsed.fragment().is_some() {
            found.push(
                "has a `#` fragment, which no driver reads (it is not repeated here); a `#` in a \
                 password or a file name is written %23"
                    .to_owned(),
            );
        }
        if self.is_postgres() {
            for pair in parsed.query().unwrap_or_default().split('&') {
                let (name, has_value) = match pair.split_once('=') {
                    Some((name, _)) => (percent_decode(name), true),
                    None => (percent_decode(pair), false),
                };
                if !pair.is_empty() && !is_postgres_parameter(&name) {
                    found.push(unknown_parameter(&name, has_value));
                }
            }
        }
        found
    }
}

/// Whether the Postgres driver reads this (decoded) parameter name: one of
/// [`POSTGRES_PARAMETERS`], or `options[NAME]` (a server setting).
fn is_postgres_parameter(name: &str) -> bool {
    POSTGRES_PARAMETERS.contains(&name)
        || name
            .strip_prefix("options[")
            .is_some_and(|rest| rest.ends_with(']'))
}

fn unknown_parameter(name: &str, has_value: bool) -> String {
    let hint = if name == "sslpassword" {
        " (the passphrase of an encrypted client key, which the driver does not support: \
         give `sslkey` a key without a passphrase)"
    } else {
        ""
    };
    // A name is shown only when it looks like one; anything else, or a name without a value,
    // may be a pasted secret.
    let shown = has_value
        && name.len() <= 40
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.[]".contains(&b));
    let name = if shown {
        format!("`{name}`")
    } else {
        "(name not shown)".to_owned()
    };
    format!(
        "unknown Postgres connection parameter {name}{hint}; its value is not repeated here. \
         The driver reads only {}, and options[NAME]",
        POSTGRES_PARAMETERS.join(", ")
    )
}

/// A query string with the value of every parameter that may hold a secret replaced by
/// `***`; the other parameters stay exactly as written.
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, _)) if !is_shown_parameter(&percent_decode(name)) => {
                format!("{name}=***")
            }
            // A bare word is no parameter a driver reads: perhaps a pasted secret.
            None if !pair.is_empty() && !is_shown_parameter(&percent_decode(pair)) => {
                "***".to_owned()
            }
            _ => pair.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Whether a (decoded) parameter's value may be shown: one the drivers read, whose name says
/// nothing of a password, a token or a secret.
fn is_shown_parameter(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let secret = ["pass", "pwd", "secret", "token", "key"]
        .iter()
        .any(|word| lower.contains(word));
    !secret && (is_postgres_parameter(name) || SQLITE_PARAMETERS.contains(&name))
}

/// The query parameters that the SQLite driver (sqlx) reads; it refuses any other itself,
/// naming the parameter but not its value.
const SQLITE_PARAMETERS: [&str; 4] = ["mode", "cache", "immutable", "vfs"];

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
    secrets: &Secrets,
    problems: &mut Problems,
) -> DatabaseUrl {
    let url = match secrets.env("DATABASE_URL").filter(|u| !u.is_empty()) {
        Some(url) => DatabaseUrl::new(&url),
        None => match raw.and_then(|raw| secrets.resolve(&raw, "database_url", problems)) {
            Some(url) => DatabaseUrl::new(url.expose_secret()),
            None => DatabaseUrl::new(DEFAULT_DATABASE_URL),
        },
    };
    validate_database_url(&url, problems);
    url
}

/// Checked before any driver sees the URL: a driver's own warnings print what they do not
/// understand in clear.
fn validate_database_url(url: &DatabaseUrl, problems: &mut Problems) {
    let text = url.expose();
    if !text.starts_with("sqlite:") && !url.is_postgres() {
        problems.at(
            "database_url",
            format!(
                "must start with sqlite:// (e.g. {DEFAULT_DATABASE_URL}) or postgres:// (e.g. postgres://offboard@db/offboard)"
            ),
        );
        return;
    }
    match Url::parse(text) {
        Ok(parsed) => {
            for problem in url.problems(&parsed) {
                problems.at("database_url", problem);
            }
        }
        Err(_) if url.is_postgres() => {
            problems.at("database_url", "is not a valid postgres:// URL");
        }
        // The SQLite driver reads its own URLs, which need not be valid URLs.
        Err(_) => {}
    }
}
