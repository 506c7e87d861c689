//! Configuration (INTERFACE §2): TOML found by `--config`, `$OFFBOARD_CONFIG` or
//! `./offboard.toml`, else built-in defaults; `env:`/`file:` secret references; four
//! environment overrides. Everything is validated at start and every problem is reported at
//! once, each with the key's path, because a typo must never silently disable a safety
//! setting.

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::duration::Span;
use crate::email::Email;
use crate::jobs::{Action, TargetAccount};
use crate::rules::{ActionSpec, Rule, RuleSpec};
use crate::verify::{Scheme, Verifier};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://offboard.db";
pub const DEFAULT_ADMIN_URL: &str = "https://api.atlassian.com";
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const DEFAULT_APPROVAL_ABOVE: u64 = 50;
/// A month: longer than any sender retries a delivery, short enough to keep the index small.
const DEFAULT_REPLAY_WINDOW: Span = Span::from_secs(30 * 86_400);
/// Shorter admin tokens are refused: they can be guessed.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const MAX_MAX_CONNECTIONS: u64 = 65_536;

/// The validated configuration the service runs with.
#[derive(Debug)]
pub struct Config {
    pub origin: ConfigOrigin,
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub dry_run: bool,
    pub admin_token: Option<SecretString>,
    pub max_body_bytes: usize,
    /// HTTP connections served at once; more wait in the listen queue (INTERFACE §10).
    pub max_connections: usize,
    pub atlassian: Option<AtlassianConfig>,
    pub worker: WorkerConfig,
    pub safety: Safety,
    pub sources: Vec<Source>,
}

/// Where the configuration came from, for `check` and the start-up log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigOrigin {
    File(PathBuf),
    Defaults,
}

impl fmt::Display for ConfigOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigOrigin::File(path) => write!(f, "{}", path.display()),
            ConfigOrigin::Defaults => f.write_str("built-in defaults (no config file)"),
        }
    }
}

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

/// Credentials for Atlassian Cloud; each half is present when some rule needs it.
#[derive(Debug)]
pub struct AtlassianConfig {
    pub site: Option<SiteCredentials>,
    pub admin: Option<AdminCredentials>,
}

#[derive(Debug)]
pub struct SiteCredentials {
    pub url: Url,
    pub email: String,
    pub api_token: SecretString,
}

#[derive(Debug)]
pub struct AdminCredentials {
    pub url: Url,
    pub api_key: SecretString,
    pub org_id: String,
    pub directory_id: String,
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub max_attempts: i32,
    pub lease: Duration,
    pub requests_per_second: f64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            max_attempts: 8,
            lease: Duration::from_secs(120),
            requests_per_second: 5.0,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

/// Who must never be touched, and how much may happen per hour.
#[derive(Clone, Debug)]
pub struct Safety {
    pub protected_emails: BTreeSet<String>,
    pub protected_domains: Vec<String>,
    pub protected_account_ids: BTreeSet<String>,
    pub max_actions_per_hour: u64,
    /// A delivery that would create more jobs than this has all of them wait for approval.
    pub approval_above: u64,
}

impl Default for Safety {
    fn default() -> Self {
        Safety {
            protected_emails: BTreeSet::new(),
            protected_domains: Vec::new(),
            protected_account_ids: BTreeSet::new(),
            max_actions_per_hour: 100,
            approval_above: DEFAULT_APPROVAL_ABOVE,
        }
    }
}

impl Safety {
    /// Why this email must not be touched, if it is protected: listed itself, or in a
    /// protected domain or one of its subdomains.
    pub fn protects_email(&self, email: &str) -> Option<&'static str> {
        let email = email.to_ascii_lowercase();
        if self.protected_emails.contains(&email) {
            return Some("protected_email");
        }
        let domain = email.rsplit_once('@').map(|(_, d)| d)?;
        self.protected_domains
            .iter()
            .any(|protected| {
                domain == protected
                    || domain
                        .strip_suffix(protected.as_str())
                        .is_some_and(|rest| rest.ends_with('.'))
            })
            .then_some("protected_domain")
    }

    pub fn protects_account(&self, account_id: &str) -> bool {
        self.protected_account_ids.contains(account_id)
    }
}

/// A webhook sender: `POST /hooks/{name}`.
#[derive(Debug)]
pub struct Source {
    pub name: String,
    pub verifier: Verifier,
    pub id_header: Option<HeaderName>,
    pub id_pointer: Option<String>,
    /// Where the delivery id is not signed, a body accepted within this span is a repeat
    /// whatever its id (INTERFACE §10).
    pub replay_window: Span,
    /// A timestamp inside the signed body, held to the verifier's tolerance.
    pub timestamp_pointer: Option<String>,
    pub rules: Vec<Rule>,
    /// One line per rule for `check`: its name and what it does.
    pub rule_summaries: Vec<String>,
}

impl Source {
    /// Whether some delivery id of this source may come unsigned (INTERFACE §10). Only a
    /// Standard Webhooks source without `id_header` signs every id it uses: `webhook-id`, or
    /// an `id_pointer` into the signed body.
    pub fn has_unsigned_ids(&self) -> bool {
        self.id_header.is_some() || !self.verifier.scheme.signs_delivery_id()
    }
}

impl Config {
    /// The configuration used when no file is found.
    pub fn defaults() -> Result<Config, ConfigError> {
        Self::from_toml("", ConfigOrigin::Defaults, &|name| std::env::var(name).ok())
    }

    /// Finds and loads the configuration: `explicit` (from `--config`), else
    /// `$OFFBOARD_CONFIG`, else `./offboard.toml` if present, else the built-in defaults.
    pub fn discover(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        match config_path(explicit) {
            Some(path) => Self::load(&path, &env),
            None => Self::from_toml("", ConfigOrigin::Defaults, &env),
        }
    }

    /// Only the store's URL, for the commands that need nothing else (`jobs …`, `migrate`):
    /// an operator's shell need not hold every webhook secret to list jobs. The file is still
    /// parsed in full and unknown keys are still errors.
    pub fn discover_database_url(explicit: Option<&Path>) -> Result<DatabaseUrl, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let text = match config_path(explicit) {
            Some(path) => read_config(&path)?,
            None => String::new(),
        };
        let mut problems = Problems::default();
        let Some(raw) = parse_raw(&text, &mut problems) else {
            return Err(ConfigError(problems.0));
        };
        let url = database_url(raw.database_url, &env, &mut problems);
        if problems.0.is_empty() {
            Ok(url)
        } else {
            Err(ConfigError(problems.0))
        }
    }

    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError(vec![format!(
                "cannot read config file {}: {e}",
                path.display()
            )])
        })?;
        Self::from_toml(&text, ConfigOrigin::File(path.to_path_buf()), env)
    }

    /// Parses and validates `text`; `env` reads environment variables (a parameter so tests
    /// need not touch the process environment).
    pub fn from_toml(
        text: &str,
        origin: ConfigOrigin,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut problems = Problems::default();
        let raw = parse_raw(text, &mut problems);
        let Some(raw) = raw else {
            return Err(ConfigError(problems.0));
        };
        let config = validate(raw, origin, env, &mut problems);
        if problems.0.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError(problems.0))
        }
    }

    pub fn source(&self, name: &str) -> Option<&Source> {
        self.sources.iter().find(|s| s.name == name)
    }

    /// Every action some rule may enqueue.
    pub fn actions(&self) -> BTreeSet<Action> {
        self.sources
            .iter()
            .flat_map(|s| s.rules.iter())
            .flat_map(|r| r.actions())
            .collect()
    }

    /// The human summary `offboard check` prints. Never contains a secret.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        line(format!("config: {}", self.origin));
        line(format!("store: {}", self.database_url.redacted()));
        line(format!("listen: {}", self.listen));
        line(format!(
            "dry run: {}",
            if self.dry_run {
                "yes (targets are resolved, no mutating call is made)"
            } else {
                "NO: actions are live"
            }
        ));
        line(format!(
            "admin API: {}",
            if self.admin_token.is_some() {
                "enabled (admin_token set)"
            } else {
                "disabled (no admin_token: every /api route answers 401)"
            }
        ));
        match &self.atlassian {
            None => line("atlassian: not configured (the worker leaves jobs pending)".into()),
            Some(a) => {
                if let Some(site) = &a.site {
                    line(format!("atlassian site: {} as {}", site.url, site.email));
                }
                if let Some(admin) = &a.admin {
                    line(format!(
                        "atlassian admin: {} (org {}, directory {})",
                        admin.url, admin.org_id, admin.directory_id
                    ));
                }
            }
        }
        let w = &self.worker;
        line(format!(
            "worker: concurrency {}, max_attempts {}, lease {}s, {} requests/s per API family, backoff {}s..{}s",
            w.concurrency,
            w.max_attempts,
            w.lease.as_secs(),
            w.requests_per_second,
            w.backoff_base.as_secs(),
            w.backoff_max.as_secs()
        ));
        let s = &self.safety;
        line(format!(
            "safety: {} protected emails, {} protected domains, {} protected account ids, at most {} actions/hour, \
             approval needed for any delivery of more than {} jobs",
            s.protected_emails.len(),
            s.protected_domains.len(),
            s.protected_account_ids.len(),
            s.max_actions_per_hour,
            s.approval_above
        ));
        if self.sources.is_empty() {
            line("sources: none (every POST /hooks/... answers 404)".into());
        } else {
            line("sources:".into());
        }
        for source in &self.sources {
            let mut freshness = format!("tolerance {}s", source.verifier.tolerance.as_secs());
            if let Some(pointer) = &source.timestamp_pointer {
                freshness.push_str(&format!(" (also for the body's {pointer})"));
            }
            if source.has_unsigned_ids() {
                freshness.push_str(&format!(
                    ", unsigned delivery ids: repeats need the same body, replay window {}",
                    source.replay_window
                ));
            }
            line(format!(
                "  {} ({}, {} secret{}, {freshness}): POST /hooks/{}",
                source.name,
                source.verifier.scheme.name(),
                source.verifier.secrets.len(),
                if source.verifier.secrets.len() == 1 {
                    ""
                } else {
                    "s"
                },
                source.name
            ));
            for rule in &source.rule_summaries {
                line(format!("    rule {rule}"));
            }
        }
        let actions: Vec<&str> = self.actions().into_iter().map(Action::as_str).collect();
        line(format!(
            "actions: {}",
            if actions.is_empty() {
                "none".to_owned()
            } else {
                actions.join(", ")
            }
        ));
        out
    }
}

/// Every problem found in a configuration, one per line.
#[derive(Debug)]
pub struct ConfigError(pub Vec<String>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem{}):",
            self.0.len(),
            if self.0.len() == 1 { "" } else { "s" }
        )?;
        for problem in &self.0 {
            writeln!(f, "  - {problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn at(&mut self, path: &str, message: impl fmt::Display) {
        self.0.push(format!("{path}: {message}"));
    }
}

#[derive(Deserialize, Default)]
struct RawConfig {
    listen: Option<String>,
    database_url: Option<String>,
    dry_run: Option<bool>,
    admin_token: Option<String>,
    max_body_bytes: Option<u64>,
    max_connections: Option<u64>,
    atlassian: Option<RawAtlassian>,
    #[serde(default)]
    worker: RawWorker,
    #[serde(default)]
    safety: RawSafety,
    #[serde(default)]
    sources: Vec<RawSource>,
}

#[derive(Deserialize, Default)]
struct RawAtlassian {
    site_url: Option<String>,
    site_email: Option<String>,
    site_api_token: Option<String>,
    admin_url: Option<String>,
    admin_api_key: Option<String>,
    org_id: Option<String>,
    directory_id: Option<String>,
}

#[derive(Deserialize, Default)]
struct RawWorker {
    concurrency: Option<i64>,
    max_attempts: Option<i64>,
    lease_seconds: Option<i64>,
    requests_per_second: Option<f64>,
    backoff_base_seconds: Option<i64>,
    backoff_max_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
struct RawSafety {
    #[serde(default)]
    protected_emails: Vec<String>,
    #[serde(default)]
    protected_domains: Vec<String>,
    #[serde(default)]
    protected_account_ids: Vec<String>,
    max_actions_per_hour: Option<i64>,
    approval_above: Option<i64>,
}

#[derive(Deserialize)]
struct RawSource {
    name: Option<String>,
    scheme: Option<String>,
    #[serde(default)]
    secrets: Vec<String>,
    tolerance_seconds: Option<i64>,
    header: Option<String>,
    prefix: Option<String>,
    id_header: Option<String>,
    id_pointer: Option<String>,
    replay_window: Option<String>,
    timestamp_pointer: Option<String>,
    #[serde(default)]
    rules: Vec<RuleSpec>,
}

/// Parses the TOML, reporting every unknown key with its path.
fn parse_raw(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    let deserializer = match toml::Deserializer::parse(text) {
        Ok(d) => d,
        Err(e) => {
            problems.0.push(toml_problem("invalid TOML", text, &e));
            return None;
        }
    };
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(key_path(&path));
    });
    for path in unknown {
        problems.0.push(format!(
            "unknown key `{path}` (check its spelling: unknown keys are rejected so a typo cannot disable a setting)"
        ));
    }
    match raw {
        Ok(raw) => Some(raw),
        Err(e) => {
            problems
                .0
                .push(toml_problem("invalid configuration", text, &e));
            None
        }
    }
}

/// A TOML syntax or type error as one line: where (key, line, column) and what, never the
/// offending text. The toml crate's own rendering quotes the source line, and serde's type
/// errors quote the value (`invalid type: string "…"`): either may be a secret written at
/// the wrong key or left in an unclosed string.
fn toml_problem(kind: &str, text: &str, error: &toml::de::Error) -> String {
    let mut place = Vec::new();
    if let Some(keys) = error_keys(error) {
        place.push(format!("`{keys}`"));
    }
    if let Some(span) = error.span() {
        let (line, column) = line_and_column(text, span.start);
        place.push(format!("line {line}, column {column}"));
    }
    let message = redact_quoted_values(error.message());
    if place.is_empty() {
        format!("{kind}: {message}")
    } else {
        format!("{kind} at {}: {message}", place.join(", "))
    }
}

/// The dotted key an error belongs to. The toml crate shows it only when it has no source
/// text to quote, so it is read from that rendering.
fn error_keys(error: &toml::de::Error) -> Option<String> {
    let mut bare = error.clone();
    bare.set_input(None);
    let rendered = bare.to_string();
    let rest = rendered.strip_prefix(error.message())?.trim();
    let keys = rest.strip_prefix("in `")?.strip_suffix('`')?;
    (!keys.is_empty()).then(|| keys.to_owned())
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// Replaces every quoted part of what an error says it found (`"…"`, `'…'`, `` `…` ``, before
/// any `, expected …`, which describes the key, not the value) with `***`. Messages about a
/// field name (`missing field `name``) quote a key, not a value, and stay as they are.
fn redact_quoted_values(message: &str) -> String {
    let (found, expected) = message
        .find(", expected")
        .map_or((message, ""), |at| message.split_at(at));
    let names_a_field = ["missing field", "unknown field", "duplicate field"]
        .iter()
        .any(|prefix| found.starts_with(prefix));
    if names_a_field {
        return message.to_owned();
    }
    let mut out = String::with_capacity(message.len());
    let mut chars = found.chars();
    while let Some(c) = chars.next() {
        if !matches!(c, '"' | '\'' | '`') {
            out.push(c);
            continue;
        }
        let mut escaped = false;
        for d in chars.by_ref() {
            match d {
                _ if escaped => escaped = false,
                '\\' if c != '`' => escaped = true,
                _ if d == c => break,
                _ => {}
            }
        }
        out.push_str("***");
    }
    out.push_str(expected);
    out
}

/// Renders an ignored key's path the way the other messages name keys: `sources[0].rules[1].emial`.
fn key_path(path: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => match key_path(parent) {
            prefix if prefix.is_empty() => key.clone(),
            prefix => format!("{prefix}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

fn validate(
    raw: RawConfig,
    origin: ConfigOrigin,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Config {
    let listen_text = env("OFFBOARD_LISTEN")
        .or(raw.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.at(
            "listen",
            format!("`{listen_text}` is not an address:port such as 127.0.0.1:8080"),
        );
        SocketAddr::from(([127, 0, 0, 1], 8080))
    });

    let database_url = database_url(raw.database_url, env, problems);

    // Empty counts as unset, as for OFFBOARD_ADMIN_TOKEN: compose files pass empty variables.
    let dry_run = match env("OFFBOARD_DRY_RUN").filter(|v| !v.is_empty()) {
        Some(value) => match value.as_str() {
            "true" | "1" => true,
            "false" | "0" => false,
            _ => {
                problems.at(
                    "OFFBOARD_DRY_RUN",
                    "must be true, false, 1 or 0 (the value is not repeated here)",
                );
                true
            }
        },
        None => raw.dry_run.unwrap_or(true),
    };

    let admin_token = match env("OFFBOARD_ADMIN_TOKEN") {
        Some(token) => Some(SecretString::from(token)),
        None => raw
            .admin_token
            .and_then(|r| resolve_secret(&r, "admin_token", env, problems)),
    }
    .filter(|t| !t.expose_secret().is_empty());
    // Anyone who can reach the port may guess it, at the API or the console's login form.
    if let Some(token) = &admin_token {
        let length = token.expose_secret().chars().count();
        if length < MIN_ADMIN_TOKEN_CHARS {
            let key = if env("OFFBOARD_ADMIN_TOKEN").is_some() {
                "OFFBOARD_ADMIN_TOKEN"
            } else {
                "admin_token"
            };
            problems.at(
                key,
                format!(
                    "must be at least {MIN_ADMIN_TOKEN_CHARS} characters (it has {length}); make one with `openssl rand -hex 32`"
                ),
            );
        }
    }

    let max_body_bytes = raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY_BYTES);
    if !(1024..=MAX_MAX_BODY_BYTES).contains(&max_body_bytes) {
        problems.at(
            "max_body_bytes",
            format!("must be between 1024 and {MAX_MAX_BODY_BYTES}"),
        );
    }

    let max_connections = raw.max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS);
    if !(1..=MAX_MAX_CONNECTIONS).contains(&max_connections) {
        problems.at(
            "max_connections",
            format!("must be between 1 and {MAX_MAX_CONNECTIONS}"),
        );
    }

    let worker = validate_worker(raw.worker, problems);
    let safety = validate_safety(raw.safety, problems);
    let sources = validate_sources(raw.sources, env, problems);

    let targets: BTreeSet<_> = sources
        .iter()
        .flat_map(|s| s.rules.iter())
        .flat_map(|r| r.actions())
        .map(|a| match a.target() {
            TargetAccount::Customer => "site",
            TargetAccount::Managed => "admin",
        })
        .collect();
    let atlassian = match raw.atlassian {
        Some(a) => Some(validate_atlassian(a, &targets, env, problems)),
        None => {
            if !dry_run && !targets.is_empty() {
                problems.at(
                    "atlassian",
                    "the [atlassian] section is required when dry_run = false and rules enqueue actions",
                );
            }
            None
        }
    };

    Config {
        origin,
        listen,
        database_url,
        dry_run,
        admin_token,
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
        atlassian,
        worker,
        safety,
        sources,
    }
}

/// `--config`, else `$OFFBOARD_CONFIG`, else `./offboard.toml` if present.
fn config_path(explicit: Option<&Path>) -> Option<PathBuf> {
    explicit
        .map(Path::to_path_buf)
        .or_else(|| {
            std::env::var("OFFBOARD_CONFIG")
                .ok()
                .filter(|p| !p.is_empty())
                .map(PathBuf::from)
        })
        .or_else(|| {
            let local = PathBuf::from("offboard.toml");
            local.exists().then_some(local)
        })
}

fn read_config(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![format!(
            "cannot read config file {}: {e}",
            path.display()
        )])
    })
}

/// `DATABASE_URL`, else the file's `database_url` (which may hold a password, so it may be a
/// secret reference like any other), else the SQLite default.
fn database_url(
    raw: Option<String>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> DatabaseUrl {
    let url = match env("DATABASE_URL").filter(|u| !u.is_empty()) {
        Some(url) => DatabaseUrl::new(&url),
        None => match raw {
            Some(raw) => resolve_secret(&raw, "database_url", env, problems)
                .map(|url| DatabaseUrl::new(url.expose_secret()))
                .unwrap_or_else(|| DatabaseUrl::new(DEFAULT_DATABASE_URL)),
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
            "must start with sqlite:// (e.g. sqlite://offboard.db) or postgres:// (e.g. postgres://offboard@db/offboard)",
        );
    } else if Url::parse(text).is_err() {
        problems.at("database_url", "is not a valid postgres:// URL");
    }
}

/// Resolves `env:NAME`, `file:PATH` or a literal. Messages name the variable or file, never
/// the value.
fn resolve_secret(
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

fn required_secret(
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

fn validate_url(
    raw: Option<String>,
    default: Option<&str>,
    path: &str,
    problems: &mut Problems,
) -> Option<Url> {
    let Some(text) = raw.or(default.map(str::to_owned)) else {
        problems.at(path, "is required");
        return None;
    };
    match Url::parse(&text) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
        _ => {
            problems.at(
                path,
                format!("`{text}` is not an http(s) URL such as https://example.atlassian.net"),
            );
            None
        }
    }
}

fn required_text(raw: Option<String>, path: &str, problems: &mut Problems) -> Option<String> {
    match raw {
        Some(text) if !text.trim().is_empty() => Some(text),
        _ => {
            problems.at(path, "is required");
            None
        }
    }
}

/// Site credentials are required when a customer action is configured, admin credentials
/// when a managed one is; a section that gives some keys of a half must give all of them.
fn validate_atlassian(
    raw: RawAtlassian,
    needed: &BTreeSet<&str>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> AtlassianConfig {
    let site_given =
        raw.site_url.is_some() || raw.site_email.is_some() || raw.site_api_token.is_some();
    let site = (site_given || needed.contains("site")).then(|| {
        let url = validate_url(raw.site_url, None, "atlassian.site_url", problems);
        let email = required_text(raw.site_email, "atlassian.site_email", problems);
        if let Some(email) = &email
            && let Err(why) = Email::parse(email)
        {
            problems.at("atlassian.site_email", why);
        }
        let token = required_secret(
            raw.site_api_token,
            "atlassian.site_api_token",
            env,
            problems,
        );
        Some(SiteCredentials {
            url: url?,
            email: email?,
            api_token: token?,
        })
    });
    let admin_given =
        raw.admin_api_key.is_some() || raw.org_id.is_some() || raw.directory_id.is_some();
    let admin = (admin_given || needed.contains("admin")).then(|| {
        let url = validate_url(
            raw.admin_url,
            Some(DEFAULT_ADMIN_URL),
            "atlassian.admin_url",
            problems,
        );
        let key = required_secret(raw.admin_api_key, "atlassian.admin_api_key", env, problems);
        let org = required_text(raw.org_id, "atlassian.org_id", problems);
        let dir = required_text(raw.directory_id, "atlassian.directory_id", problems);
        Some(AdminCredentials {
            url: url?,
            api_key: key?,
            org_id: org?,
            directory_id: dir?,
        })
    });
    AtlassianConfig {
        site: site.flatten(),
        admin: admin.flatten(),
    }
}

fn in_range(
    value: Option<i64>,
    default: i64,
    range: std::ops::RangeInclusive<i64>,
    path: &str,
    problems: &mut Problems,
) -> i64 {
    let value = value.unwrap_or(default);
    if range.contains(&value) {
        value
    } else {
        problems.at(
            path,
            format!("must be between {} and {}", range.start(), range.end()),
        );
        default
    }
}

fn validate_worker(raw: RawWorker, problems: &mut Problems) -> WorkerConfig {
    let d = WorkerConfig::default();
    let secs = |v: i64| Duration::from_secs(v.unsigned_abs());
    let concurrency = in_range(raw.concurrency, 4, 1..=256, "worker.concurrency", problems);
    let max_attempts = in_range(
        raw.max_attempts,
        8,
        1..=100,
        "worker.max_attempts",
        problems,
    );
    let lease = in_range(
        raw.lease_seconds,
        120,
        5..=86_400,
        "worker.lease_seconds",
        problems,
    );
    let base = in_range(
        raw.backoff_base_seconds,
        5,
        1..=86_400,
        "worker.backoff_base_seconds",
        problems,
    );
    let max = in_range(
        raw.backoff_max_seconds,
        3600,
        1..=604_800,
        "worker.backoff_max_seconds",
        problems,
    );
    if max < base {
        problems.at(
            "worker.backoff_max_seconds",
            "must not be smaller than backoff_base_seconds",
        );
    }
    let rps = raw.requests_per_second.unwrap_or(d.requests_per_second);
    if !(rps.is_finite() && rps > 0.0 && rps <= 100_000.0) {
        problems.at(
            "worker.requests_per_second",
            "must be a number above 0 and at most 100000",
        );
    }
    WorkerConfig {
        concurrency: concurrency as usize,
        max_attempts: max_attempts as i32,
        lease: secs(lease),
        requests_per_second: rps,
        backoff_base: secs(base),
        backoff_max: secs(max),
    }
}

fn validate_safety(raw: RawSafety, problems: &mut Problems) -> Safety {
    let mut protected_emails = BTreeSet::new();
    for (i, email) in raw.protected_emails.iter().enumerate() {
        match Email::parse(&email.to_ascii_lowercase()) {
            Ok(email) => {
                protected_emails.insert(email.as_str().to_owned());
            }
            Err(why) => problems.at(&format!("safety.protected_emails[{i}]"), why),
        }
    }
    let mut protected_domains = Vec::new();
    for (i, domain) in raw.protected_domains.iter().enumerate() {
        let domain = domain.trim_start_matches('@').to_ascii_lowercase();
        // A domain is valid exactly when an address at it is.
        match Email::parse(&format!("x@{domain}")) {
            Ok(_) => protected_domains.push(domain),
            Err(_) => problems.at(
                &format!("safety.protected_domains[{i}]"),
                format!("`{domain}` is not a domain such as example.com"),
            ),
        }
    }
    let mut protected_account_ids = BTreeSet::new();
    for (i, id) in raw.protected_account_ids.iter().enumerate() {
        if id.trim().is_empty() {
            problems.at(&format!("safety.protected_account_ids[{i}]"), "is empty");
        } else {
            protected_account_ids.insert(id.clone());
        }
    }
    let max_actions_per_hour = in_range(
        raw.max_actions_per_hour,
        100,
        1..=1_000_000,
        "safety.max_actions_per_hour",
        problems,
    ) as u64;
    let approval_above = in_range(
        raw.approval_above,
        DEFAULT_APPROVAL_ABOVE as i64,
        0..=1_000_000,
        "safety.approval_above",
        problems,
    ) as u64;
    Safety {
        protected_emails,
        protected_domains,
        protected_account_ids,
        max_actions_per_hour,
        approval_above,
    }
}

fn validate_sources(
    raw: Vec<RawSource>,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Vec<Source> {
    let mut names = BTreeSet::new();
    let mut sources = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let path = format!("sources[{i}]");
        let name = raw.name.clone().unwrap_or_default();
        if name.is_empty() {
            problems.at(&format!("{path}.name"), "is required");
        } else if !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            problems.at(
                &format!("{path}.name"),
                format!("`{name}` must use only a-z, 0-9, - and _ (it is part of the URL)"),
            );
        } else if !names.insert(name.clone()) {
            problems.at(
                &format!("{path}.name"),
                format!("duplicate source name `{name}`"),
            );
        }
        if let Some(source) = validate_source(raw, &path, env, problems) {
            sources.push(source);
        }
    }
    sources
}

fn validate_source(
    raw: RawSource,
    path: &str,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Option<Source> {
    let scheme = match raw.scheme.as_deref() {
        None => {
            problems.at(&format!("{path}.scheme"), "is required");
            None
        }
        Some(name) => Scheme::parse(name, raw.header.as_deref(), raw.prefix.as_deref())
            .map_err(|why| problems.at(&format!("{path}.scheme"), why))
            .ok(),
    };
    if raw.secrets.is_empty() {
        problems.at(
            &format!("{path}.secrets"),
            "at least one secret is required",
        );
    }
    let mut secrets = Vec::new();
    for (j, secret) in raw.secrets.iter().enumerate() {
        let secret_path = format!("{path}.secrets[{j}]");
        let Some(secret) = resolve_secret(secret, &secret_path, env, problems) else {
            continue;
        };
        if let Some(scheme) = &scheme
            && let Err(why) = scheme.validate_secret(&secret)
        {
            problems.at(&secret_path, why);
            continue;
        }
        secrets.push(secret);
    }
    let tolerance = in_range(
        raw.tolerance_seconds,
        300,
        1..=86_400,
        &format!("{path}.tolerance_seconds"),
        problems,
    );
    let id_header = raw.id_header.as_deref().and_then(|h| {
        HeaderName::try_from(h)
            .map_err(|_| {
                problems.at(
                    &format!("{path}.id_header"),
                    format!("`{h}` is not a valid header name"),
                )
            })
            .ok()
    });
    if let Some(pointer) = &raw.id_pointer
        && !pointer.is_empty()
        && !pointer.starts_with('/')
    {
        problems.at(
            &format!("{path}.id_pointer"),
            format!("`{pointer}` is not a JSON Pointer (it must start with /)"),
        );
    }
    let replay_window = validate_replay_window(&raw, scheme.as_ref(), path, problems);
    if let Some(pointer) = &raw.timestamp_pointer {
        let key = format!("{path}.timestamp_pointer");
        if !pointer.starts_with('/') {
            problems.at(
                &key,
                format!(
                    "`{pointer}` is not a JSON Pointer (it must start with /, e.g. /timestamp)"
                ),
            );
        } else if let Some(scheme) = scheme.as_ref().filter(|s| !s.signs_body()) {
            problems.at(
                &key,
                format!(
                    "scheme `{}` does not sign the body, so whoever holds one request could \
                     change its timestamp; it guards nothing here",
                    scheme.name()
                ),
            );
        }
    }
    let mut rules = Vec::new();
    let mut rule_summaries = Vec::new();
    let mut rule_names = BTreeSet::new();
    for (j, spec) in raw.rules.into_iter().enumerate() {
        if !rule_names.insert(spec.name.clone()) {
            problems.at(
                &format!("{path}.rules[{j}].name"),
                format!("duplicate rule name `{}` in this source", spec.name),
            );
        }
        let summary = summarize_rule(&spec);
        match Rule::compile(spec) {
            Ok(rule) => {
                rules.push(rule);
                rule_summaries.push(summary);
            }
            Err(errors) => {
                for why in errors {
                    problems.at(&format!("{path}.rules[{j}]"), why);
                }
            }
        }
    }
    Some(Source {
        name: raw.name?,
        verifier: Verifier {
            scheme: scheme?,
            secrets,
            tolerance: Duration::from_secs(tolerance.unsigned_abs()),
        },
        id_header,
        id_pointer: raw.id_pointer.filter(|p| !p.is_empty()),
        replay_window,
        timestamp_pointer: raw.timestamp_pointer,
        rules,
        rule_summaries,
    })
}

/// `replay_window`: a duration of at least a second, and only where some delivery id is not
/// signed (a Standard Webhooks source without `id_header` has only signed ones).
fn validate_replay_window(
    raw: &RawSource,
    scheme: Option<&Scheme>,
    path: &str,
    problems: &mut Problems,
) -> Span {
    let Some(text) = &raw.replay_window else {
        return DEFAULT_REPLAY_WINDOW;
    };
    let key = format!("{path}.replay_window");
    let window = match Span::parse(text) {
        Ok(window) if window == Span::ZERO => {
            problems.at(
                &key,
                "must be at least 1s: a replayed body would otherwise create jobs again",
            );
            DEFAULT_REPLAY_WINDOW
        }
        Ok(window) => window,
        Err(why) => {
            problems.at(&key, why);
            DEFAULT_REPLAY_WINDOW
        }
    };
    if let Some(scheme) = scheme
        && scheme.signs_delivery_id()
        && raw.id_header.is_none()
    {
        problems.at(
            &key,
            format!(
                "does not apply to scheme `{}`: it signs its delivery id, which alone identifies \
                 a delivery",
                scheme.name()
            ),
        );
    }
    window
}

fn summarize_rule(spec: &RuleSpec) -> String {
    if spec.cancel == Some(true) {
        return format!("{}: cancels the person's pending jobs", spec.name);
    }
    let actions = spec
        .actions
        .iter()
        .flatten()
        .map(|a| match a {
            ActionSpec::Name(name) => name.clone(),
            ActionSpec::Table(t) => match &t.after {
                Some(after) => format!("{} after {after}", t.action),
                None => t.action.clone(),
            },
        })
        .collect::<Vec<_>>()
        .join(", then ");
    let approval = if spec.approval == Some(true) {
        " (needs approval)"
    } else {
        ""
    };
    format!("{}: {actions}{approval}", spec.name)
}

#[cfg(test)]
mod tests;
