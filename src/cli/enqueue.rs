//! `offboard jobs add` and `offboard jobs import` (README, "Manual and bulk jobs"): jobs
//! enqueued through the store, with source `cli`, through the guards every webhook goes
//! through. An import is checked whole first; the same file imported again creates nothing.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Map, Value};

use super::{ConfigArg, Failure, load, open_store, print_json, store_failure};
use crate::config::Config;
use crate::domain::{Action, Param};
use crate::manual::{self, Entry, ManualSource, Summary};

#[derive(Args, Debug)]
pub(super) struct AddArgs {
    #[arg(long, value_name = "A", help = action_help("The action"))]
    action: String,
    #[arg(long, value_name = "E")]
    email: String,
    /// Act on this account, without searching by email.
    #[arg(long, value_name = "ID")]
    account_id: Option<String>,
    /// When to run: YYYY-MM-DD (00:00 UTC), RFC 3339 or epoch milliseconds; default now.
    #[arg(long, value_name = "TIME")]
    at: Option<String>,
    #[arg(long = "param", value_name = "K=V", help = param_help())]
    params: Vec<String>,
    /// A hand-over's successor: an email or an Atlassian account id (default
    /// [handover] fallback_successor).
    #[arg(long, value_name = "EMAIL|ID")]
    successor: Option<String>,
    /// The job's priority lane: urgent, scheduled or bulk (default bulk).
    #[arg(long, value_name = "LANE")]
    lane: Option<crate::domain::Lane>,
    /// Create the job awaiting approval.
    #[arg(long)]
    approval: bool,
    /// Act on the account id even where its record hides its email, so that nothing shows
    /// it belongs to the email (else the job fails account_unverifiable).
    #[arg(long)]
    trust_account_id: bool,
    /// Print the answer's JSON (as `POST /api/v1/jobs` answers).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args, Debug)]
pub(super) struct ImportArgs {
    #[arg(help = columns_help())]
    file: PathBuf,
    #[arg(
        long,
        value_name = "A",
        help = action_help("The action of rows without an `action` column or value")
    )]
    action: Option<String>,
    /// Create every job awaiting approval.
    #[arg(long)]
    approval: bool,
    /// Act on the rows' account ids even where a record hides its email, so that nothing
    /// shows it belongs to the row's email (else the job fails account_unverifiable).
    #[arg(long)]
    trust_account_id: bool,
    /// Print the answer's JSON (as `POST /api/v1/jobs` answers).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// `--action`'s help: `what`, then every action with the parameter it takes, from the
/// action table, so that a new action shows up here by itself.
pub(super) fn action_help(what: &str) -> String {
    let actions: Vec<String> = Action::ALL
        .iter()
        .map(|action| match action.param() {
            Some(param) => format!("{action} ({})", param.name()),
            None => action.to_string(),
        })
        .collect();
    format!("{what}: one of {}", actions.join(", "))
}

fn param_help() -> String {
    let names: Vec<&str> = Param::ALL.map(Param::name).to_vec();
    format!(
        "The action's parameter, e.g. --param group_id=abc: one of {}",
        names.join(", ")
    )
}

fn columns_help() -> String {
    let names: Vec<&str> = Param::ALL.map(Param::name).to_vec();
    format!(
        "A CSV file with a header row: email, and action, account_id, at, successor, {}",
        names.join(", ")
    )
}

pub(super) async fn add(args: AddArgs) -> Result<(), Failure> {
    let mut params = Map::new();
    for param in &args.params {
        let (key, value) = param
            .split_once('=')
            .ok_or_else(|| Failure::Usage(format!("--param {param}: expected K=V")))?;
        params.insert(
            key.trim().to_owned(),
            Value::String(value.trim().to_owned()),
        );
    }
    let entry = Entry {
        action: args.action,
        email: args.email,
        account_id: args.account_id,
        at: args.at.map(Value::String),
        params,
        successor: args.successor,
        lane: args.lane,
    };
    let config = load(&args.config)?;
    let chain = manual::chain(&config, &entry, args.approval, chrono::Utc::now())
        .map_err(Failure::Usage)?;
    let mut chains = vec![chain];
    if args.trust_account_id {
        manual::trust_account_ids(&mut chains);
    }
    let key = manual::fresh_key(ManualSource::Cli);
    let body = format!("{entry:?}");
    let answer = enqueue(&config, &key, body.as_bytes(), chains).await?;
    report(&answer, args.json);
    Ok(())
}

pub(super) async fn import(args: ImportArgs) -> Result<(), Failure> {
    let file = std::fs::read(&args.file)
        .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", args.file.display())))?;
    let config = load(&args.config)?;
    let bar = progress_bar(&file);
    let checked = manual::import::check(
        &config,
        &file,
        args.action.as_deref(),
        args.approval,
        chrono::Utc::now(),
        |line| {
            if let Some(bar) = &bar {
                bar.set_position(line);
            }
        },
    );
    let mut chains = match checked {
        Ok(chains) => chains,
        Err(bad) => {
            if let Some(bar) = &bar {
                bar.finish_and_clear();
            }
            let lines: Vec<String> = bad.iter().map(ToString::to_string).collect();
            return Err(Failure::Usage(format!(
                "{}\n{}: {} bad rows; nothing was enqueued",
                lines.join("\n"),
                args.file.display(),
                bad.len()
            )));
        }
    };
    if let Some(bar) = &bar {
        bar.set_message(format!("enqueueing {} jobs", chains.len()));
    }
    if args.trust_account_id {
        manual::trust_account_ids(&mut chains);
    }
    let key = manual::import::key(
        &file,
        args.action.as_deref(),
        args.approval,
        args.trust_account_id,
    );
    let answer = enqueue(&config, &key, &file, chains).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    report(&answer?, args.json);
    Ok(())
}

/// A bar over the file's lines, on a terminal only.
fn progress_bar(file: &[u8]) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let lines = file.iter().filter(|b| **b == b'\n').count() as u64;
    let bar = ProgressBar::new(lines.max(1));
    if let Ok(style) = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} lines") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message("checking");
    Some(bar)
}

async fn enqueue(
    config: &Config,
    key: &str,
    body: &[u8],
    chains: Vec<crate::domain::NewChain>,
) -> Result<crate::domain::Answer, Failure> {
    let store = open_store(&config.database_url).await?;
    let receipt = manual::enqueue(store.as_ref(), config, ManualSource::Cli, key, body, chains)
        .await
        .map_err(store_failure)?;
    Ok(receipt.answer)
}

fn report(answer: &crate::domain::Answer, json: bool) {
    let Some(accepted) = answer.accepted().filter(|_| !json) else {
        print_json(answer);
        return;
    };
    let summary = Summary::of(ManualSource::Cli, accepted);
    let mut line = summary.to_string();
    if accepted.duplicate {
        line.push_str(" (imported before: nothing new)");
    }
    if let Some(reason) = &accepted.approval_required {
        line.push_str(&format!("; every job awaits approval: {reason}"));
    }
    println!("{line}");
    for refusal in &accepted.refused {
        println!("refused {}: {}", refusal.email, refusal.reason);
    }
}
