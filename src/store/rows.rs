//! What both backends read the same way: the job's columns, a job, event, delivery and
//! worker-state row as the domain sees it, the jobs listing, and the actor a worker's events
//! name. Only how a time is stored differs (Postgres `timestamptz`, SQLite microseconds), so
//! each backend passes its reader.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::StoreResult;
use super::model::{Delivery, JobFilter, parse_column, parse_job_ids, parse_params};
use crate::domain::{Job, JobEvent, JobState, Outcome, Transition, WorkerState};

/// Every column of `jobs` that [`job_from_row`] reads.
macro_rules! job_columns {
    () => {
        "id, action, params, state, email, account_id, depends_on, run_at, attempts, \
         max_attempts, last_error, outcome, source, rule, delivery_id, created_at, updated_at, \
         claim_seq, lease_owner, account_type"
    };
}
pub(super) use job_columns;

/// The live states (`JobState::is_live`), as SQL: one live job per (action, email).
macro_rules! live_states {
    () => {
        "'pending', 'awaiting_approval', 'running'"
    };
}
pub(super) use live_states;

/// The states a cancel takes a job out of (`Transition::Cancel`), as SQL.
macro_rules! cancellable_states {
    () => {
        "'pending', 'awaiting_approval'"
    };
}
pub(super) use cancellable_states;

/// The live states, as bound values where SQL needs them (`JobState::is_live`).
pub(super) fn live_state_names() -> Vec<&'static str> {
    JobState::ALL
        .into_iter()
        .filter(|s| s.is_live())
        .map(JobState::as_str)
        .collect()
}

/// The states a cancel takes a job out of, as bound values (`Transition::Cancel`).
pub(super) fn cancellable_state_names() -> Vec<&'static str> {
    Transition::Cancel
        .allowed_from()
        .iter()
        .map(|s| s.as_str())
        .collect()
}

/// Reads the time in a column, as the backend stores it.
pub(super) type TimeReader<R> = fn(&R, &str) -> StoreResult<DateTime<Utc>>;
/// Reads a time that may be absent.
pub(super) type OptionalTimeReader<R> = fn(&R, &str) -> StoreResult<Option<DateTime<Utc>>>;

pub(super) fn job_from_row<'r, R>(row: &'r R, time: TimeReader<R>) -> StoreResult<Job>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    i32: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Job {
        id: row.try_get("id")?,
        action: parse_column(row.try_get::<&str, _>("action")?)?,
        params: parse_params(row.try_get::<&str, _>("params")?)?,
        state: parse_column(row.try_get::<&str, _>("state")?)?,
        email: row.try_get("email")?,
        account_id: row.try_get("account_id")?,
        depends_on: row.try_get("depends_on")?,
        run_at: time(row, "run_at")?,
        attempts: row.try_get("attempts")?,
        max_attempts: row.try_get("max_attempts")?,
        last_error: row.try_get("last_error")?,
        outcome: row
            .try_get::<Option<&str>, _>("outcome")?
            .map(parse_column::<Outcome>)
            .transpose()?,
        source: row.try_get("source")?,
        rule: row.try_get("rule")?,
        delivery_id: row.try_get("delivery_id")?,
        created_at: time(row, "created_at")?,
        updated_at: time(row, "updated_at")?,
        claim_seq: row.try_get("claim_seq")?,
        lease_owner: row.try_get("lease_owner")?,
        account_type: row.try_get("account_type")?,
    })
}

pub(super) fn worker_state_from_row<'r, R>(
    row: &'r R,
    time: OptionalTimeReader<R>,
) -> StoreResult<WorkerState>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    bool: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(WorkerState {
        paused: row.try_get("paused")?,
        reason: row
            .try_get::<Option<&str>, _>("reason")?
            .map(parse_column)
            .transpose()?,
        resumed_at: time(row, "resumed_at")?,
    })
}

/// The newest-first listing a [`JobFilter`] asks for, with the backend's placeholders.
pub(super) fn jobs_query<'a, DB>(filter: &JobFilter) -> QueryBuilder<'a, DB>
where
    DB: Database,
    &'static str: Encode<'a, DB> + Type<DB>,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut query =
        QueryBuilder::<DB>::new(concat!("SELECT ", job_columns!(), " FROM jobs WHERE 1 = 1"));
    if let Some(state) = filter.state {
        query.push(" AND state = ").push_bind(state.as_str());
    }
    if let Some(email) = &filter.email {
        // Emails are stored lower-cased in ASCII; no Unicode case mapping (KELVIN SIGN ≠ k).
        query
            .push(" AND email = ")
            .push_bind(email.to_ascii_lowercase());
    }
    if let Some(action) = filter.action {
        query.push(" AND action = ").push_bind(action.as_str());
    }
    if let Some(before) = filter.before {
        query.push(" AND id < ").push_bind(before);
    }
    query
        .push(" ORDER BY id DESC LIMIT ")
        .push_bind(i64::from(filter.limit));
    query
}

pub(super) fn event_from_row<'r, R>(row: &'r R, time: TimeReader<R>) -> StoreResult<JobEvent>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(JobEvent {
        at: time(row, "at")?,
        from: row
            .try_get::<Option<&str>, _>("from_state")?
            .map(parse_column)
            .transpose()?,
        to: parse_column(row.try_get::<&str, _>("to_state")?)?,
        actor: row.try_get("actor")?,
        detail: row.try_get("detail")?,
    })
}

/// The columns [`delivery_from_row`] reads.
macro_rules! delivery_columns {
    () => {
        "id, source, delivery_id, received_at, status, error, job_ids, approval_required"
    };
}
pub(super) use delivery_columns;

pub(super) fn delivery_from_row<'r, R>(row: &'r R, time: TimeReader<R>) -> StoreResult<Delivery>
where
    R: Row,
    &'r str: ColumnIndex<R> + Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(Delivery {
        id: row.try_get("id")?,
        source: row.try_get("source")?,
        delivery_id: row.try_get("delivery_id")?,
        received_at: time(row, "received_at")?,
        status: parse_column(row.try_get::<&str, _>("status")?)?,
        error: row.try_get("error")?,
        job_ids: parse_job_ids(row.try_get("job_ids")?),
        approval_required: row.try_get("approval_required")?,
    })
}

/// The actor of the events a worker writes: the process that holds the lease.
pub(super) fn worker_actor(job: &Job) -> String {
    format!("worker:{}", job.lease_owner.as_deref().unwrap_or("?"))
}

#[cfg(test)]
mod tests {
    use crate::domain::{JobState, Transition};

    fn sql_list(states: impl IntoIterator<Item = JobState>) -> String {
        let quoted: Vec<String> = states.into_iter().map(|s| format!("'{s}'")).collect();
        quoted.join(", ")
    }

    /// The SQL lists are the Rust rules, written out: a change to one must change the other.
    #[test]
    fn the_sql_state_lists_are_the_domain_rules() {
        let live = JobState::ALL.into_iter().filter(|s| s.is_live());
        assert_eq!(live_states!(), sql_list(live));
        let cancellable = Transition::Cancel.allowed_from().iter().copied();
        assert_eq!(cancellable_states!(), sql_list(cancellable));
    }
}
