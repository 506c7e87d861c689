//! The command line (README, "Command line"). Exit codes: 0 success, 1 runtime failure, 2 usage or
//! configuration error.

use std::io::{IsTerminal as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::ProgressBar;

use crate::atlassian::{CallError, Client, CustomerFilter, InventoryProgress, PortalCustomer};
use crate::config::{Config, DatabaseUrl};
use crate::domain::{Action, ApiFamily, Domain, JobState, JobWithEvents};
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
        #[arg(long, value_name = "A")]
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
            Ok(())
        }
        Command::Sign {
            source,
            config,
            file,
        } => sign(&load(&config)?, &source, file.as_deref()),
        Command::Doctor { config, json } => {
            let config = load(&config)?;
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
        Command::Customers { command } => customers(command).await,
    }
}

async fn customers(command: CustomersCommand) -> Result<(), Failure> {
    let CustomersCommand::List {
        domain,
        inactive,
        json,
        csv,
        config,
    } = command;
    let filter = CustomerFilter {
        domain: domain
            .map(|d| Domain::parse(&d))
            .transpose()
            .map_err(|why| Failure::Usage(format!("--domain: {why}")))?,
        inactive_only: inactive,
    };
    let customers = read_customers(&load(&config)?, &filter).await?;
    if json {
        print_json(&serde_json::json!({ "customers": customers }));
    } else if csv {
        crate::report::customers_csv(&customers, std::io::stdout().lock())
            .map_err(|e| Failure::Runtime(format!("cannot write the CSV: {e}")))?;
        let hidden = customers.iter().filter(|c| c.email.is_none()).count();
        if hidden > 0 {
            eprintln!(
                "note: {hidden} customers whose email is hidden are not in the CSV (jobs import needs an email); --json lists them"
            );
        }
    } else {
        print!("{}", crate::report::customers_table(&customers));
    }
    Ok(())
}

/// Reads the inventory with a client of this process (buckets of its own, at the worker's
/// rate), showing progress on stderr when a person is watching it.
async fn read_customers(
    config: &Config,
    filter: &CustomerFilter,
) -> Result<Vec<PortalCustomer>, Failure> {
    let not_configured = || {
        Failure::Usage(format!(
            "the site credentials are not configured in {}: set site_url, site_email and site_api_token in [atlassian]",
            config.origin
        ))
    };
    let atlassian = config.atlassian.as_ref().ok_or_else(not_configured)?;
    let client = Client::from_config(atlassian, config.worker.requests_per_second)
        .map_err(|e| Failure::Usage(format!("{e:#}")))?;
    if !client.is_configured(ApiFamily::Site) {
        return Err(not_configured());
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar.set_message("listing service desks");
        bar
    });
    let show = |progress: InventoryProgress| {
        if let Some(bar) = &bar {
            bar.set_message(progress_line(progress));
        }
    };
    let read = client.portal_customers(&show).await;
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    match read {
        Ok(customers) => Ok(customers.into_iter().filter(|c| filter.admits(c)).collect()),
        Err(CallError::NotConfigured { .. }) => Err(not_configured()),
        Err(err) => Err(Failure::Runtime(format!(
            "cannot read the customer inventory: {err}"
        ))),
    }
}

fn progress_line(progress: InventoryProgress) -> String {
    match progress.desks {
        None => format!("listing service desks ({} pages)", progress.pages),
        Some(desks) => format!(
            "service desks {}/{desks}, {} pages, {} customers",
            progress.desks_done, progress.pages, progress.customers
        ),
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
    for (name, value) in source.verifier.sign(&body, chrono::Utc::now()) {
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
