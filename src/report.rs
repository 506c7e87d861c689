//! Plain-text renderings of jobs and customers for the CLI.

use std::fmt::Write as _;

use crate::atlassian::PortalCustomer;
use crate::domain::{Job, JobWithEvents, rfc3339};

pub fn jobs_table(jobs: &[Job]) -> String {
    if jobs.is_empty() {
        return "no jobs\n".to_owned();
    }
    let mut out = format!(
        "{:<8} {:<34} {:<18} {:<32} {:<24} {:>8}  {}\n",
        "ID", "ACTION", "STATE", "EMAIL", "RUN AT", "ATTEMPTS", "OUTCOME/ERROR"
    );
    for job in jobs {
        let result = job
            .outcome
            .map(|o| o.as_str().to_owned())
            .or_else(|| job.last_error.clone())
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{:<8} {:<34} {:<18} {:<32} {:<24} {:>8}  {}",
            job.id,
            job.action.as_str(),
            job.state.as_str(),
            job.email,
            rfc3339(&job.run_at),
            format!("{}/{}", job.attempts, job.max_attempts),
            result
        );
    }
    out
}

pub fn job_details(job: &JobWithEvents) -> String {
    let j = &job.job;
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{name:<12} {value}");
    };
    field("id", &j.id.to_string());
    field("action", j.action.as_str());
    field(
        "params",
        &serde_json::Value::Object(j.params.clone()).to_string(),
    );
    field("state", j.state.as_str());
    field("email", &j.email);
    field("account_id", j.account_id.as_deref().unwrap_or("-"));
    field(
        "depends_on",
        &j.depends_on.map_or("-".to_owned(), |d| d.to_string()),
    );
    field("run_at", &rfc3339(&j.run_at));
    field("attempts", &format!("{}/{}", j.attempts, j.max_attempts));
    field("outcome", j.outcome.map_or("-", |o| o.as_str()));
    field("last_error", j.last_error.as_deref().unwrap_or("-"));
    field("source", j.source.as_deref().unwrap_or("-"));
    field("rule", j.rule.as_deref().unwrap_or("-"));
    field("delivery_id", j.delivery_id.as_deref().unwrap_or("-"));
    field("created_at", &rfc3339(&j.created_at));
    field("updated_at", &rfc3339(&j.updated_at));
    out.push_str("events:\n");
    for e in &job.events {
        let _ = writeln!(
            out,
            "  {}  {:>17} -> {:<17} {:<20} {}",
            rfc3339(&e.at),
            e.from.map_or("-", |s| s.as_str()),
            e.to.as_str(),
            e.actor,
            e.detail
        );
    }
    out
}

pub fn customers_table(customers: &[PortalCustomer]) -> String {
    if customers.is_empty() {
        return "no customers\n".to_owned();
    }
    let mut out = format!(
        "{:<40} {:<28} {:<8} {:<16} {}\n",
        "EMAIL", "DISPLAY NAME", "ACTIVE", "SERVICE DESKS", "ACCOUNT ID"
    );
    for c in customers {
        let _ = writeln!(
            out,
            "{:<40} {:<28} {:<8} {:<16} {}",
            c.email.as_deref().unwrap_or("(hidden)"),
            c.display_name.as_deref().unwrap_or("-"),
            if c.active { "yes" } else { "no" },
            c.service_desks.join(","),
            c.account_id
        );
    }
    let _ = writeln!(out, "{} customers", customers.len());
    out
}

/// The CSV columns: `offboard jobs import` reads `account_id` and `email` and skips the rest.
pub const CUSTOMER_CSV_HEADER: [&str; 5] = [
    "account_id",
    "email",
    "display_name",
    "active",
    "service_desks",
];

/// The customers as CSV with a header row, service desks joined with `;`. Only customers
/// with a visible email: `jobs import` refuses a file with a row without one. A display name
/// is the customer's own text, so one that a spreadsheet would run as a formula (`=`, `+`,
/// `-`, `@`) is written behind a `'`; `jobs import` ignores that column.
pub fn customers_csv(
    customers: &[PortalCustomer],
    out: impl std::io::Write,
) -> Result<(), csv::Error> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record(CUSTOMER_CSV_HEADER)?;
    for c in customers {
        let Some(email) = &c.email else { continue };
        let display_name = c.display_name.as_deref().unwrap_or_default();
        let display_name = if display_name.starts_with(['=', '+', '-', '@', '\t', '\r']) {
            format!("'{display_name}")
        } else {
            display_name.to_owned()
        };
        writer.write_record([
            c.account_id.as_str(),
            email,
            &display_name,
            if c.active { "true" } else { "false" },
            &c.service_desks.join(";"),
        ])?;
    }
    writer.flush()?;
    Ok(())
}
