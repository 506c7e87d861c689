//! Raw → validated: every key checked, every problem collected with its key path (so an
//! operator fixes the file in one pass), and a default taken for every key left out.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use http::HeaderName;
use reqwest::Url;
use secrecy::{ExposeSecret, SecretString};

use super::raw::{RawAtlassian, RawConfig, RawEvidence, RawSafety, RawSource, RawWorker};
use super::secret::{Secrets, database_url};
use super::summary::summarize_rule;
use super::{
    AdminCredentials, AtlassianConfig, Config, ConfigOrigin, DEFAULT_ADMIN_URL, DEFAULT_DRY_RUN,
    DEFAULT_LISTEN, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_REPLAY_WINDOW,
    DEFAULT_TOLERANCE, DIRECTORY_FIX, EvidenceConfig, HandoverConfig, MIN_ADMIN_TOKEN_CHARS,
    Problems, SiteCredentials, Source, WorkerConfig,
};
use crate::domain::duration::Span;
use crate::domain::{ApiFamily, Domain, Email, Safety};
use crate::rules::Rule;
use crate::verify::{Scheme, Verifier};

const MAX_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;
const MAX_MAX_CONNECTIONS: u64 = 65_536;

/// The whole configuration; an environment override wins over the key it overrides.
pub(super) fn config(
    raw: RawConfig,
    origin: ConfigOrigin,
    env: &dyn Fn(&str) -> Option<String>,
    problems: &mut Problems,
) -> Config {
    let secrets = Secrets::new(env, &origin);
    let listen_text = env("OFFBOARD_LISTEN")
        .or(raw.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
    let listen = listen_text.parse().unwrap_or_else(|_| {
        problems.at(
            "listen",
            format!("`{listen_text}` is not an address:port such as {DEFAULT_LISTEN}"),
        );
        // Never used: a configuration with a problem is refused.
        SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
    });

    let database_url = database_url(raw.database_url, &secrets, problems);

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
                DEFAULT_DRY_RUN
            }
        },
        None => raw.dry_run.unwrap_or(DEFAULT_DRY_RUN),
    };

    let admin_token = match env("OFFBOARD_ADMIN_TOKEN") {
        Some(token) => Some(SecretString::from(token)),
        None => raw
            .admin_token
            .and_then(|r| secrets.resolve(&r, "admin_token", problems)),
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

    let max_body_bytes = in_range(
        raw.max_body_bytes,
        DEFAULT_MAX_BODY_BYTES,
        1024..=MAX_MAX_BODY_BYTES,
        "max_body_bytes",
        problems,
    );
    let max_connections = in_range(
        raw.max_connections,
        DEFAULT_MAX_CONNECTIONS,
        1..=MAX_MAX_CONNECTIONS,
        "max_connections",
        problems,
    );

    let worker = validate_worker(raw.worker, problems);
    let safety = validate_safety(raw.safety, problems);
    let evidence = validate_evidence(raw.evidence, &secrets, problems);
    let handover = validate_handover(raw.handover, problems);
    let sources = validate_sources(raw.sources, &secrets, problems);

    let targets: BTreeSet<_> = sources
        .iter()
        .flat_map(|s| s.rules.iter())
        .flat_map(|r| r.steps())
        .flat_map(|(action, params)| action.families(params))
        .map(ApiFamily::as_str)
        .collect();
    let atlassian = match raw.atlassian {
        Some(a) => Some(validate_atlassian(a, &targets, &secrets, problems)),
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

    if let Some(admin) = atlassian.as_ref().and_then(|a| a.admin.as_ref())
        && admin.is_all_directories()
    {
        refuse_directory_writes(&sources, problems);
    }

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
        evidence,
        handover,
        sources,
    }
}

fn validate_handover(raw: super::raw::RawHandover, problems: &mut Problems) -> HandoverConfig {
    let fallback_successor = raw.fallback_successor.and_then(|text| {
        let successor = crate::domain::SuccessorRef::parse(&text);
        if successor.is_none() {
            problems.at(
                "handover.fallback_successor",
                "must be an email or an Atlassian account id",
            );
        }
        successor
    });
    HandoverConfig { fallback_successor }
}

fn validate_evidence(
    raw: RawEvidence,
    secrets: &Secrets<'_>,
    problems: &mut Problems,
) -> EvidenceConfig {
    let defaults = EvidenceConfig::default();
    let mut span = |value: Option<String>, key: &str, default: Duration| match value {
        None => default,
        Some(text) => match Span::parse(&text) {
            Ok(span) => Duration::from_secs(span.as_secs()),
            Err(e) => {
                problems.at(&format!("evidence.{key}"), e);
                default
            }
        },
    };
    let sla = span(raw.sla, "sla", defaults.sla);
    let verify_every = span(raw.verify_every, "verify_every", defaults.verify_every);
    let recheck_after = span(
        raw.recheck_after,
        "recheck_after",
        defaults.recheck_after.unwrap_or_default(),
    );
    let pseudonymize_after = span(
        raw.pseudonymize_after,
        "pseudonymize_after",
        defaults.pseudonymize_after,
    );
    if sla.is_zero() {
        problems.at("evidence.sla", "must be longer than 0s");
    }
    if verify_every.is_zero() {
        problems.at(
            "evidence.verify_every",
            "must be at least 1s: every chain that ends live is verified",
        );
    }
    if pseudonymize_after.is_zero() {
        problems.at(
            "evidence.pseudonymize_after",
            "must be longer than 0s (use `offboard evidence erase` for one person now)",
        );
    }
    let pseudonym_key = raw
        .pseudonym_key
        .and_then(|r| secrets.resolve(&r, "evidence.pseudonym_key", problems))
        .filter(|k| !k.expose_secret().is_empty());
    if let Some(key) = &pseudonym_key
        && key.expose_secret().len() < MIN_PSEUDONYM_KEY_BYTES
    {
        problems.at(
            "evidence.pseudonym_key",
            format!(
                "must be at least {MIN_PSEUDONYM_KEY_BYTES} bytes; make one with `openssl rand -hex 32`"
            ),
        );
    }
    EvidenceConfig {
        sla,
        verify_every,
        recheck_after: (!recheck_after.is_zero()).then_some(recheck_after),
        reenqueue_reactivated: raw
            .reenqueue_reactivated
            .unwrap_or(defaults.reenqueue_reactivated),
        pseudonymize_after,
        pseudonym_key,
    }
}

/// A pseudonym is only as unguessable as its key: emails are few enough to try them all.
const MIN_PSEUDONYM_KEY_BYTES: usize = 32;

/// `directory_id = "-"` ("all directories") is documented for reads only: every rule that
/// writes to the directory is named in one problem. `offboard doctor` still runs with it, to
/// list the org's directories.
fn refuse_directory_writes(sources: &[Source], problems: &mut Problems) {
    let writers: Vec<String> = sources
        .iter()
        .flat_map(|source| source.rules.iter().map(move |rule| (source, rule)))
        .filter_map(|(source, rule)| {
            let actions: BTreeSet<_> = rule
                .actions()
                .into_iter()
                .filter(|action| action.writes_directory())
                .map(|action| action.as_str())
                .collect();
            (!actions.is_empty()).then(|| {
                let actions: Vec<_> = actions.into_iter().collect();
                format!(
                    "source `{}` rule `{}` uses {}",
                    source.name,
                    rule.name(),
                    actions.join(", ")
                )
            })
        })
        .collect();
    if writers.is_empty() {
        return;
    }
    problems.diagnosed_at(
        "atlassian.directory_id",
        format!(
            "`-` (all directories) is documented for reads only, but rules write to the \
             directory ({}) — {DIRECTORY_FIX}",
            writers.join("; ")
        ),
    );
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
    secrets: &Secrets,
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
        let token = secrets.required(raw.site_api_token, "atlassian.site_api_token", problems);
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
        let key = secrets.required(raw.admin_api_key, "atlassian.admin_api_key", problems);
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

/// A whole number within `range`, or `default` when the key is left out. A value out of range
/// is a problem, and the default stands in for it so that validation goes on.
fn in_range<T>(
    value: Option<T>,
    default: u64,
    range: RangeInclusive<u64>,
    path: &str,
    problems: &mut Problems,
) -> u64
where
    u64: TryFrom<T>,
{
    let Some(value) = value else {
        return default;
    };
    match u64::try_from(value) {
        Ok(value) if range.contains(&value) => value,
        _ => {
            problems.at(
                path,
                format!("must be between {} and {}", range.start(), range.end()),
            );
            default
        }
    }
}

fn validate_worker(raw: RawWorker, problems: &mut Problems) -> WorkerConfig {
    let d = WorkerConfig::default();
    let mut key = |value: Option<i64>, default: u64, range, name: &str| {
        in_range(value, default, range, &format!("worker.{name}"), problems)
    };
    let concurrency = key(
        raw.concurrency,
        d.concurrency as u64,
        1..=256,
        "concurrency",
    );
    let max_attempts = key(
        raw.max_attempts,
        d.max_attempts as u64,
        1..=100,
        "max_attempts",
    );
    let lease = key(
        raw.lease_seconds,
        d.lease.as_secs(),
        5..=86_400,
        "lease_seconds",
    );
    let base = key(
        raw.backoff_base_seconds,
        d.backoff_base.as_secs(),
        1..=86_400,
        "backoff_base_seconds",
    );
    let max = key(
        raw.backoff_max_seconds,
        d.backoff_max.as_secs(),
        1..=604_800,
        "backoff_max_seconds",
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
    let bulk_share = raw.bulk_share.unwrap_or(d.bulk_share);
    if !(0.0..=1.0).contains(&bulk_share) {
        problems.at("worker.bulk_share", "must be a number from 0 to 1");
    }
    WorkerConfig {
        concurrency: concurrency as usize,
        max_attempts: max_attempts as i32,
        lease: Duration::from_secs(lease),
        requests_per_second: rps,
        bulk_share,
        backoff_base: Duration::from_secs(base),
        backoff_max: Duration::from_secs(max),
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
        match Domain::parse(domain) {
            Ok(domain) => protected_domains.push(domain.as_str().to_owned()),
            Err(_) => problems.at(
                &format!("safety.protected_domains[{i}]"),
                format!(
                    "`{}` is not a domain such as example.com",
                    domain.trim_start_matches('@').to_ascii_lowercase()
                ),
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
    let d = Safety::default();
    let max_actions_per_hour = in_range(
        raw.max_actions_per_hour,
        d.max_actions_per_hour,
        1..=1_000_000,
        "safety.max_actions_per_hour",
        problems,
    );
    let approval_above = in_range(
        raw.approval_above,
        d.approval_above,
        0..=1_000_000,
        "safety.approval_above",
        problems,
    );
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
    secrets: &Secrets,
    problems: &mut Problems,
) -> Vec<Source> {
    // Every name written, for the rules' `undo_sources`, which may name a later source.
    let written: BTreeSet<String> = raw.iter().filter_map(|r| r.name.clone()).collect();
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
        } else if crate::domain::ManualSource::named(&name).is_some() {
            problems.at(
                &format!("{path}.name"),
                format!("`{name}` is reserved for jobs enqueued by hand (api, cli, console)"),
            );
        } else if !names.insert(name.clone()) {
            problems.at(
                &format!("{path}.name"),
                format!("duplicate source name `{name}`"),
            );
        }
        if let Some(source) = validate_source(raw, &path, &written, secrets, problems) {
            sources.push(source);
        }
    }
    sources
}

fn validate_source(
    raw: RawSource,
    path: &str,
    sources: &BTreeSet<String>,
    references: &Secrets,
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
        let Some(secret) = references.resolve(secret, &secret_path, problems) else {
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
        DEFAULT_TOLERANCE.as_secs(),
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
        validate_undo_sources(&spec, &format!("{path}.rules[{j}]"), sources, problems);
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
            tolerance: Duration::from_secs(tolerance),
        },
        id_header,
        id_pointer: raw.id_pointer.filter(|p| !p.is_empty()),
        replay_window,
        timestamp_pointer: raw.timestamp_pointer,
        rules,
        rule_summaries,
    })
}

/// `undo_sources`: each a configured source or a manual one (`api`, `cli`, `console`).
fn validate_undo_sources(
    spec: &crate::rules::RuleSpec,
    path: &str,
    sources: &BTreeSet<String>,
    problems: &mut Problems,
) {
    for (k, name) in spec.undo_sources.iter().flatten().enumerate() {
        if !sources.contains(name) && crate::domain::ManualSource::named(name).is_none() {
            let known: Vec<&str> = sources
                .iter()
                .map(String::as_str)
                .chain(crate::domain::ManualSource::ALL.map(|s| s.as_str()))
                .collect();
            problems.at(
                &format!("{path}.undo_sources[{k}]"),
                format!(
                    "`{}` is not a source (sources: {})",
                    name.chars().take(40).collect::<String>(),
                    known.join(", ")
                ),
            );
        }
    }
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
