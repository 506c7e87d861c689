//! What both backends name the same way: the columns of a job and of a delivery, the live
//! and cancellable states, the jobs listing, and the actor a worker's events name. Rows are
//! read into the domain's types in `same_sql.rs`.

use sqlx::{Database, Encode, QueryBuilder, Type};

use super::model::JobFilter;
use crate::domain::{Job, JobState, Transition};

/// Every column of `jobs` that a job is read from.
macro_rules! job_columns {
    () => {
        "id, action, params, state, email, account_id, depends_on, run_at, attempts, \
         max_attempts, last_error, outcome, source, rule, delivery_id, created_at, updated_at, \
         claim_seq, lease_owner, account_type, successor_account_id, handover, lane"
    };
}
pub(super) use job_columns;

/// The live states (`JobState::is_live`), as SQL: one live job per (action, email, target).
/// Written out only where SQL cannot take them bound: the arbiter of `ON CONFLICT`, which
/// must repeat the predicate of the unique index on the live key.
macro_rules! live_states {
    () => {
        "'pending', 'awaiting_approval', 'running'"
    };
}
pub(super) use live_states;

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

/// The due jobs, oldest first, as a `SELECT id` that the claim limits and locks: pending,
/// due by `$now`, the worker not paused, and the step each depends on succeeded. The one
/// statement of "due" for both backends (README, "Jobs: states and outcomes").
macro_rules! due_jobs {
    ($now:literal, $limit:literal, $first:literal, $second:literal, $third:literal) => {
        concat!(
            "SELECT id FROM (",
            due_jobs!(@lane $now, $limit, $first, 0),
            " UNION ALL ",
            due_jobs!(@lane $now, $limit, $second, 1),
            " UNION ALL ",
            due_jobs!(@lane $now, $limit, $third, 2),
            ") AS due ORDER BY priority, run_at, id LIMIT ",
            $limit,
            " "
        )
    };
    // One lane's due jobs, oldest first, read from `jobs_due_by_lane`.
    (@lane $now:literal, $limit:literal, $lane:literal, $priority:literal) => {
        concat!(
            "SELECT * FROM (SELECT id, ",
            $priority,
            " AS priority, run_at FROM jobs j WHERE state = 'pending' AND lane = ",
            $lane,
            " AND run_at <= ",
            $now,
            " AND NOT EXISTS (SELECT 1 FROM worker_state WHERE paused) ",
            "AND (depends_on IS NULL OR EXISTS ( ",
            "SELECT 1 FROM jobs d WHERE d.id = j.depends_on AND d.state = 'succeeded')) ",
            "ORDER BY run_at, id LIMIT ",
            $limit,
            ") AS lane",
            $priority
        )
    };
}
pub(super) use due_jobs;

/// The columns a delivery is read from.
macro_rules! delivery_columns {
    () => {
        "id, source, delivery_id, received_at, status, error, job_ids, approval_required"
    };
}
pub(super) use delivery_columns;

/// The actor of the events a worker writes: the process that holds the lease.
pub(super) fn worker_actor(job: &Job) -> String {
    owner_actor(job.lease_owner.as_deref().unwrap_or("?"))
}

/// The actor of the events the worker `owner` writes.
pub(super) fn owner_actor(owner: &str) -> String {
    format!("worker:{owner}")
}

/// The claim event's detail is this and the attempt's number: one wording for both
/// backends (Postgres appends the number in the claim's statement).
pub(super) const CLAIMED_ATTEMPT: &str = "claimed, attempt ";

/// Stored as the database's 64-bit integer, on both backends.
mod job_id_sql {
    use crate::domain::JobId;
    use sqlx::encode::IsNull;
    use sqlx::error::BoxDynError;
    use sqlx::{Database, Decode, Encode, Type};

    impl<DB: Database> Type<DB> for JobId
    where
        i64: Type<DB>,
    {
        fn type_info() -> DB::TypeInfo {
            <i64 as Type<DB>>::type_info()
        }

        fn compatible(ty: &DB::TypeInfo) -> bool {
            <i64 as Type<DB>>::compatible(ty)
        }
    }

    impl<'q, DB: Database> Encode<'q, DB> for JobId
    where
        i64: Encode<'q, DB>,
    {
        fn encode_by_ref(
            &self,
            buf: &mut <DB as Database>::ArgumentBuffer<'q>,
        ) -> Result<IsNull, BoxDynError> {
            <i64 as Encode<'q, DB>>::encode_by_ref(&self.0, buf)
        }
    }

    impl<'r, DB: Database> Decode<'r, DB> for JobId
    where
        i64: Decode<'r, DB>,
    {
        fn decode(value: <DB as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
            <i64 as Decode<'r, DB>>::decode(value).map(JobId)
        }
    }

    impl sqlx::postgres::PgHasArrayType for JobId {
        fn array_type_info() -> sqlx::postgres::PgTypeInfo {
            <i64 as sqlx::postgres::PgHasArrayType>::array_type_info()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::JobState;

    fn sql_list(states: impl IntoIterator<Item = JobState>) -> String {
        let quoted: Vec<String> = states.into_iter().map(|s| format!("'{s}'")).collect();
        quoted.join(", ")
    }

    /// The SQL lists are the Rust rules, written out: a change to one must change the other.
    #[test]
    fn the_sql_state_lists_are_the_domain_rules() {
        let live = JobState::ALL.into_iter().filter(|s| s.is_live());
        assert_eq!(live_states!(), sql_list(live));
    }
}
