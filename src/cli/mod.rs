//! The command line (README, "Command line"). Exit codes: 0 success, 1 runtime failure, 2 usage or
//! configuration error.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod cases;
mod customers;
mod enqueue;
mod evidence;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, DatabaseUrl};
use crate::domain::{Action, JobState, JobWithEvents};
use crate::serve::{self, Role};
use crate::store::{self, JobFilter, StoreError, StoreOptions};

/// offboard: safe, durable, idempotent offboarding of Atlassian Cloud accounts from signed
/// HR and Jira webhooks.
#[derive(Parser, Debug)]
#[command(name = "offboard", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Apply pending migrations, then receive webhooks and/or run the worker until SIGINT or
    /// SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// What this process runs: the HTTP receiver, the worker, or both.
        #[arg(long, value_enum, default_value_t = RoleArg::All)]
        role: RoleArg,
    },
    /// Apply pending migrations and exit.
    Migrate {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Validate the configuration, resolve its secrets and print a summary (never a secret).
    Check {
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Print the headers a genuine sender of SOURCE would attach to the body in FILE (or
    /// stdin), one `Name: value` per line.
    Sign {
        /// The source's name, as in POST /hooks/NAME.
        #[arg(long)]
        source: String,
        #[command(flatten)]
        config: ConfigArg,
        /// The body to sign; stdin when absent.
        file: Option<PathBuf>,
    },
    /// Check the configuration against the live Atlassian APIs, read-only: credentials, the
    /// "Browse users and groups" permission, org and directory, and every id a rule names.
    /// Exit 0 when all pass, 1 when any fails.
    Doctor {
        #[command(flatten)]
        config: ConfigArg,
        /// Print `{"ok", "checks": [{"name", "ok", "detail"}]}` instead of one line per check.
        #[arg(long)]
        json: bool,
    },
    /// Inspect and move jobs.
    Jobs {
        #[command(subcommand)]
        command: JobsCommand,
    },
    /// The site's JSM portal-only customers, read from the Atlassian API.
    Customers {
        #[command(subcommand)]
        command: CustomersCommand,
    },
    /// People's cases: when they were named, lost access, were verified, and the SLA.
    People {
        #[command(subcommand)]
        command: PeopleCommand,
    },
    /// Proof of offboarding: the time-to-revoke report, the audit trail's hash chain, and
    /// erasing a person.
    Evidence {
        #[command(subcommand)]
        command: evidence::EvidenceCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PeopleCommand {
    /// One person's case: times, verification, SLA and the timeline of deliveries, jobs
    /// and their events. Exit 1 when no delivery or request named the person.
    Show(cases::ShowArgs),
}

#[derive(Subcommand, Debug)]
enum CustomersCommand {
    /// List every customer of every service desk the site user can see, merged by account and
    /// sorted by email. Read-only, paced at the worker's requests_per_second; progress on
    /// stderr when it is a terminal.
    List {
        /// Only emails at this domain or one of its subdomains.
        #[arg(long, value_name = "D")]
        domain: Option<String>,
        /// Only customers whose portal access was revoked (`active: false`).
        #[arg(long)]
        inactive: bool,
        /// Print `{"customers": [...]}`, as GET /api/v1/customers answers.
        #[arg(long, conflicts_with = "csv")]
        json: bool,
        /// Print CSV with the header `account_id,email,display_name,active,service_desks`
        /// (desks joined with `;`; customers whose email is hidden left out): input for
        /// `offboard jobs import`.
        #[arg(long)]
        csv: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
}

#[derive(Args, Debug)]
struct ConfigArg {
    /// The configuration file (default: $OFFBOARD_CONFIG, else ./offboard.toml, else
    /// built-in defaults).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoleArg {
    All,
    Api,
    Worker,
}

#[derive(Subcommand, Debug)]
enum JobsCommand {
    /// List jobs, newest first.
    List {
        #[arg(long, value_name = "S")]
        state: Option<String>,
        #[arg(long, value_name = "E")]
        email: Option<String>,
        #[arg(long, value_name = "A", help = enqueue::action_help("Only jobs of this action"))]
        action: Option<String>,
        /// At most this many jobs (1..=500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print the API's JSON instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Show one job with its audit events.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Cancel a pending or awaiting_approval job (and the later steps of its chain).
    Cancel {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Put a failed job back to pending with its attempts reset.
    Retry {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Let a job awaiting approval run.
    Approve {
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Enqueue one job by hand, through the same guards as a webhook.
    Add(enqueue::AddArgs),
    /// Enqueue the rows of a CSV file, all or nothing: every row is checked first.
    Import(enqueue::ImportArgs),
}

/// A failure with the exit code it maps to.
enum Failure {
    Usage(String),
    Runtime(String),
}

impl From<crate::config::ConfigError> for Failure {
    fn from(err: crate::config::ConfigError) -> Self {
        Failure::Usage(err.to_string())
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(message)) => {
            eprintln!("{}", message.trim_end());
            ExitCode::from(2)
        }
        Err(Failure::Runtime(message)) => {
            eprintln!("error: {}", message.trim_end());
            ExitCode::from(1)
        }
    }
}

fn load(arg: &ConfigArg) -> Result<Config, Failure> {
    Ok(Config::discover(arg.config.as_deref())?)
}

async fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Serve { config, role } => {
            let config = load(&config)?;
            crate::telemetry::init();
            let role = match role {
                RoleArg::All => Role::All,
                RoleArg::Api => Role::Api,
                RoleArg::Worker => Role::Worker,
            };
            serve::run(config, role)
                .await
                .map_err(|e| Failure::Runtime(format!("{e:#}")))
        }
        Command::Migrate { config } => {
            let url = database_url(&config)?;
            open_store(&url).await?;
            println!("migrations applied to {}", url.redacted());
            Ok(())
        }
        Command::Check { config } => {
            let config = load(&config)?;
            print!("{}", config.summary());
            for warning in config.warnings() {
                eprintln!("warning: {warning}");
            }
            Ok(())
        }
        Command::Sign {
            source,
            config,
            file,
        } => sign(&load(&config)?, &source, file.as_deref()),
        Command::Doctor { config, json } => {
            // A problem the doctor diagnoses itself (a `-` directory that rules write to)
            // does not stop it: its check says how to fix it.
            let config = Config::discover_to_diagnose(config.config.as_deref())?;
            let report = crate::doctor::run(&config).await;
            if json {
                print_json(&report);
            } else {
                print!("{}", report.text());
            }
            if report.ok {
                Ok(())
            } else {
                Err(Failure::Runtime(format!(
                    "{} of {} checks failed",
                    report.failures().count(),
                    report.checks.len()
                )))
            }
        }
        Command::Jobs { command } => jobs(command).await,
        Command::Customers { command } => customers::customers(command).await,
        Command::People {
            command: PeopleCommand::Show(args),
        } => cases::show(args).await,
        Command::Evidence { command } => evidence::evidence(command).await,
    }
}

fn sign(config: &Config, source: &str, file: Option<&Path>) -> Result<(), Failure> {
    let source = config.source(source).ok_or_else(|| {
        let known: Vec<&str> = config.sources.iter().map(|s| s.name.as_str()).collect();
        Failure::Usage(format!(
            "no source named `{source}` in {} (configured: {})",
            config.origin,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })?;
    let body = match file {
        Some(path) => std::fs::read(path)
            .map_err(|e| Failure::Usage(format!("cannot read {}: {e}", path.display())))?,
        None => {
            let mut body = Vec::new();
            std::io::stdin()
                .read_to_end(&mut body)
                .map_err(|e| Failure::Runtime(format!("cannot read stdin: {e}")))?;
            body
        }
    };
    let headers =
        source
            .verifier
            .sign_with_id_header(&body, chrono::Utc::now(), source.id_header.as_ref());
    for (name, value) in headers {
        println!("{name}: {value}");
    }
    Ok(())
}

/// The jobs commands and `migrate` need only the store: they do not require every secret of
/// the config to be resolvable in the operator's shell.
fn database_url(arg: &ConfigArg) -> Result<DatabaseUrl, Failure> {
    Ok(Config::discover_database_url(arg.config.as_deref())?)
}

async fn open_store(url: &DatabaseUrl) -> Result<std::sync::Arc<dyn store::Store>, Failure> {
    store::open_migrated(url.expose(), &StoreOptions::default())
        .await
        .map_err(|e| Failure::Runtime(format!("{e:#}")))
}

fn parse_id(text: &str) -> Result<crate::domain::JobId, Failure> {
    crate::domain::parse_job_id(text).map_err(Failure::Usage)
}

fn store_failure(err: StoreError) -> Failure {
    Failure::Runtime(err.to_string())
}

const CLI_ACTOR: &str = "cli";

async fn jobs(command: JobsCommand) -> Result<(), Failure> {
    match command {
        JobsCommand::List {
            state,
            email,
            action,
            limit,
            json,
            config,
        } => {
            let filter = JobFilter {
                state: state
                    .map(|s| s.parse::<JobState>())
                    .transpose()
                    .map_err(Failure::Usage)?,
                email,
                action: action
                    .map(|a| a.parse::<Action>())
                    .transpose()
                    .map_err(Failure::Usage)?,
                before: None,
                limit: limit.clamp(1, 500),
            };
            let store = open_store(&database_url(&config)?).await?;
            let jobs = store.list_jobs(&filter).await.map_err(store_failure)?;
            if json {
                print_json(&serde_json::json!({ "jobs": jobs }));
            } else {
                print!("{}", crate::report::jobs_table(&jobs));
            }
            Ok(())
        }
        JobsCommand::Show { id, json, config } => {
            let id = parse_id(&id)?;
            let store = open_store(&database_url(&config)?).await?;
            let job: JobWithEvents = store
                .get_job(id)
                .await
                .map_err(store_failure)?
                .ok_or_else(|| Failure::Runtime(format!("job {id} not found")))?;
            if json {
                print_json(&job);
            } else {
                print!("{}", crate::report::job_details(&job));
            }
            Ok(())
        }
        JobsCommand::Cancel { id, config } => {
            let id = parse_id(&id)?;
            let store = open_store(&database_url(&config)?).await?;
            let job = store
                .cancel(id, CLI_ACTOR, "cancelled by operator")
                .await
                .map_err(store_failure)?;
            println!("job {} is now {}", job.id, job.state);
            Ok(())
        }
        JobsCommand::Retry { id, config } => {
            let id = parse_id(&id)?;
            let store = open_store(&database_url(&config)?).await?;
            let job = store.retry(id, CLI_ACTOR).await.map_err(store_failure)?;
            println!("job {} is now {}", job.id, job.state);
            Ok(())
        }
        JobsCommand::Add(add) => enqueue::add(add).await,
        JobsCommand::Import(import) => enqueue::import(import).await,
        JobsCommand::Approve { id, config } => {
            let id = parse_id(&id)?;
            let store = open_store(&database_url(&config)?).await?;
            let job = store.approve(id, CLI_ACTOR).await.map_err(store_failure)?;
            println!("job {} is now {}", job.id, job.state);
            Ok(())
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("error: cannot render JSON: {e}"),
    }
}
