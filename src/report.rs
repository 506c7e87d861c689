//! Plain-text renderings of jobs and customers for the CLI. Every cell of a table goes
//! through [`cell::for_terminal`] and every cell of a CSV through [`cell::CsvWriter`].

use std::fmt::Write as _;

use crate::atlassian::PortalCustomer;
use crate::cell::{self, for_terminal};
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
            for_terminal(&job.id.to_string()),
            for_terminal(job.action.as_str()),
            for_terminal(job.state.as_str()),
            for_terminal(job.email.as_str()),
            for_terminal(&rfc3339(&job.run_at)),
            for_terminal(&format!("{}/{}", job.attempts, job.max_attempts)),
            for_terminal(&result)
        );
    }
    out
}

pub fn job_details(job: &JobWithEvents) -> String {
    let j = &job.job;
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{name:<12} {}", for_terminal(value));
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
    field("lane", j.lane.as_str());
    if let Some(successor) = &j.successor_account_id {
        field("successor", successor);
    }
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
            for_terminal(&rfc3339(&e.at)),
            for_terminal(e.from.map_or("-", |s| s.as_str())),
            for_terminal(e.to.as_str()),
            for_terminal(&e.actor),
            for_terminal(&e.detail)
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
            for_terminal(c.email.as_deref().unwrap_or("(hidden)")),
            for_terminal(c.display_name.as_deref().unwrap_or("-")),
            for_terminal(if c.active { "yes" } else { "no" }),
            for_terminal(&c.service_desks.join(",")),
            for_terminal(&c.account_id)
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
/// with a visible email: `jobs import` refuses a file with a row without one. Every cell is
/// the customer's own text or Atlassian's, so one that a spreadsheet would run as a formula is
/// written behind a `'`, which `jobs import` takes off again.
pub fn customers_csv(
    customers: &[PortalCustomer],
    out: impl std::io::Write,
) -> Result<(), csv::Error> {
    let mut writer = cell::CsvWriter::new(out);
    writer.write_record(CUSTOMER_CSV_HEADER)?;
    for c in customers {
        let Some(email) = &c.email else { continue };
        writer.write_record([
            c.account_id.as_str(),
            email,
            c.display_name.as_deref().unwrap_or_default(),
            if c.active { "true" } else { "false" },
            &c.service_desks.join(";"),
        ])?;
    }
    writer.flush()?;
    Ok(())
}

/// A person's case for `offboard people show`: the times, then the timeline.
pub fn case_details(case: &crate::evidence::case::Case) -> String {
    let c = &case.summary;
    let optional =
        |at: Option<chrono::DateTime<chrono::Utc>>| at.as_ref().map_or("-".to_owned(), rfc3339);
    let mut out = String::new();
    let mut field = |name: &str, value: &str| {
        let _ = writeln!(out, "{name:<18} {}", for_terminal(value));
    };
    field("email", &c.email);
    field("first_seen", &rfc3339(&c.first_seen));
    field("effective_at", &rfc3339(&c.effective_at));
    field("access_removed_at", &optional(c.access_removed_at));
    field("verified_at", &optional(c.verified_at));
    field(
        "verified_state",
        c.verified_state.map_or("-", |v| v.as_str()),
    );
    field("reactivated_at", &optional(c.reactivated_at));
    field(
        "sla",
        &format!(
            "{} (target {})",
            crate::evidence::report::sla_word(c.sla.met),
            c.sla.target
        ),
    );
    out.push_str("timeline:\n");
    for moment in case.timeline() {
        let job = moment.job.map_or(String::new(), |id| format!("job {id} "));
        let _ = writeln!(
            out,
            "  {}  {:<12} {job}{}",
            for_terminal(&rfc3339(&moment.at)),
            moment.kind.as_str(),
            for_terminal(&moment.what)
        );
    }
    out
}

/// The time-to-revoke report as a table for a terminal.
pub fn evidence_table(report: &crate::evidence::report::Report) -> String {
    let mut out = format!(
        "cases first seen from {} to {}, chain head {}\n",
        rfc3339(&report.from),
        rfc3339(&report.to),
        for_terminal(report.chain_head.as_deref().unwrap_or("-"))
    );
    if report.cases.is_empty() {
        out.push_str("no cases\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<32} {:<24} {:<24} {:<7} JOBS",
        "EMAIL", "FIRST SEEN", "ACCESS REMOVED", "SLA"
    );
    for row in &report.cases {
        let c = &row.case;
        let jobs: Vec<String> = row
            .jobs
            .iter()
            .map(|j| format!("{}={}", j.action, j.outcome.as_deref().unwrap_or(&j.state)))
            .collect();
        let _ = writeln!(
            out,
            "{:<32} {:<24} {:<24} {:<7} {}",
            for_terminal(&c.email),
            rfc3339(&c.first_seen),
            c.access_removed_at.as_ref().map_or("-".to_owned(), rfc3339),
            crate::evidence::report::sla_word(c.sla.met),
            for_terminal(&jobs.join(", "))
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;

    use super::*;
    use crate::domain::{Action, JobEvent, JobState};

    const FORMULA_STARTS: [&str; 6] = ["=", "+", "-", "@", "\t", "\r"];

    fn customer(start: &str) -> PortalCustomer {
        PortalCustomer {
            account_id: format!("{start}qm:1"),
            email: Some(format!("{start}1+1@x.example.com")),
            display_name: Some(format!("{start}HYPERLINK(\"http://evil\")")),
            active: true,
            service_desks: vec![format!("{start}10"), "20".into()],
        }
    }

    fn csv_of(customers: &[PortalCustomer]) -> Vec<u8> {
        let mut out = Vec::new();
        customers_csv(customers, &mut out).unwrap();
        out
    }

    #[test]
    fn every_csv_cell_that_starts_a_formula_is_written_behind_a_quote() {
        for start in FORMULA_STARTS {
            let file = csv_of(&[customer(start)]);
            let mut reader = csv::Reader::from_reader(file.as_slice());
            let row = reader.records().next().unwrap().unwrap();
            for column in [0, 1, 2, 4] {
                assert!(
                    row[column].starts_with(&format!("'{start}")),
                    "column {column} of {start:?}: {row:?}"
                );
            }
            assert_eq!(&row[3], "true");
        }
    }

    /// `jobs import` reads every cell back as the customer's own text, `'` and all where the
    /// text itself began with one.
    #[test]
    fn jobs_import_reads_the_neutralised_cells_back() {
        let config =
            crate::config::Config::from_toml("", crate::config::ConfigOrigin::Defaults, &|_| None)
                .unwrap();
        let mut customers: Vec<PortalCustomer> =
            FORMULA_STARTS.iter().map(|s| customer(s)).collect();
        customers.push(customer("'="));
        customers.push(customer("'"));
        let file = csv_of(&customers);
        let rows = crate::manual::import::check_rows(
            &config,
            &file,
            Some("delete_portal_customer"),
            false,
            DateTime::from_timestamp(1_800_000_000, 0).unwrap(),
            |_| {},
        )
        .unwrap();
        assert_eq!(rows.len(), customers.len());
        for (row, customer) in rows.iter().zip(&customers) {
            let entry = row.entry.as_ref().expect("every row reads as an entry");
            assert_eq!(Some(&entry.email), customer.email.as_ref());
            assert_eq!(entry.account_id, Some(customer.account_id.clone()));
        }
        // Addresses that are valid whatever their first character become jobs for them; an
        // account id is letters, digits, `:`, `_`, `.` and `-` only (`domain::check_id`), so a
        // row whose id starts a formula is refused for its id, not for its email.
        for (row, start) in rows.iter().zip(["=", "+", "-"]) {
            match &row.result {
                Ok(chain) => {
                    assert_eq!(start, "-");
                    assert_eq!(chain.email.as_str(), format!("{start}1+1@x.example.com"));
                }
                Err(why) => {
                    assert_ne!(start, "-");
                    assert!(why.starts_with("invalid account_id"), "{why}");
                }
            }
        }
    }

    fn hostile() -> &'static str {
        "\u{1b}]8;;http://evil\u{7}a\u{1b}[2J\rb\u{9b}31m\u{202e}c\u{7}"
    }

    /// No raw control character reaches the terminal but the line ends of the table itself.
    fn assert_no_raw_controls(table: &str) {
        assert!(
            !table
                .chars()
                .any(|c| c != '\n' && (c.is_control() || c == '\u{202e}')),
            "{table:?}"
        );
    }

    #[test]
    fn every_table_cell_shows_controls_escaped() {
        let mut c = customer("");
        c.display_name = Some(hostile().into());
        c.email = Some(format!("{}@x.example.com", hostile()));
        c.account_id = hostile().into();
        c.service_desks = vec![hostile().into()];
        let table = customers_table(&[c]);
        assert_no_raw_controls(&table);
        assert!(
            table.contains("\\u{1b}[2J\\rb\\u{9b}31m\\u{202e}c\\u{7}"),
            "{table}"
        );

        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let job = Job {
            state: JobState::Failed,
            email: crate::domain::Email::stored(hostile().into()),
            account_id: Some(crate::domain::AccountId::stored(hostile().into())),
            last_error: Some(hostile().into()),
            outcome: None,
            source: Some(hostile().into()),
            rule: Some(hostile().into()),
            delivery_id: Some(hostile().into()),
            ..Job::example(1, Action::DeletePortalCustomer, at)
        };
        assert_no_raw_controls(&jobs_table(std::slice::from_ref(&job)));
        let details = job_details(&JobWithEvents {
            job,
            events: vec![JobEvent {
                at,
                from: None,
                to: JobState::Failed,
                actor: hostile().into(),
                detail: hostile().into(),
            }],
        });
        assert_no_raw_controls(&details);
    }
}
