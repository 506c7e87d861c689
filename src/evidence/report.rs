//! The time-to-revoke report (README, "The quarterly report"): one row per case first seen
//! in a period, with its times, whether it met the SLA, and each job's action and outcome.
//! As JSON, or as CSV written through [`crate::cell::CsvWriter`], which neutralises every
//! cell a spreadsheet would run as a formula: emails and names come from outside.
//!
//! A report names the head of the audit trail's hash chain it was made at, so that a later
//! `offboard evidence verify` can show the trail it summarises was not rewritten since.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::case::{CaseSummary, Step};
use super::people::each_case;
use crate::cell::CsvWriter;
use crate::domain::{rfc3339, time_as_rfc3339};
use crate::store::{Store, StoreResult};

/// The cases first seen at or after `from` and before `to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Period {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Period {
    /// `--from` and `--to` as an operator writes them: a day (`2026-01-01`, 00:00 UTC; as
    /// `to`, the whole day is in) or an RFC 3339 time.
    pub fn parse(from: &str, to: &str) -> Result<Period, String> {
        let from = bound(from, "from", false)?;
        let to = bound(to, "to", true)?;
        if from >= to {
            return Err(format!(
                "from ({}) must be before to ({})",
                rfc3339(&from),
                rfc3339(&to)
            ));
        }
        Ok(Period { from, to })
    }
}

fn bound(text: &str, name: &str, end_of_day: bool) -> Result<DateTime<Utc>, String> {
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        let day = if end_of_day {
            day.succ_opt()
        } else {
            Some(day)
        };
        if let Some(midnight) = day.and_then(|d| d.and_hms_opt(0, 0, 0)) {
            return Ok(midnight.and_utc());
        }
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| format!("{name} must be a day (2026-01-31) or an RFC 3339 time, not `{text}`"))
}

/// One job of a row: its action and how it ended (its outcome, else its state).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportJob {
    pub id: String,
    pub action: String,
    pub state: String,
    pub outcome: Option<String>,
}

impl From<&Step> for ReportJob {
    fn from(step: &Step) -> Self {
        ReportJob {
            id: step.job_id.to_string(),
            action: step.action.as_str().to_owned(),
            state: step.state.as_str().to_owned(),
            outcome: step.outcome.map(|o| o.as_str().to_owned()),
        }
    }
}

/// One case of the report.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ReportRow {
    #[serde(flatten)]
    pub case: CaseSummary,
    pub jobs: Vec<ReportJob>,
}

/// The report, as `--json` and `GET /api/v1/evidence/report` give it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Report {
    #[serde(serialize_with = "time_as_rfc3339")]
    pub from: DateTime<Utc>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub to: DateTime<Utc>,
    #[serde(serialize_with = "time_as_rfc3339")]
    pub generated_at: DateTime<Utc>,
    /// The head of the audit trail's hash chain when the report was made; null where the
    /// store does not give one.
    pub chain_head: Option<String>,
    pub cases: Vec<ReportRow>,
}

/// The CSV's columns, in order.
pub const CSV_HEADER: [&str; 12] = [
    "email",
    "first_seen",
    "effective_at",
    "access_removed_at",
    "verified_at",
    "verified_state",
    "reactivated_at",
    "sla_target",
    "sla",
    "time_to_revoke_seconds",
    "jobs",
    "chain_head",
];

/// Builds the report of `period` at `now`. It states the audit trail's chain head as it
/// stood before the cases were read (`chain_seq:sha256`), so that `evidence verify` can later
/// show that the events it was made from are still those.
pub async fn build(
    store: &dyn Store,
    period: Period,
    sla: Duration,
    now: DateTime<Utc>,
) -> StoreResult<Report> {
    let chain_head = store
        .chain_head()
        .await?
        .map(|head| format!("{}:{}", head.chain_seq, head.sha256));
    let mut cases = Vec::new();
    each_case(store, period.from, period.to, sla, now, |mut case| {
        let jobs = case.steps.iter().map(ReportJob::from).collect();
        case.steps.clear();
        cases.push(ReportRow { case, jobs });
    })
    .await?;
    Ok(Report {
        from: period.from,
        to: period.to,
        generated_at: now,
        chain_head,
        cases,
    })
}

/// `met`, `missed`, or `open` while it may still be met.
pub fn sla_word(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "missed",
        None => "open",
    }
}

fn optional(at: Option<DateTime<Utc>>) -> String {
    at.as_ref().map(rfc3339).unwrap_or_default()
}

impl Report {
    /// The report as CSV: a header, then one line per case; the chain head in a column of its
    /// own on every line, so that any extract of the sheet still names it.
    pub fn write_csv<W: std::io::Write>(&self, out: W) -> std::io::Result<()> {
        let mut csv = CsvWriter::new(out);
        csv.write_record(CSV_HEADER)?;
        let chain_head = self.chain_head.clone().unwrap_or_default();
        for row in &self.cases {
            let c = &row.case;
            let time_to_revoke =
                super::case::time_to_revoke(c.first_seen, c.effective_at, c.access_removed_at)
                    .map(|d| d.num_seconds().to_string())
                    .unwrap_or_default();
            let jobs: Vec<String> = row
                .jobs
                .iter()
                .map(|j| format!("{}={}", j.action, j.outcome.as_deref().unwrap_or(&j.state)))
                .collect();
            csv.write_record([
                c.email.clone(),
                rfc3339(&c.first_seen),
                rfc3339(&c.effective_at),
                optional(c.access_removed_at),
                optional(c.verified_at),
                c.verified_state
                    .map(|v| v.as_str().to_owned())
                    .unwrap_or_default(),
                optional(c.reactivated_at),
                c.sla.target.clone(),
                sla_word(c.sla.met).to_owned(),
                time_to_revoke,
                jobs.join("; "),
                chain_head.clone(),
            ])?;
        }
        csv.flush()
    }

    /// The report as CSV text.
    pub fn csv(&self) -> String {
        let mut out = Vec::new();
        self.write_csv(&mut out)
            .expect("writing to memory cannot fail");
        String::from_utf8(out).expect("every cell is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cell::from_csv;
    use crate::evidence::case::Sla;

    fn day(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn a_period_of_days_takes_in_the_whole_last_day() {
        let period = Period::parse("2026-01-01", "2026-03-31").unwrap();
        assert_eq!(period.from, day("2026-01-01T00:00:00Z"));
        assert_eq!(period.to, day("2026-04-01T00:00:00Z"));
        let exact = Period::parse("2026-01-01T10:00:00+01:00", "2026-01-02T00:00:00Z").unwrap();
        assert_eq!(exact.from, day("2026-01-01T09:00:00Z"));
        assert!(Period::parse("2026-02-01", "2026-01-01").is_err());
        assert!(Period::parse("yesterday", "2026-01-01").is_err());
    }

    #[test]
    fn hostile_cells_are_neutralised_and_read_back_exactly() {
        let hostile = [
            "=HYPERLINK(\"http://evil\")@example.com",
            "+1@example.com",
            "-2+3@example.com",
            "@SUM(A1)",
        ];
        let cases = hostile
            .iter()
            .map(|email| ReportRow {
                case: CaseSummary {
                    email: (*email).to_owned(),
                    first_seen: day("2026-01-01T00:00:00Z"),
                    effective_at: day("2026-01-01T00:00:00Z"),
                    access_removed_at: None,
                    verified_at: None,
                    verified_state: None,
                    sla: Sla {
                        target: "1d".into(),
                        met: Some(false),
                    },
                    reactivated_at: None,
                    steps: Vec::new(),
                },
                jobs: Vec::new(),
            })
            .collect();
        let report = Report {
            from: day("2026-01-01T00:00:00Z"),
            to: day("2026-02-01T00:00:00Z"),
            generated_at: day("2026-02-01T00:00:00Z"),
            chain_head: Some("=cmd|' /C calc'!A0".into()),
            cases,
        };
        let text = report.csv();
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_HEADER);
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
        assert_eq!(rows.len(), hostile.len());
        for (row, email) in rows.iter().zip(hostile) {
            for cell in row.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@']),
                    "a cell a spreadsheet would run: {cell}"
                );
            }
            assert_eq!(from_csv(&row[0]), email);
            assert_eq!(&row[8], "missed");
            assert_eq!(from_csv(&row[11]), "=cmd|' /C calc'!A0");
        }
    }
}
