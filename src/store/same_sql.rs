//! The operations both backends run with the same SQL: reading jobs, events, deliveries and
//! the worker's state, counting, and the console's revoked sessions. They are written once,
//! here, in [`same_sql!`], and expanded in each backend's module, where `Db` names the sqlx
//! database and `time_from_row`, `optional_time_from_row` and `bind_time` say how that
//! backend stores a time (Postgres `timestamptz`, SQLite integer microseconds). SQL
//! placeholders are `$N`, which both drivers take.
//!
//! A macro rather than functions generic over `sqlx::Database`: those would each need a
//! where-clause naming the executor, the arguments and every type encoded and decoded.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use super::model::{Delivery, JobFilter};
use crate::domain::{Job, JobEvent, JobId, JobState, Transition, WorkerState};

/// An operator's transition of a job, by `actor`, for the event's `detail`.
#[derive(Clone, Copy, Debug)]
pub struct Change<'a> {
    pub transition: Transition,
    pub actor: &'a str,
    pub detail: &'a str,
}

/// What [`same_sql!`] implements for a backend's pool; [`super::Store`] answers these
/// through it.
#[async_trait]
pub trait SameSql: Send + Sync {
    /// Applies the backend's embedded migrations that have not run yet, then adds the
    /// actions of `Action::ALL` missing from the `actions` table.
    async fn migrate(&self) -> StoreResult<()>;
    async fn ping(&self) -> StoreResult<()>;
    async fn job(&self, id: JobId) -> StoreResult<Option<Job>>;
    async fn list_jobs(&self, filter: &JobFilter) -> StoreResult<Vec<Job>>;
    async fn events(&self, id: JobId) -> StoreResult<Vec<JobEvent>>;
    async fn list_deliveries(&self, source: Option<&str>, limit: u32)
    -> StoreResult<Vec<Delivery>>;
    /// The body hash of the delivery recorded under a signed id (`Dedupe::SignedId`).
    async fn signed_delivery_body_sha256(
        &self,
        source: &str,
        delivery_id: &str,
    ) -> StoreResult<Option<String>>;
    async fn count_done_since(&self, since: DateTime<Utc>) -> StoreResult<u64>;
    async fn upcoming_account_ids(
        &self,
        sources: &[&str],
        actions: &[&str],
        limit: u32,
    ) -> StoreResult<Vec<String>>;
    async fn count_by_state(&self) -> StoreResult<Vec<(JobState, u64)>>;
    async fn worker_state(&self) -> StoreResult<WorkerState>;
    async fn revoke_session(
        &self,
        session_sha256: &str,
        expires_at: DateTime<Utc>,
    ) -> StoreResult<()>;
    async fn is_session_revoked(&self, session_sha256: &str) -> StoreResult<bool>;
    /// Writes what a claimed hand-over step has moved so far, with an event saying what this
    /// batch did; `false` when the claim is no longer held.
    async fn record_handover(
        &self,
        job: &Job,
        handover: &crate::domain::HandedOver,
        detail: &str,
    ) -> StoreResult<bool>;
    /// [`super::Store::transition`], without the wake-up.
    async fn transition(&self, id: JobId, change: Change<'_>) -> StoreResult<Job>;
}

/// Expands, in a backend's module, the row readers of `super::rows` for its rows and the
/// [`SameSql`] implementation for `sqlx::Pool<Db>`, and the audit event writer. The module
/// provides `Db`, `BACKEND`, how it stores a time (`StoredTime`, `stored`, `loaded`), its
/// clock in SQL (`now_sql!`), its row lock (`for_update!`) and `cancel_dependents`.
macro_rules! same_sql {
    () => {
        fn time_from_row(
            row: &<Db as sqlx::Database>::Row,
            column: &str,
        ) -> $crate::store::StoreResult<chrono::DateTime<chrono::Utc>> {
            loaded(sqlx::Row::try_get(row, column)?)
        }

        fn optional_time_from_row(
            row: &<Db as sqlx::Database>::Row,
            column: &str,
        ) -> $crate::store::StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
            sqlx::Row::try_get::<Option<StoredTime>, _>(row, column)?
                .map(loaded)
                .transpose()
        }

        /// A write transaction. On SQLite it takes the write lock up front, so two writers
        /// never both read and then race to write.
        async fn begin_write(
            pool: &sqlx::Pool<Db>,
        ) -> $crate::store::StoreResult<sqlx::Transaction<'static, Db>> {
            let begin = match BACKEND {
                $crate::store::Backend::Postgres => "BEGIN",
                $crate::store::Backend::Sqlite => "BEGIN IMMEDIATE",
            };
            Ok(pool.begin_with(begin).await?)
        }

        fn job_from_row(row: &<Db as sqlx::Database>::Row) -> $crate::store::StoreResult<Job> {
            use sqlx::Row as _;
            use $crate::store::model::{parse_column, parse_params};
            Ok(Job {
                id: row.try_get("id")?,
                action: parse_column(row.try_get::<&str, _>("action")?)?,
                params: parse_params(row.try_get::<&str, _>("params")?)?,
                state: parse_column(row.try_get::<&str, _>("state")?)?,
                email: $crate::domain::Email::stored(row.try_get("email")?),
                account_id: row
                    .try_get::<Option<String>, _>("account_id")?
                    .map($crate::domain::AccountId::stored),
                depends_on: row.try_get("depends_on")?,
                run_at: time_from_row(row, "run_at")?,
                lane: parse_column(row.try_get::<&str, _>("lane")?)?,
                attempts: row.try_get("attempts")?,
                max_attempts: row.try_get("max_attempts")?,
                last_error: row.try_get("last_error")?,
                outcome: row
                    .try_get::<Option<&str>, _>("outcome")?
                    .map(parse_column)
                    .transpose()?,
                source: row.try_get("source")?,
                rule: row.try_get("rule")?,
                delivery_id: row.try_get("delivery_id")?,
                created_at: time_from_row(row, "created_at")?,
                updated_at: time_from_row(row, "updated_at")?,
                claim_seq: row.try_get("claim_seq")?,
                lease_owner: row.try_get("lease_owner")?,
                account_type: row.try_get("account_type")?,
                successor_account_id: row
                    .try_get::<Option<String>, _>("successor_account_id")?
                    .map($crate::domain::AccountId::stored),
                handover: row
                    .try_get::<Option<&str>, _>("handover")?
                    .map(serde_json::from_str)
                    .transpose()
                    .map_err(|e| {
                        $crate::store::StoreError::Corrupt(format!("a job's handover: {e}"))
                    })?,
            })
        }

        fn event_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<JobEvent> {
            use sqlx::Row as _;
            use $crate::store::model::parse_column;
            Ok(JobEvent {
                at: time_from_row(row, "at")?,
                from: row
                    .try_get::<Option<&str>, _>("from_state")?
                    .map(parse_column)
                    .transpose()?,
                to: parse_column(row.try_get::<&str, _>("to_state")?)?,
                actor: row.try_get("actor")?,
                detail: row.try_get("detail")?,
            })
        }

        fn delivery_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<Delivery> {
            use sqlx::Row as _;
            use $crate::store::model::{parse_column, parse_job_ids};
            Ok(Delivery {
                id: row.try_get("id")?,
                source: row.try_get("source")?,
                delivery_id: row.try_get("delivery_id")?,
                received_at: time_from_row(row, "received_at")?,
                status: parse_column(row.try_get::<&str, _>("status")?)?,
                error: row.try_get("error")?,
                job_ids: parse_job_ids(row.try_get("job_ids")?),
                approval_required: row.try_get("approval_required")?,
            })
        }

        fn worker_state_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<WorkerState> {
            use sqlx::Row as _;
            use $crate::store::model::parse_column;
            Ok(WorkerState {
                paused: row.try_get("paused")?,
                reason: row
                    .try_get::<Option<&str>, _>("reason")?
                    .map(parse_column)
                    .transpose()?,
                resumed_at: optional_time_from_row(row, "resumed_at")?,
            })
        }

        /// Appends an audit event, at the database's clock.
        async fn insert_event(
            tx: &mut sqlx::Transaction<'static, Db>,
            job_id: JobId,
            from: Option<JobState>,
            to: JobState,
            actor: &str,
            detail: &str,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query(concat!(
                "INSERT INTO job_events (job_id, at, from_state, to_state, actor, detail) \
                 VALUES ($1, ",
                now_sql!(),
                ", $2, $3, $4, $5)"
            ))
            .bind(job_id)
            .bind(from.map(JobState::as_str))
            .bind(to.as_str())
            .bind(actor)
            .bind($crate::store::truncate_detail(detail))
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// A retry that would make a second live job for the same person and action: the
        /// only unique index a transition can run into.
        fn live_conflict(
            err: sqlx::Error,
            id: JobId,
            action: $crate::domain::Action,
        ) -> $crate::store::StoreError {
            if let sqlx::Error::Database(db) = &err
                && db.is_unique_violation()
            {
                return $crate::store::StoreError::LiveJobExists { id, action };
            }
            err.into()
        }

        #[async_trait::async_trait]
        impl $crate::store::same_sql::SameSql for sqlx::Pool<Db> {
            async fn transition(
                &self,
                id: JobId,
                change: $crate::store::same_sql::Change<'_>,
            ) -> $crate::store::StoreResult<Job> {
                use $crate::domain::Transition;
                use $crate::store::StoreError;
                let $crate::store::same_sql::Change {
                    transition,
                    actor,
                    detail,
                } = change;
                let mut tx = begin_write(self).await?;
                let current: Option<(String, String)> = sqlx::query_as(concat!(
                    "SELECT state, action FROM jobs WHERE id = $1",
                    for_update!()
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
                let (state, action) = current.ok_or(StoreError::NotFound(id))?;
                let state: JobState = parse_column(&state)?;
                let action: $crate::domain::Action = parse_column(&action)?;
                if !transition.allowed_from().contains(&state) {
                    return Err(StoreError::InvalidTransition {
                        id,
                        transition,
                        state,
                    });
                }
                let query = match transition {
                    Transition::Cancel => sqlx::query(concat!(
                        "UPDATE jobs SET state = 'cancelled', last_error = $2, finalized_at = ",
                        now_sql!(),
                        ", updated_at = ",
                        now_sql!(),
                        " WHERE id = $1 RETURNING ",
                        $crate::store::rows::job_columns!()
                    ))
                    .bind(id)
                    .bind(detail),
                    Transition::Approve => sqlx::query(concat!(
                        "UPDATE jobs SET state = 'pending', updated_at = ",
                        now_sql!(),
                        " WHERE id = $1 RETURNING ",
                        $crate::store::rows::job_columns!()
                    ))
                    .bind(id),
                    Transition::Retry => sqlx::query(concat!(
                        "UPDATE jobs SET state = 'pending', attempts = 0, last_error = NULL, \
                         outcome = NULL, finalized_at = NULL, run_at = ",
                        now_sql!(),
                        ", updated_at = ",
                        now_sql!(),
                        " WHERE id = $1 RETURNING ",
                        $crate::store::rows::job_columns!()
                    ))
                    .bind(id),
                };
                let row = query
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| live_conflict(e, id, action))?;
                let job = job_from_row(&row)?;
                insert_event(&mut tx, id, Some(state), job.state, actor, detail).await?;
                if job.state == JobState::Cancelled {
                    cancel_dependents(&mut tx, &[id]).await?;
                }
                tx.commit().await?;
                Ok(job)
            }

            async fn record_handover(
                &self,
                job: &Job,
                handover: &$crate::domain::HandedOver,
                detail: &str,
            ) -> $crate::store::StoreResult<bool> {
                let text = serde_json::to_string(handover)
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                let mut tx = begin_write(self).await?;
                let held: Option<JobId> = sqlx::query_scalar(concat!(
                    "UPDATE jobs SET handover = $3, updated_at = ",
                    now_sql!(),
                    " WHERE id = $1 AND state = 'running' AND claim_seq = $2 RETURNING id"
                ))
                .bind(job.id)
                .bind(job.claim_seq)
                .bind(text)
                .fetch_optional(&mut *tx)
                .await?;
                if held.is_none() {
                    return Ok(false);
                }
                insert_event(
                    &mut tx,
                    job.id,
                    Some(JobState::Running),
                    JobState::Running,
                    &$crate::store::rows::worker_actor(job),
                    detail,
                )
                .await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn migrate(&self) -> $crate::store::StoreResult<()> {
                $crate::store::migrator(BACKEND)
                    .run(self)
                    .await
                    .map_err(|e| match e {
                        sqlx::migrate::MigrateError::Execute(inner) => {
                            $crate::store::StoreError::from(inner)
                        }
                        other => $crate::store::StoreError::Corrupt(other.to_string()),
                    })?;
                // Every action of the action table gets its row in the table jobs.action
                // references, so that a new action needs no migration.
                let mut seed = sqlx::QueryBuilder::<Db>::new("INSERT INTO actions (name) ");
                seed.push_values($crate::domain::Action::ALL, |mut row, action| {
                    row.push_bind(action.as_str());
                });
                seed.push(" ON CONFLICT (name) DO NOTHING");
                seed.build().execute(self).await?;
                Ok(())
            }

            async fn ping(&self) -> $crate::store::StoreResult<()> {
                sqlx::query("SELECT 1").execute(self).await?;
                Ok(())
            }

            async fn job(&self, id: JobId) -> $crate::store::StoreResult<Option<Job>> {
                let row = sqlx::query(concat!(
                    "SELECT ",
                    $crate::store::rows::job_columns!(),
                    " FROM jobs WHERE id = $1"
                ))
                .bind(id)
                .fetch_optional(self)
                .await?;
                row.as_ref().map(job_from_row).transpose()
            }

            async fn list_jobs(&self, filter: &JobFilter) -> $crate::store::StoreResult<Vec<Job>> {
                let mut query = $crate::store::rows::jobs_query::<Db>(filter);
                let rows = query.build().fetch_all(self).await?;
                rows.iter().map(job_from_row).collect()
            }

            async fn events(&self, id: JobId) -> $crate::store::StoreResult<Vec<JobEvent>> {
                let rows = sqlx::query(
                    "SELECT at, from_state, to_state, actor, detail FROM job_events \
                     WHERE job_id = $1 ORDER BY id",
                )
                .bind(id)
                .fetch_all(self)
                .await?;
                rows.iter().map(event_from_row).collect()
            }

            async fn list_deliveries(
                &self,
                source: Option<&str>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<Delivery>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::store::rows::delivery_columns!(),
                    " FROM deliveries WHERE (CAST($1 AS TEXT) IS NULL OR source = $1) \
                     ORDER BY id DESC LIMIT $2"
                ))
                .bind(source)
                .bind(i64::from(limit))
                .fetch_all(self)
                .await?;
                rows.iter().map(delivery_from_row).collect()
            }

            async fn signed_delivery_body_sha256(
                &self,
                source: &str,
                delivery_id: &str,
            ) -> $crate::store::StoreResult<Option<String>> {
                // A signed id is recorded with an empty `key_body_sha256`: its one row.
                Ok(sqlx::query_scalar(
                    "SELECT body_sha256 FROM deliveries WHERE source = $1 AND delivery_id = $2 \
                     AND key_body_sha256 = '' ORDER BY id LIMIT 1",
                )
                .bind(source)
                .bind(delivery_id)
                .fetch_optional(self)
                .await?)
            }

            async fn count_done_since(
                &self,
                since: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<u64> {
                let count: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM jobs WHERE outcome = 'done' AND finalized_at >= $1",
                )
                .bind(stored(since))
                .fetch_one(self)
                .await?;
                Ok(count.max(0) as u64)
            }

            async fn upcoming_account_ids(
                &self,
                sources: &[&str],
                actions: &[&str],
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<String>> {
                let mut query = sqlx::QueryBuilder::<Db>::new(
                    "SELECT account_id FROM jobs WHERE state = 'pending' \
                     AND account_id IS NOT NULL AND account_type IS NULL AND run_at <= ",
                );
                query.push_bind(stored(chrono::Utc::now()));
                query.push(" AND source IN (");
                let mut list = query.separated(", ");
                for source in sources {
                    list.push_bind(*source);
                }
                query.push(") AND action IN (");
                let mut list = query.separated(", ");
                for action in actions {
                    list.push_bind(*action);
                }
                query
                    .push(") ORDER BY run_at, id LIMIT ")
                    .push_bind(i64::from(limit));
                let ids: Vec<String> = query.build_query_scalar().fetch_all(self).await?;
                Ok(ids)
            }

            async fn count_by_state(&self) -> $crate::store::StoreResult<Vec<(JobState, u64)>> {
                let rows: Vec<(String, i64)> =
                    sqlx::query_as("SELECT state, count(*) FROM jobs GROUP BY state")
                        .fetch_all(self)
                        .await?;
                rows.iter()
                    .map(|(state, n)| Ok((parse_column(state)?, (*n).max(0) as u64)))
                    .collect()
            }

            async fn worker_state(&self) -> $crate::store::StoreResult<WorkerState> {
                let row =
                    sqlx::query("SELECT paused, reason, resumed_at FROM worker_state WHERE id = 1")
                        .fetch_one(self)
                        .await?;
                worker_state_from_row(&row)
            }

            async fn revoke_session(
                &self,
                session_sha256: &str,
                expires_at: chrono::DateTime<chrono::Utc>,
            ) -> $crate::store::StoreResult<()> {
                let mut tx = begin_write(self).await?;
                sqlx::query("DELETE FROM revoked_sessions WHERE expires_at <= $1")
                    .bind(stored(chrono::Utc::now()))
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(
                    "INSERT INTO revoked_sessions (session_sha256, expires_at) VALUES ($1, $2) \
                     ON CONFLICT (session_sha256) DO NOTHING",
                )
                .bind(session_sha256)
                .bind(stored(expires_at))
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                Ok(())
            }

            async fn is_session_revoked(
                &self,
                session_sha256: &str,
            ) -> $crate::store::StoreResult<bool> {
                let (revoked,): (bool,) = sqlx::query_as(
                    "SELECT EXISTS (SELECT 1 FROM revoked_sessions WHERE session_sha256 = $1)",
                )
                .bind(session_sha256)
                .fetch_one(self)
                .await?;
                Ok(revoked)
            }
        }
    };
}
pub(super) use same_sql;
