//! Configuration (README, Configuration): TOML found by `--config`, `$OFFBOARD_CONFIG` or
//! `./offboard.toml`, else built-in defaults; `env:`/`file:` secret references; four
//! environment overrides. Everything is validated at start and every problem is reported at
//! once, each with the key's path, because a typo must never silently disable a safety
//! setting.
//!
//! The rooms, in the order a file goes through them:
//! - `raw`: the serde types that mirror the TOML, and the parse that names every unknown
//!   key and never quotes a value in its errors;
//! - `validate`: raw → [`Config`], collecting every problem with its key path;
//! - `secret`: `env:`/`file:` references, and [`DatabaseUrl`], shown only redacted;
//! - `summary`: what `offboard check` prints;
//! - this file: the validated types, their defaults (each written once, here) and how a
//!   configuration is found and loaded.

mod raw;
mod secret;
mod summary;
mod validate;

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use reqwest::Url;
use secrecy::SecretString;

use crate::domain::duration::Span;
use crate::domain::{Action, Safety};
use crate::rules::Rule;
use crate::verify::Verifier;

pub use secret::DatabaseUrl;

// The defaults of the top-level keys and of `[[sources]]`; those of `[worker]` and `[safety]`
// are their `Default` impls. Validation reads them from here; the README table repeats them.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://offboard.db";
pub const DEFAULT_ADMIN_URL: &str = "https://api.atlassian.com";
/// Safe by default: going live is an explicit `dry_run = false`.
const DEFAULT_DRY_RUN: bool = true;
const DEFAULT_MAX_BODY_BYTES: u64 = 1024 * 1024;
const DEFAULT_MAX_CONNECTIONS: u64 = 1024;
const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);
/// A month: longer than any sender retries a delivery, short enough to keep the index small.
const DEFAULT_REPLAY_WINDOW: Span = Span::from_secs(30 * 86_400);
/// Shorter admin tokens are refused: they can be guessed.
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// `directory_id = "-"` addresses every directory the key may manage: documented for reads
/// only, so refused when a rule writes to the directory.
pub const ALL_DIRECTORIES: &str = "-";

/// The validated configuration the service runs with.
#[derive(Debug)]
pub struct Config {
    pub origin: ConfigOrigin,
    pub listen: SocketAddr,
    pub database_url: DatabaseUrl,
    pub dry_run: bool,
    pub admin_token: Option<SecretString>,
    pub max_body_bytes: usize,
    /// HTTP connections served at once; more wait in the listen queue (README, HTTP API).
    pub max_connections: usize,
    pub atlassian: Option<AtlassianConfig>,
    pub worker: WorkerConfig,
    pub safety: Safety,
    pub evidence: EvidenceConfig,
    pub handover: HandoverConfig,
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

impl AdminCredentials {
    /// Whether `directory_id` is `-`: every directory, for reads only.
    pub fn is_all_directories(&self) -> bool {
        self.directory_id == ALL_DIRECTORIES
    }
}

#[derive(Clone, Debug)]
pub struct WorkerConfig {
    pub concurrency: usize,
    pub max_attempts: i32,
    pub lease: Duration,
    /// Each API family's budget for the whole fleet on one store (README, "Running several
    /// replicas").
    pub requests_per_second: f64,
    /// The share of the budget bulk jobs may use while scheduled jobs are due (README,
    /// "Lanes").
    pub bulk_share: f64,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
}

/// The defaults of `[worker]`, written only here: validation fills what the file leaves out
/// from them.
impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 4,
            max_attempts: 8,
            lease: Duration::from_secs(120),
            requests_per_second: 5.0,
            bulk_share: 0.5,
            backoff_base: Duration::from_secs(5),
            backoff_max: Duration::from_secs(3600),
        }
    }
}

/// `[handover]`: hand-over before removal (README, "Hand-over before removal").
#[derive(Clone, Debug, Default)]
pub struct HandoverConfig {
    /// Who receives a leaver's items when a step names no successor, or its pointer finds
    /// none in the body: an email or an account id.
    pub fallback_successor: Option<crate::domain::SuccessorRef>,
}

/// `[evidence]`: proof of offboarding (README, "Proof for auditors").
#[derive(Clone, Debug)]
pub struct EvidenceConfig {
    /// The target from `max(first_seen, effective_at)` to `access_removed_at`.
    pub sla: Duration,
    /// How often the worker looks for chains that ended live and for rechecks that are due.
    pub verify_every: Duration,
    /// How long after its verification a case is read once more; `None` (`0s`): never.
    pub recheck_after: Option<Duration>,
    /// Whether a case found active again has its chain enqueued again, awaiting approval.
    pub reenqueue_reactivated: bool,
    /// How old a case's newest job must be before its personal data is pseudonymized.
    pub pseudonymize_after: Duration,
    /// The key of the pseudonyms (an HMAC); without it nothing is pseudonymized and
    /// `evidence erase` refuses.
    pub pseudonym_key: Option<SecretString>,
}

/// The defaults of `[evidence]`, written only here.
impl Default for EvidenceConfig {
    fn default() -> Self {
        const DAY: u64 = 24 * 3600;
        EvidenceConfig {
            sla: Duration::from_secs(DAY),
            verify_every: Duration::from_secs(5),
            recheck_after: Some(Duration::from_secs(DAY)),
            reenqueue_reactivated: false,
            pseudonymize_after: Duration::from_secs(400 * DAY),
            pseudonym_key: None,
        }
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
    /// whatever its id (README, Repeated deliveries).
    pub replay_window: Span,
    /// A timestamp inside the signed body, held to the verifier's tolerance.
    pub timestamp_pointer: Option<String>,
    pub rules: Vec<Rule>,
    /// One line per rule for `check`: its name and what it does.
    pub rule_summaries: Vec<String>,
}

impl Source {
    /// Whether some delivery id of this source may come unsigned (README, Repeated deliveries). Only a
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
        Self::discover_for(explicit, Purpose::Run)
    }

    /// As [`Config::discover`], for `offboard doctor`: a problem that the doctor diagnoses
    /// itself against the live APIs (`directory_id = "-"` with rules that write to the
    /// directory: its `directory` check lists the org's directories) lets it run. Every other
    /// problem is still an error.
    pub fn discover_to_diagnose(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        Self::discover_for(explicit, Purpose::Diagnose)
    }

    fn discover_for(explicit: Option<&Path>, purpose: Purpose) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        match config_path(explicit) {
            Some(path) => {
                let text = read_config(&path)?;
                Self::from_toml_for(&text, ConfigOrigin::File(path), &env, purpose)
            }
            None => Self::defaults(),
        }
    }

    /// Only the store's URL, for the commands that need nothing else (`jobs …`, `migrate`):
    /// an operator's shell need not hold every webhook secret to list jobs. The file is still
    /// parsed in full and unknown keys are still errors.
    pub fn discover_database_url(explicit: Option<&Path>) -> Result<DatabaseUrl, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let (text, origin) = match config_path(explicit) {
            Some(path) => (read_config(&path)?, ConfigOrigin::File(path)),
            None => (String::new(), ConfigOrigin::Defaults),
        };
        parse_and(&text, Purpose::Run, |raw, problems| {
            let secrets = secret::Secrets::new(&env, &origin);
            secret::database_url(raw.database_url, &secrets, problems)
        })
    }

    pub fn load(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let text = read_config(path)?;
        Self::from_toml(&text, ConfigOrigin::File(path.to_path_buf()), env)
    }

    /// Parses and validates `text`; `env` reads environment variables (a parameter so tests
    /// need not touch the process environment).
    pub fn from_toml(
        text: &str,
        origin: ConfigOrigin,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Self::from_toml_for(text, origin, env, Purpose::Run)
    }

    fn from_toml_for(
        text: &str,
        origin: ConfigOrigin,
        env: &dyn Fn(&str) -> Option<String>,
        purpose: Purpose,
    ) -> Result<Config, ConfigError> {
        parse_and(text, purpose, |raw, problems| {
            validate::config(raw, origin, env, problems)
        })
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

    /// Whether `directory_id` is `-` (all directories), which is documented for reads only.
    pub fn directory_is_all(&self) -> bool {
        self.atlassian
            .as_ref()
            .and_then(|a| a.admin.as_ref())
            .is_some_and(AdminCredentials::is_all_directories)
    }

    /// Why `action` cannot run with this configuration's directory, if it cannot: it writes to
    /// the directory and `directory_id` is `-`. One wording for every path that refuses it.
    pub fn directory_refuses(&self, action: Action) -> Option<String> {
        (action.writes_directory() && self.directory_is_all()).then(|| {
            format!(
                "{action} writes to the directory, but directory_id is `-` (all directories), \
                 which Atlassian documents for reads only — {DIRECTORY_FIX}"
            )
        })
    }
}

/// How to fix a `directory_id = "-"` that something writes through.
const DIRECTORY_FIX: &str = "set [atlassian] directory_id to one of the org's directory ids \
                             (`offboard doctor` lists them)";

/// What a configuration is loaded for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Serving, checking, enqueueing: every problem refuses it.
    Run,
    /// `offboard doctor`: a problem it diagnoses itself lets it run.
    Diagnose,
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
struct Problems {
    found: Vec<String>,
    /// How many of `found` `offboard doctor` diagnoses itself against the live APIs.
    diagnosed: usize,
}

impl Problems {
    fn at(&mut self, path: &str, message: impl fmt::Display) {
        self.add(format!("{path}: {message}"));
    }

    /// A problem without a key path (the file as a whole).
    fn add(&mut self, problem: String) {
        self.found.push(problem);
    }

    /// A problem that refuses the configuration for running, but that `offboard doctor`
    /// diagnoses itself, with what only the live APIs can tell (how to fix it).
    fn diagnosed_at(&mut self, path: &str, message: impl fmt::Display) {
        self.at(path, message);
        self.diagnosed += 1;
    }

    fn refuse(&self, purpose: Purpose) -> bool {
        match purpose {
            Purpose::Run => !self.found.is_empty(),
            Purpose::Diagnose => self.found.len() > self.diagnosed,
        }
    }
}

/// Parses `text` and reads what is needed from it with `read`; any problem of either makes
/// the error, with all the others found.
fn parse_and<T>(
    text: &str,
    purpose: Purpose,
    read: impl FnOnce(raw::RawConfig, &mut Problems) -> T,
) -> Result<T, ConfigError> {
    let mut problems = Problems::default();
    let value = raw::parse(text, &mut problems).map(|parsed| read(parsed, &mut problems));
    match value {
        Some(value) if !problems.refuse(purpose) => Ok(value),
        _ => Err(ConfigError(problems.found)),
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

#[cfg(test)]
mod tests;
