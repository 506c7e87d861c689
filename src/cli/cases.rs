//! `offboard people show` and `offboard evidence report` (README, "Proof for auditors").
//! Both read the store and `[evidence] sla`, so they load the whole configuration.

use clap::Args;

use super::{ConfigArg, Failure, load, open_store, print_json, store_failure};
use crate::evidence::people;
use crate::evidence::report::{self, Period};

#[derive(Args, Debug)]
pub(super) struct ShowArgs {
    /// The person's email (case-insensitive).
    email: String,
    /// Print the API's JSON (`GET /api/v1/people/{email}`) instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args, Debug)]
pub(super) struct ReportArgs {
    /// The first day (`2026-01-01`, UTC) or RFC 3339 time of the period: cases first seen from then.
    #[arg(long, value_name = "DATE")]
    from: String,
    /// The last day of the period (included), or the RFC 3339 time it ends before.
    #[arg(long, value_name = "DATE")]
    to: String,
    /// Print CSV for a spreadsheet (every cell that would run as a formula neutralised).
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// Print the API's JSON (`GET /api/v1/evidence/report`).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    config: ConfigArg,
}

/// `offboard people show EMAIL`: exit 1 when nobody of that email was ever named.
pub(super) async fn show(args: ShowArgs) -> Result<(), Failure> {
    let config = load(&args.config)?;
    let store = open_store(&config.database_url).await?;
    let case = people::case(
        store.as_ref(),
        &args.email,
        config.evidence.sla,
        chrono::Utc::now(),
    )
    .await
    .map_err(store_failure)?
    .ok_or_else(|| Failure::Runtime(format!("no case for {}", args.email)))?;
    if args.json {
        print_json(&case);
    } else {
        print!("{}", crate::report::case_details(&case));
    }
    Ok(())
}

/// `offboard evidence report`.
pub(super) async fn report(args: ReportArgs) -> Result<(), Failure> {
    let period = Period::parse(&args.from, &args.to).map_err(Failure::Usage)?;
    let config = load(&args.config)?;
    let store = open_store(&config.database_url).await?;
    let report = report::build(
        store.as_ref(),
        period,
        config.evidence.sla,
        chrono::Utc::now(),
    )
    .await
    .map_err(store_failure)?;
    if args.json {
        print_json(&report);
    } else if args.csv {
        report
            .write_csv(std::io::stdout().lock())
            .map_err(|e| Failure::Runtime(format!("cannot write the CSV: {e}")))?;
    } else {
        print!("{}", crate::report::evidence_table(&report));
    }
    Ok(())
}
