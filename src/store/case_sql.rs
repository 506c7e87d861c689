//! What a person's case reads (README, "A person's case"), with the same SQL on both backends,
//! expanded in each backend's module like `same_sql.rs`. Every read goes through an index:
//! `people` by email or by (first_seen, email), jobs by email (`jobs_email_idx`), events by
//! job, deliveries by (source, delivery_id), verifications by email.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use super::model::Delivery;
use super::verifications::{Verification, VerifiedState};
use crate::domain::{Job, JobEvent, JobId};
use crate::evidence::case::{Person, Step};

/// Which people, in the order of (first_seen, email): those first seen in `[from, to)`, after
/// the cursor `after`, only `among` those a verification names, at most `limit`.
#[derive(Clone, Debug, Default)]
pub struct PeopleRange {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub among: Option<Among>,
    pub limit: u32,
}

/// The people some verification of theirs names, read from an index of `verifications`: a
/// superset of those the filter admits (an older verification may have named them), which
/// the caller narrows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Among {
    /// A verification of theirs ended in this state.
    InState(VerifiedState),
    /// A recheck found them active again.
    Reactivated,
}

#[async_trait]
pub trait CaseReads: Send + Sync {
    /// The person's row, by lower-cased email.
    async fn person(&self, email: &str) -> StoreResult<Option<Person>>;
    /// A range of people, by (first_seen, email).
    async fn people(&self, range: &PeopleRange) -> StoreResult<Vec<Person>>;
    /// The jobs of these people, oldest first, as a case needs them.
    async fn steps_of(&self, emails: &[String]) -> StoreResult<Vec<(String, Step)>>;
    /// The newest verification of each of these people that has one.
    async fn newest_verifications_of(&self, emails: &[String]) -> StoreResult<Vec<Verification>>;
    /// Every job of the person, oldest first.
    async fn jobs_of(&self, email: &str) -> StoreResult<Vec<Job>>;
    /// The events of these jobs, oldest first.
    async fn events_of(&self, ids: &[JobId]) -> StoreResult<Vec<(JobId, JobEvent)>>;
    /// The deliveries recorded under these (source, delivery_id), oldest first.
    async fn deliveries_of(&self, keys: &[(String, String)]) -> StoreResult<Vec<Delivery>>;
}

/// Expands [`CaseReads`] for `sqlx::Pool<Db>` in a backend's module, after `same_sql!` and
/// `verifications_sql!` (whose row readers it uses).
macro_rules! case_sql {
    () => {
        fn person_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<$crate::evidence::case::Person> {
            use sqlx::Row as _;
            Ok($crate::evidence::case::Person {
                email: row.try_get("email")?,
                first_seen: time_from_row(row, "first_seen")?,
                effective_at: time_from_row(row, "effective_at")?,
            })
        }

        /// `(email IN (…))` with the emails bound.
        fn push_emails(query: &mut sqlx::QueryBuilder<'_, Db>, emails: &[String]) {
            query.push("email IN (");
            let mut list = query.separated(", ");
            for email in emails {
                list.push_bind(email.clone());
            }
            query.push(")");
        }

        #[async_trait::async_trait]
        impl $crate::store::case_sql::CaseReads for sqlx::Pool<Db> {
            async fn person(
                &self,
                email: &str,
            ) -> $crate::store::StoreResult<Option<$crate::evidence::case::Person>> {
                let row = sqlx::query(
                    "SELECT email, first_seen, effective_at FROM people WHERE email = $1",
                )
                .bind(email)
                .fetch_optional(self)
                .await?;
                row.as_ref().map(person_from_row).transpose()
            }

            async fn people(
                &self,
                range: &$crate::store::case_sql::PeopleRange,
            ) -> $crate::store::StoreResult<Vec<$crate::evidence::case::Person>> {
                let mut query = sqlx::QueryBuilder::<Db>::new(
                    "SELECT email, first_seen, effective_at FROM people WHERE 1 = 1",
                );
                if let Some(from) = range.from {
                    query.push(" AND first_seen >= ").push_bind(stored(from));
                }
                if let Some(to) = range.to {
                    query.push(" AND first_seen < ").push_bind(stored(to));
                }
                match range.among {
                    None => {}
                    Some($crate::store::case_sql::Among::InState(state)) => {
                        query
                            .push(" AND email IN (SELECT email FROM verifications WHERE state = ")
                            .push_bind(state.as_str())
                            .push(")");
                    }
                    Some($crate::store::case_sql::Among::Reactivated) => {
                        query.push(
                            " AND email IN (SELECT email FROM verifications \
                             WHERE reactivated_at IS NOT NULL)",
                        );
                    }
                }
                if let Some((first_seen, email)) = &range.after {
                    // A row value, which both planners turn into a range of the index.
                    query
                        .push(" AND (first_seen, email) > (")
                        .push_bind(stored(*first_seen))
                        .push(", ")
                        .push_bind(email.clone())
                        .push(")");
                }
                query
                    .push(" ORDER BY first_seen, email LIMIT ")
                    .push_bind(i64::from(range.limit));
                let rows = query.build().fetch_all(self).await?;
                rows.iter().map(person_from_row).collect()
            }

            async fn steps_of(
                &self,
                emails: &[String],
            ) -> $crate::store::StoreResult<Vec<(String, $crate::evidence::case::Step)>> {
                use sqlx::Row as _;
                use $crate::store::model::parse_column;
                if emails.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<Db>::new(
                    "SELECT id, email, action, state, outcome, finalized_at FROM jobs WHERE ",
                );
                push_emails(&mut query, emails);
                query.push(" ORDER BY id");
                let rows = query.build().fetch_all(self).await?;
                rows.iter()
                    .map(|row| {
                        let step = $crate::evidence::case::Step {
                            job_id: row.try_get("id")?,
                            action: parse_column(row.try_get::<&str, _>("action")?)?,
                            state: parse_column(row.try_get::<&str, _>("state")?)?,
                            outcome: row
                                .try_get::<Option<&str>, _>("outcome")?
                                .map(parse_column)
                                .transpose()?,
                            finalized_at: optional_time_from_row(row, "finalized_at")?,
                        };
                        Ok((row.try_get("email")?, step))
                    })
                    .collect()
            }

            async fn newest_verifications_of(
                &self,
                emails: &[String],
            ) -> $crate::store::StoreResult<Vec<$crate::store::verifications::Verification>> {
                if emails.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<Db>::new("SELECT * FROM verifications WHERE ");
                push_emails(&mut query, emails);
                query.push(" ORDER BY id");
                let rows = query.build().fetch_all(self).await?;
                // Oldest first: the newest of each person is the one that stays.
                let mut newest = std::collections::BTreeMap::new();
                for row in &rows {
                    let verification = verification_from_row(row)?;
                    newest.insert(verification.email.clone(), verification);
                }
                Ok(newest.into_values().collect())
            }

            async fn jobs_of(&self, email: &str) -> $crate::store::StoreResult<Vec<Job>> {
                let rows = sqlx::query(concat!(
                    "SELECT ",
                    $crate::store::rows::job_columns!(),
                    " FROM jobs WHERE email = $1 ORDER BY id"
                ))
                .bind(email)
                .fetch_all(self)
                .await?;
                rows.iter().map(job_from_row).collect()
            }

            async fn events_of(
                &self,
                ids: &[JobId],
            ) -> $crate::store::StoreResult<Vec<(JobId, JobEvent)>> {
                use sqlx::Row as _;
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<Db>::new(
                    "SELECT job_id, at, from_state, to_state, actor, detail FROM job_events \
                     WHERE job_id IN (",
                );
                let mut list = query.separated(", ");
                for id in ids {
                    list.push_bind(*id);
                }
                query.push(") ORDER BY id");
                let rows = query.build().fetch_all(self).await?;
                rows.iter()
                    .map(|row| Ok((row.try_get("job_id")?, event_from_row(row)?)))
                    .collect()
            }

            async fn deliveries_of(
                &self,
                keys: &[(String, String)],
            ) -> $crate::store::StoreResult<Vec<Delivery>> {
                if keys.is_empty() {
                    return Ok(Vec::new());
                }
                let mut query = sqlx::QueryBuilder::<Db>::new(concat!(
                    "SELECT ",
                    $crate::store::rows::delivery_columns!(),
                    " FROM deliveries WHERE "
                ));
                let mut any = query.separated(" OR ");
                for (source, delivery_id) in keys {
                    any.push("(source = ")
                        .push_bind_unseparated(source.clone())
                        .push_unseparated(" AND delivery_id = ")
                        .push_bind_unseparated(delivery_id.clone())
                        .push_unseparated(")");
                }
                query.push(" ORDER BY id");
                let rows = query.build().fetch_all(self).await?;
                rows.iter().map(delivery_from_row).collect()
            }
        }
    };
}
pub(super) use case_sql;
