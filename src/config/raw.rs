//! The TOML as written: serde types that mirror the file key for key, and the parse that
//! turns it into them. Unknown keys are not refused by serde (`serde_ignored` collects them,
//! so every one is named with its path at once), and no error quotes a value, which may be a
//! secret at the wrong key.

use serde::Deserialize;

use super::Problems;
use crate::rules::RuleSpec;

#[derive(Deserialize, Default)]
pub(super) struct RawConfig {
    pub(super) listen: Option<String>,
    pub(super) database_url: Option<String>,
    pub(super) dry_run: Option<bool>,
    pub(super) admin_token: Option<String>,
    pub(super) max_body_bytes: Option<u64>,
    pub(super) max_connections: Option<u64>,
    pub(super) atlassian: Option<RawAtlassian>,
    #[serde(default)]
    pub(super) worker: RawWorker,
    #[serde(default)]
    pub(super) safety: RawSafety,
    #[serde(default)]
    pub(super) evidence: RawEvidence,
    #[serde(default)]
    pub(super) handover: RawHandover,
    #[serde(default)]
    pub(super) sources: Vec<RawSource>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawAtlassian {
    pub(super) site_url: Option<String>,
    pub(super) site_email: Option<String>,
    pub(super) site_api_token: Option<String>,
    pub(super) admin_url: Option<String>,
    pub(super) admin_api_key: Option<String>,
    pub(super) org_id: Option<String>,
    pub(super) directory_id: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawWorker {
    pub(super) concurrency: Option<i64>,
    pub(super) max_attempts: Option<i64>,
    pub(super) lease_seconds: Option<i64>,
    pub(super) requests_per_second: Option<f64>,
    pub(super) bulk_share: Option<f64>,
    pub(super) backoff_base_seconds: Option<i64>,
    pub(super) backoff_max_seconds: Option<i64>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawSafety {
    #[serde(default)]
    pub(super) protected_emails: Vec<String>,
    #[serde(default)]
    pub(super) protected_domains: Vec<String>,
    #[serde(default)]
    pub(super) protected_account_ids: Vec<String>,
    pub(super) max_actions_per_hour: Option<i64>,
    pub(super) approval_above: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHandover {
    pub(super) fallback_successor: Option<String>,
}

#[derive(Deserialize, Default)]
pub(super) struct RawEvidence {
    pub(super) sla: Option<String>,
    pub(super) verify_every: Option<String>,
    pub(super) recheck_after: Option<String>,
    pub(super) reenqueue_reactivated: Option<bool>,
    pub(super) pseudonymize_after: Option<String>,
    pub(super) pseudonym_key: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct RawSource {
    pub(super) name: Option<String>,
    pub(super) scheme: Option<String>,
    #[serde(default)]
    pub(super) secrets: Vec<String>,
    pub(super) tolerance_seconds: Option<i64>,
    pub(super) header: Option<String>,
    pub(super) prefix: Option<String>,
    pub(super) id_header: Option<String>,
    pub(super) id_pointer: Option<String>,
    pub(super) replay_window: Option<String>,
    pub(super) timestamp_pointer: Option<String>,
    #[serde(default)]
    pub(super) rules: Vec<RuleSpec>,
}

/// Parses the TOML, reporting every unknown key with its path.
pub(super) fn parse(text: &str, problems: &mut Problems) -> Option<RawConfig> {
    let deserializer = match toml::Deserializer::parse(text) {
        Ok(d) => d,
        Err(e) => {
            problems.add(toml_problem("invalid TOML", text, &e));
            return None;
        }
    };
    let mut unknown = Vec::new();
    let raw: Result<RawConfig, _> = serde_ignored::deserialize(deserializer, |path| {
        unknown.push(key_path(&path));
    });
    for path in unknown {
        problems.add(format!(
            "unknown key `{path}` (check its spelling: unknown keys are rejected so a typo cannot disable a setting)"
        ));
    }
    match raw {
        Ok(raw) => Some(raw),
        Err(e) => {
            problems.add(toml_problem("invalid configuration", text, &e));
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
pub(super) fn redact_quoted_values(message: &str) -> String {
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
