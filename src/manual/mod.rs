//! Jobs enqueued by hand (README, "Manual and bulk jobs"): by the admin API
//! (`POST /api/v1/jobs`, source `api`), the command line (`jobs add` and `jobs import`,
//! source `cli`) and the console (source `console`). A request is recorded like a webhook
//! delivery and goes through the same guards (`DeliveryContent::guarded`): protected people
//! are refused, one live job per (action, email, target), approval and `approval_above`; dry
//! run and the blast radius apply in the worker as to every job. An entry that names its
//! `account_id` is acted on by that id, without an email search (`worker::execute`).

pub mod import;

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use crate::config::Config;
pub use crate::domain::ManualSource;
use crate::domain::{
    AccountId, Action, Email, Lane, NewChain, NewStep, SuccessorRef, TRUST_ACCOUNT_ID, check_id,
};
use crate::store::{DeliveryReceipt, Store, StoreResult};

/// The rule every manual job names.
pub const RULE: &str = "manual";

/// The most entries one request may hold.
pub const MAX_ENTRIES: usize = 10_000;

/// One person and one action, as a request names them.
#[derive(Clone, Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// One of the actions (README, "Actions").
    pub action: String,
    pub email: String,
    /// Act on this account, without searching by email; its own record must show the same
    /// email, if it shows one.
    #[serde(default)]
    pub account_id: Option<String>,
    /// When to run: `YYYY-MM-DD` (00:00 UTC), RFC 3339, or epoch milliseconds. Default: now.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub at: Option<Value>,
    /// The action's parameter, e.g. `{"group_id": "…"}`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// A hand-over's successor: an email or an Atlassian account id (README, "Hand-over
    /// before removal"); default `[handover] fallback_successor`.
    #[serde(default)]
    pub successor: Option<String>,
    /// The job's priority lane (README, "Lanes"); default `bulk`.
    #[serde(default)]
    pub lane: Option<Lane>,
}

/// Checks one entry against the configuration and makes it a one-step chain.
pub fn chain(
    config: &Config,
    entry: &Entry,
    approval: bool,
    now: DateTime<Utc>,
) -> Result<NewChain, String> {
    let action: Action = entry.action.parse()?;
    // Rules cannot write through `directory_id = "-"` (the configuration is refused); an
    // entry cannot either.
    if let Some(why) = config.directory_refuses(action) {
        return Err(why);
    }
    let email = Email::parse(&entry.email).map_err(|why| format!("invalid email: {why}"))?;
    let account_id = match entry.account_id.as_deref().map(str::trim) {
        None => None,
        Some(id) => {
            Some(AccountId::claimed(id).map_err(|why| format!("invalid account_id: it {why}"))?)
        }
    };
    let run_at = match &entry.at {
        None => now,
        Some(Value::String(text)) if text.trim().is_empty() => now,
        Some(at) => crate::rules::parse_instant(at, chrono_tz::UTC).ok_or_else(|| {
            "invalid at: expected YYYY-MM-DD, RFC 3339 or epoch milliseconds".to_owned()
        })?,
    };
    let mut params = params(action, &entry.params)?;
    if let Some((name, value)) = successor(action, entry.successor.as_deref())? {
        params.insert(name.to_owned(), value);
    }
    Ok(NewChain {
        email,
        account_id,
        account_type: None,
        rule: RULE.to_owned(),
        approval,
        steps: vec![NewStep {
            action,
            params,
            run_at,
            lane: entry.lane.unwrap_or(Lane::Bulk),
        }],
    })
}

/// A hand-over entry's successor, as the job's parameter; only a hand-over takes one.
fn successor(action: Action, given: Option<&str>) -> Result<Option<(&'static str, Value)>, String> {
    let Some(successor) = given.and_then(SuccessorRef::parse) else {
        return Ok(None);
    };
    if action.handover().is_none() {
        return Err(format!(
            "`{action}` takes no successor: only the hand-over actions do"
        ));
    }
    match &successor {
        SuccessorRef::Email(email) => {
            Email::parse(email).map_err(|why| format!("invalid successor: {why}"))?;
        }
        SuccessorRef::AccountId(id) => {
            check_id(id).map_err(|why| format!("invalid successor: it {why}"))?;
        }
    }
    Ok(Some(successor.into_param()))
}

/// The action's one parameter, as a string; nothing else.
fn params(action: Action, given: &Map<String, Value>) -> Result<Map<String, Value>, String> {
    let mut params = Map::new();
    for (key, value) in given {
        if action.required_param() != Some(key.as_str()) {
            return Err(format!("`{action}` takes no parameter `{key}`"));
        }
        // A list's cells and a hand-typed value may carry stray spaces.
        let text = Action::param_text(value)
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty())
            .ok_or_else(|| format!("`{key}` must be a non-empty string"))?;
        check_id(&text).map_err(|why| format!("invalid {key}: it {why}"))?;
        params.insert(key.clone(), Value::String(text));
    }
    if let Some(required) = action.required_param()
        && !params.contains_key(required)
    {
        return Err(format!("`{action}` needs `{required}`"));
    }
    Ok(params)
}

/// Marks the jobs of entries that name an `account_id` as vouched for: the request said
/// `"trust_account_id": true` (`--trust-account-id`). The worker then acts on an account
/// whose record hides its email; without it such a job fails `account_unverifiable`, since
/// nothing shows that the account belongs to the entry's email.
pub fn trust_account_ids(chains: &mut [NewChain]) {
    for chain in chains.iter_mut().filter(|chain| chain.account_id.is_some()) {
        for step in &mut chain.steps {
            step.params
                .insert(TRUST_ACCOUNT_ID.to_owned(), Value::Bool(true));
        }
    }
}

/// Every entry checked; all the chains, or every refusal as (index, reason).
pub fn chains(
    config: &Config,
    entries: &[Entry],
    approval: bool,
    now: DateTime<Utc>,
) -> Result<Vec<NewChain>, Vec<(usize, String)>> {
    let mut chains = Vec::with_capacity(entries.len());
    let mut invalid = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        match chain(config, entry, approval, now) {
            Ok(chain) => chains.push(chain),
            Err(why) => invalid.push((index, why)),
        }
    }
    if invalid.is_empty() {
        Ok(chains)
    } else {
        Err(invalid)
    }
}

/// Records a manual request with its jobs: `key` identifies it (the same key again replays
/// the first answer), `body` is what was submitted, for its SHA-256.
pub async fn enqueue(
    store: &dyn Store,
    config: &Config,
    source: ManualSource,
    key: &str,
    body: &[u8],
    chains: Vec<NewChain>,
) -> StoreResult<DeliveryReceipt> {
    let delivery = crate::ingest::manual(config, source, key, body, chains);
    store.accept_delivery_within(delivery, DEADLINE).await
}

/// Whether a request answered as a repeat of `key` came with another body than the one
/// first recorded under it: the key was reused, and the repeat's answer (the first
/// request's) would silently drop this body. Asked after the store's answer, not before, so
/// that two requests racing with one key are told apart by what was recorded. Only for keys
/// the caller chose (the API's `Idempotency-Key`); an import's key is its content.
pub async fn key_reused(
    store: &dyn Store,
    source: ManualSource,
    key: &str,
    body: &[u8],
) -> StoreResult<bool> {
    let recorded = store
        .signed_delivery_body_sha256(source.as_str(), key)
        .await?;
    Ok(recorded.is_some_and(|sha256| sha256 != hex::encode(Sha256::digest(body))))
}

/// How long recording a manual request may take: thousands of jobs in one transaction take
/// seconds, and the person who asked is waiting for the answer, not a sender about to retry.
pub const DEADLINE: std::time::Duration = std::time::Duration::from_secs(300);

/// The key of a request that gave none: every such request is new.
pub fn fresh_key(source: ManualSource) -> String {
    format!("{}:{:032x}", source.as_str(), rand::random::<u128>())
}

/// The key a request gave, if it can be one: printable, at most 200 bytes.
pub fn checked_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.len() > 200 || key.chars().any(char::is_control) {
        return Err("Idempotency-Key must be 1 to 200 printable characters".into());
    }
    Ok(key.to_owned())
}

/// What a request's answer says, counted: jobs it created, live jobs it found already there
/// (or all of them, for a repeated request), and people refused by a guard.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub created: usize,
    pub existing: usize,
    pub refused: usize,
}

impl Summary {
    pub fn of(source: ManualSource, answer: &crate::domain::DeliveryAnswer) -> Summary {
        let created = answer
            .jobs
            .iter()
            .filter(|job| {
                !answer.duplicate
                    && job.source.as_deref() == Some(source.as_str())
                    && job.delivery_id.as_deref() == Some(answer.delivery_id.as_str())
            })
            .count();
        Summary {
            created,
            existing: answer.jobs.len() - created,
            refused: answer.refused.len(),
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "created {}, existing {}, refused {}",
            self.created, self.existing, self.refused
        )
    }
}
