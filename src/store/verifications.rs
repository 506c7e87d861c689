//! What the worker saw when it read a person's account once their chain had ended live, and
//! at the one recheck later (README, "Proof for auditors"). Written once in [`verifications_sql!`],
//! expanded in each backend's module like `same_sql!`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoreResult;
use crate::domain::{Job, JobId};

/// Whether the read after a chain showed what the chain did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VerifiedState {
    Verified,
    /// The read contradicted the chain's outcomes, or could not tell.
    VerificationFailed,
}

impl VerifiedState {
    pub fn as_str(self) -> &'static str {
        match self {
            VerifiedState::Verified => "verified",
            VerifiedState::VerificationFailed => "verification_failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [VerifiedState::Verified, VerifiedState::VerificationFailed]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One verified chain end.
#[derive(Clone, Debug, Serialize)]
pub struct Verification {
    pub id: i64,
    pub email: String,
    pub job_id: JobId,
    pub account_id: Option<String>,
    pub verified_at: DateTime<Utc>,
    pub state: VerifiedState,
    pub seen: String,
    pub recheck_at: Option<DateTime<Utc>>,
    pub rechecked_at: Option<DateTime<Utc>>,
    pub recheck_seen: Option<String>,
    pub reactivated_at: Option<DateTime<Utc>>,
}

/// A verification to record: the read made after `job`, the chain's last step.
#[derive(Clone, Copy, Debug)]
pub struct NewVerification<'a> {
    pub job: &'a Job,
    pub state: VerifiedState,
    pub seen: &'a str,
    /// When to read once more; `None`: never (`recheck_after = "0s"`, or a failed one).
    pub recheck_at: Option<DateTime<Utc>>,
}

/// What a recheck saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recheck {
    /// Still as the chain left it.
    Holds,
    /// Active again: access is back.
    Reactivated,
    /// The read could not tell.
    CannotTell,
}

/// The actor of the verification and recheck events.
pub const VERIFIER: &str = "verifier";

#[async_trait]
pub trait VerificationSql: Send + Sync {
    /// Jobs that ended a chain live (`done` or `already_done`, no step after them), of the
    /// `actions` that are verified, finalized at or after `since`, with no verification yet;
    /// oldest first.
    async fn unverified_chain_ends(
        &self,
        since: DateTime<Utc>,
        actions: &[&str],
        limit: u32,
    ) -> StoreResult<Vec<Job>>;
    /// Records a verification and its event on the job; false when the job already has one
    /// (another replica read it too).
    async fn record_verification(&self, new: &NewVerification<'_>) -> StoreResult<bool>;
    /// Leases up to `limit` rechecks due at `now` to `owner` until `now + lease`.
    async fn claim_rechecks(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> StoreResult<Vec<Verification>>;
    /// Records what a recheck saw, and its event; false when `owner` no longer holds it.
    async fn finish_recheck(
        &self,
        verification: &Verification,
        owner: &str,
        recheck: Recheck,
        seen: &str,
    ) -> StoreResult<bool>;
    /// A person's verifications, newest first.
    async fn verifications_of(&self, email: &str) -> StoreResult<Vec<Verification>>;
}

/// The event detail of a verification.
pub fn verified_detail(state: VerifiedState, seen: &str) -> String {
    format!("{}: {seen}", state.as_str())
}

/// The event detail of a recheck.
pub fn recheck_detail(recheck: Recheck, seen: &str) -> String {
    let what = match recheck {
        Recheck::Holds => "recheck: still removed",
        Recheck::Reactivated => "reactivated",
        Recheck::CannotTell => "recheck cannot tell",
    };
    format!("{what}: {seen}")
}

macro_rules! verifications_sql {
    () => {
        fn verification_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<$crate::store::verifications::Verification> {
            use sqlx::Row as _;
            let state: String = row.try_get("state")?;
            Ok($crate::store::verifications::Verification {
                id: row.try_get("id")?,
                email: row.try_get("email")?,
                job_id: row.try_get("job_id")?,
                account_id: row.try_get("account_id")?,
                verified_at: time_from_row(row, "verified_at")?,
                state: $crate::store::verifications::VerifiedState::parse(&state).ok_or_else(
                    || $crate::store::StoreError::Corrupt(format!("verification state {state}")),
                )?,
                seen: row.try_get("seen")?,
                recheck_at: optional_time_from_row(row, "recheck_at")?,
                rechecked_at: optional_time_from_row(row, "rechecked_at")?,
                recheck_seen: row.try_get("recheck_seen")?,
                reactivated_at: optional_time_from_row(row, "reactivated_at")?,
            })
        }

        #[async_trait::async_trait]
        impl $crate::store::verifications::VerificationSql for sqlx::Pool<Db> {
            async fn unverified_chain_ends(
                &self,
                since: chrono::DateTime<chrono::Utc>,
                actions: &[&str],
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<Job>> {
                let mut query = sqlx::QueryBuilder::<Db>::new(
                    "SELECT * FROM jobs j WHERE j.state = 'succeeded' \
                     AND j.outcome IN ('done', 'already_done') AND j.finalized_at >= ",
                );
                query.push_bind(stored(since));
                query.push(" AND j.action IN (");
                let mut list = query.separated(", ");
                for action in actions {
                    list.push_bind(*action);
                }
                query.push(
                    ") AND NOT EXISTS (SELECT 1 FROM jobs c WHERE c.depends_on = j.id) \
                     AND NOT EXISTS (SELECT 1 FROM verifications v WHERE v.job_id = j.id) \
                     ORDER BY j.finalized_at, j.id LIMIT ",
                );
                query.push_bind(i64::from(limit));
                let rows = query.build().fetch_all(self).await?;
                rows.iter().map(job_from_row).collect()
            }

            async fn record_verification(
                &self,
                new: &$crate::store::verifications::NewVerification<'_>,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::verifications::{VERIFIER, verified_detail};
                let mut tx = begin_write(self).await?;
                let inserted = sqlx::query(concat!(
                    "INSERT INTO verifications (email, job_id, account_id, verified_at, state, \
                     seen, recheck_at) VALUES ($1, $2, $3, ",
                    now_sql!(),
                    ", $4, $5, $6) ON CONFLICT (job_id) DO NOTHING"
                ))
                .bind(new.job.email.as_str())
                .bind(new.job.id)
                .bind(new.job.account_id.as_ref().map(|a| a.as_str()))
                .bind(new.state.as_str())
                .bind($crate::store::truncate_detail(new.seen))
                .bind(new.recheck_at.map(stored))
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if inserted {
                    insert_event(
                        &mut tx,
                        new.job.id,
                        Some(new.job.state),
                        new.job.state,
                        VERIFIER,
                        &verified_detail(new.state, new.seen),
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(inserted)
            }

            async fn claim_rechecks(
                &self,
                owner: &str,
                now: chrono::DateTime<chrono::Utc>,
                lease: std::time::Duration,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::store::verifications::Verification>> {
                let until = now + chrono::Duration::from_std(lease).unwrap_or_default();
                // The outer conditions repeat the inner ones: a replica that waited for
                // another's row lock sees the row as that one left it, and skips it.
                let rows = sqlx::query(
                    "UPDATE verifications SET lease_owner = $1, lease_expires_at = $2 \
                     WHERE id IN (SELECT id FROM verifications \
                         WHERE rechecked_at IS NULL AND recheck_at IS NOT NULL \
                         AND recheck_at <= $3 \
                         AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
                         ORDER BY recheck_at, id LIMIT $4) \
                     AND rechecked_at IS NULL \
                     AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
                     RETURNING *",
                )
                .bind(owner)
                .bind(stored(until))
                .bind(stored(now))
                .bind(i64::from(limit))
                .fetch_all(self)
                .await?;
                rows.iter().map(verification_from_row).collect()
            }

            async fn finish_recheck(
                &self,
                verification: &$crate::store::verifications::Verification,
                owner: &str,
                recheck: $crate::store::verifications::Recheck,
                seen: &str,
            ) -> $crate::store::StoreResult<bool> {
                use $crate::store::verifications::{Recheck, VERIFIER, recheck_detail};
                let mut tx = begin_write(self).await?;
                let reactivated = recheck == Recheck::Reactivated;
                let written = sqlx::query(concat!(
                    "UPDATE verifications SET rechecked_at = ",
                    now_sql!(),
                    ", recheck_seen = $1, reactivated_at = CASE WHEN $2 THEN ",
                    now_sql!(),
                    " ELSE NULL END, lease_owner = NULL, lease_expires_at = NULL \
                     WHERE id = $3 AND lease_owner = $4 AND rechecked_at IS NULL"
                ))
                .bind($crate::store::truncate_detail(seen))
                .bind(reactivated)
                .bind(verification.id)
                .bind(owner)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                    == 1;
                if written {
                    let state: String = sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1")
                        .bind(verification.job_id)
                        .fetch_one(&mut *tx)
                        .await?;
                    let state = $crate::store::model::parse_column::<JobState>(&state)?;
                    insert_event(
                        &mut tx,
                        verification.job_id,
                        Some(state),
                        state,
                        VERIFIER,
                        &recheck_detail(recheck, seen),
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(written)
            }

            async fn verifications_of(
                &self,
                email: &str,
            ) -> $crate::store::StoreResult<Vec<$crate::store::verifications::Verification>> {
                let rows =
                    sqlx::query("SELECT * FROM verifications WHERE email = $1 ORDER BY id DESC")
                        .bind(email)
                        .fetch_all(self)
                        .await?;
                rows.iter().map(verification_from_row).collect()
            }
        }
    };
}

pub(crate) use verifications_sql;
