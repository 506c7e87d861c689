//! What both backends read the same way: the job's columns, a job row as a [`Job`], the
//! worker's state row, and the actor a worker's events name. Only how a time is stored
//! differs (Postgres `timestamptz`, SQLite microseconds), so each backend passes its reader.

use chrono::{DateTime, Utc};
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::StoreResult;
use super::model::{Job, WorkerState, parse_column, parse_params};
use crate::jobs::Outcome;

/// Every column of `jobs` that [`job_from_row`] reads.
macro_rules! job_columns {
    () => {
        "id, action, params, state, email, account_id, depends_on, run_at, attempts, \
         max_attempts, last_error, outcome, source, rule, delivery_id, created_at, updated_at, \
         claim_seq, lease_owner, account_type"
    };
}
pub(super) use job_columns;

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

/// The actor of the events a worker writes: the process that holds the lease.
pub(super) fn worker_actor(job: &Job) -> String {
    format!("worker:{}", job.lease_owner.as_deref().unwrap_or("?"))
}
