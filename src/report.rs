//! Plain-text renderings of jobs for the CLI.

use std::fmt::Write as _;

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
