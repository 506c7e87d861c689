//! What proof of offboarding needs from the store (README, "Proof for auditors"): sealing
//! audit events into the hash chain, reading the chain back in order, and pseudonymizing a
//! person's records. The hashes and pseudonyms are computed in Rust (`crate::evidence`);
//! the SQL here reads and writes them. Written once in [`chain_sql!`] and expanded in each
//! backend's module, like `same_sql.rs`; where the dialects differ, the statement says so.
//!
//! Why the chain cannot fork: sealing reads the head and writes the next links in one
//! transaction that holds a lock only one sealer can hold at a time (Postgres: a
//! transaction-level advisory lock; SQLite: the write lock of `BEGIN IMMEDIATE`). Should two
//! ever run at once, both would write the same `chain_seq`, and the unique index on it fails
//! the second one instead of letting the chain split.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreResult;
use crate::domain::{Email, JobId};
use crate::evidence::chain::{ChainHead, SealedEvent};
use crate::evidence::pseudonym::Pseudonyms;

/// The key of the advisory lock sealers and pseudonymizers hold on Postgres ("chain" in
/// ASCII).
pub(crate) const CHAIN_LOCK: i64 = 0x0063_6861_696e;

/// One person's records to pseudonymize, and who asked.
#[derive(Clone, Copy, Debug)]
pub struct Erasure<'a> {
    /// Lower-cased, as the store keeps it.
    pub email: &'a str,
    pub pseudonyms: &'a Pseudonyms,
    /// The actor of the audit event written on each of the person's jobs.
    pub actor: &'a str,
    /// Whether jobs still live, or rechecks still due, refuse the erasure; the periodic
    /// pass picks only people whose jobs are all final, and checks again here.
    pub refuse_unfinished: bool,
}

/// What pseudonymizing one person did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Erased {
    /// The rows rewritten, per table.
    Done {
        pseudonym: String,
        jobs: u64,
        events: u64,
        deliveries: u64,
        verifications: u64,
    },
    /// Nothing was changed: the person's case is not over. These jobs are still live, or
    /// the verifications after these jobs are still to be rechecked (a recheck reads the
    /// account by the id a pseudonym would replace).
    Unfinished {
        live_jobs: Vec<JobId>,
        rechecks_due: Vec<JobId>,
    },
}

#[async_trait]
pub trait ChainSql: Send + Sync {
    /// Seals up to `limit` unsealed events, oldest id first, after the chain's head.
    /// Returns how many it sealed.
    async fn seal_events(&self, limit: u32) -> StoreResult<u64>;
    /// The newest sealed event, `None` while nothing is sealed.
    async fn chain_head(&self) -> StoreResult<Option<ChainHead>>;
    /// Up to `limit` sealed events after `after_seq`, in `chain_seq` order, each with its
    /// job's email as stored now.
    async fn sealed_events(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<SealedEvent>>;
    /// Replaces the person's email and account ids by their pseudonyms in jobs, events,
    /// deliveries and verifications, in one transaction, and writes an audit event on each
    /// of their jobs.
    async fn pseudonymize(&self, erasure: Erasure<'_>) -> StoreResult<Erased>;
    /// People whose jobs are all final, the newest finalized before `before`, with no
    /// recheck due, not pseudonymized yet.
    async fn due_for_pseudonymization(
        &self,
        before: DateTime<Utc>,
        limit: u32,
    ) -> StoreResult<Vec<Email>>;
    /// After an erasure, leaves no copy of what was overwritten in the database's files
    /// where the backend can: SQLite checkpoints and truncates its write-ahead log, and with
    /// `vacuum` rebuilds the file. Postgres: nothing (its dump holds only live rows).
    async fn compact(&self, vacuum: bool) -> StoreResult<()>;
    /// How much a sealer running beside the service may take at once.
    fn serve_pace(&self) -> SealPace;
}

/// How `serve` seals: `batch` events a transaction, the next one after `backlog_every`
/// while a backlog lasts, else after a second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealPace {
    pub batch: u32,
    pub backlog_every: std::time::Duration,
}

/// A `LIKE` pattern that finds `text` anywhere, its wildcards escaped with `\`.
pub(crate) fn containing(text: &str) -> String {
    let mut pattern = String::from("%");
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

/// Expands [`ChainSql`] for `sqlx::Pool<Db>` in a backend's module, next to `same_sql!`,
/// whose `begin_write`, `time_from_row`, `insert_event` and `stored` it uses.
macro_rules! chain_sql {
    () => {
        /// Holds the chain's lock until the transaction ends (SQLite: `begin_write` holds
        /// the write lock already).
        async fn lock_chain(
            tx: &mut sqlx::Transaction<'static, Db>,
        ) -> $crate::store::StoreResult<()> {
            match BACKEND {
                $crate::store::Backend::Postgres => {
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind($crate::store::chain::CHAIN_LOCK)
                        .execute(&mut **tx)
                        .await?;
                }
                $crate::store::Backend::Sqlite => {}
            }
            Ok(())
        }

        fn event_content_from_row(
            row: &<Db as sqlx::Database>::Row,
        ) -> $crate::store::StoreResult<$crate::evidence::chain::EventContent> {
            use sqlx::Row as _;
            Ok($crate::evidence::chain::EventContent {
                id: row.try_get("id")?,
                job_id: row.try_get("job_id")?,
                at: time_from_row(row, "at")?,
                from_state: row.try_get("from_state")?,
                to_state: row.try_get("to_state")?,
                actor: row.try_get("actor")?,
                detail: row.try_get("detail")?,
            })
        }

        /// Sets `evidence_rewrite.active`, which lets this transaction rewrite events.
        async fn allow_rewrite(
            tx: &mut sqlx::Transaction<'static, Db>,
            active: bool,
        ) -> $crate::store::StoreResult<()> {
            sqlx::query("UPDATE evidence_rewrite SET active = $1 WHERE id = 1")
                .bind(active)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        #[async_trait::async_trait]
        impl $crate::store::chain::ChainSql for sqlx::Pool<Db> {
            async fn seal_events(&self, limit: u32) -> $crate::store::StoreResult<u64> {
                use sqlx::Row as _;
                use $crate::evidence::chain::{UnsealedEvent, seal};
                // Most seconds there is nothing to seal: look without the lock first, so an
                // idle sealer never takes SQLite's write lock from a webhook.
                let waiting: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM job_events WHERE chain_seq IS NULL LIMIT 1")
                        .fetch_optional(self)
                        .await?;
                if waiting.is_none() {
                    return Ok(0);
                }
                let mut tx = begin_write(self).await?;
                lock_chain(&mut tx).await?;
                let head = chain_head_in(&mut *tx).await?;
                let rows = sqlx::query(
                    "SELECT e.id, e.job_id, e.at, e.from_state, e.to_state, e.actor, e.detail, \
                       j.email, j.account_id \
                     FROM job_events e JOIN jobs j ON j.id = e.job_id \
                     WHERE e.chain_seq IS NULL ORDER BY e.id LIMIT $1",
                )
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
                if rows.is_empty() {
                    return Ok(0);
                }
                let events = rows
                    .iter()
                    .map(|row| {
                        Ok(UnsealedEvent {
                            content: event_content_from_row(row)?,
                            email: row.try_get("email")?,
                            account_id: row.try_get("account_id")?,
                        })
                    })
                    .collect::<$crate::store::StoreResult<Vec<_>>>()?;
                let seals = seal(head.as_ref(), &events);
                let seals = serde_json::to_string(&seals)
                    .map_err(|e| $crate::store::StoreError::Corrupt(e.to_string()))?;
                // One statement for the batch: the seals as one JSON array, read by each
                // dialect's JSON table function.
                let write = match BACKEND {
                    $crate::store::Backend::Postgres => {
                        "UPDATE job_events SET chain_seq = (s.v->>'chain_seq')::bigint, \
                           prev_sha256 = s.v->>'prev_sha256', sha256 = s.v->>'sha256', \
                           chain_account_id = s.v->>'account_id' \
                         FROM jsonb_array_elements($1::jsonb) AS s (v) \
                         WHERE job_events.id = (s.v->>'event_id')::bigint"
                    }
                    $crate::store::Backend::Sqlite => {
                        "UPDATE job_events SET chain_seq = s.value->>'chain_seq', \
                           prev_sha256 = s.value->>'prev_sha256', sha256 = s.value->>'sha256', \
                           chain_account_id = s.value->>'account_id' \
                         FROM json_each($1) AS s \
                         WHERE job_events.id = s.value->>'event_id'"
                    }
                };
                let sealed = sqlx::query(write)
                    .bind(seals)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                tx.commit().await?;
                Ok(sealed)
            }

            async fn chain_head(
                &self,
            ) -> $crate::store::StoreResult<Option<$crate::evidence::chain::ChainHead>> {
                let mut conn = self.acquire().await?;
                chain_head_in(&mut *conn).await
            }

            async fn sealed_events(
                &self,
                after_seq: i64,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::evidence::chain::SealedEvent>> {
                use sqlx::Row as _;
                use $crate::evidence::chain::{Seal, SealedEvent};
                let rows = sqlx::query(
                    "SELECT e.id, e.job_id, e.at, e.from_state, e.to_state, e.actor, e.detail, \
                       e.chain_seq, e.prev_sha256, e.sha256, e.chain_account_id, j.email \
                     FROM job_events e JOIN jobs j ON j.id = e.job_id \
                     WHERE e.chain_seq > $1 ORDER BY e.chain_seq LIMIT $2",
                )
                .bind(after_seq)
                .bind(i64::from(limit))
                .fetch_all(self)
                .await?;
                rows.iter()
                    .map(|row| {
                        Ok(SealedEvent {
                            content: event_content_from_row(row)?,
                            email: row.try_get("email")?,
                            seal: Seal {
                                event_id: row.try_get("id")?,
                                chain_seq: row.try_get("chain_seq")?,
                                prev_sha256: row.try_get("prev_sha256")?,
                                sha256: row.try_get("sha256")?,
                                account_id: row.try_get("chain_account_id")?,
                            },
                        })
                    })
                    .collect()
            }

            async fn pseudonymize(
                &self,
                erasure: $crate::store::chain::Erasure<'_>,
            ) -> $crate::store::StoreResult<$crate::store::chain::Erased> {
                use sqlx::Row as _;
                use $crate::evidence::erasure::Rewrite;
                use $crate::store::chain::Erased;
                let $crate::store::chain::Erasure {
                    email,
                    pseudonyms,
                    actor,
                    refuse_unfinished,
                } = erasure;
                let mut tx = begin_write(self).await?;
                lock_chain(&mut tx).await?;
                let jobs = sqlx::query(concat!(
                    "SELECT id, state, account_id, params, last_error FROM jobs \
                     WHERE email = $1 ORDER BY id",
                    for_update!()
                ))
                .bind(email)
                .fetch_all(&mut *tx)
                .await?;
                let verifications = sqlx::query(
                    "SELECT id, job_id, account_id, seen, recheck_seen, \
                       recheck_at IS NOT NULL AND rechecked_at IS NULL AS recheck_due \
                     FROM verifications WHERE email = $1",
                )
                .bind(email)
                .fetch_all(&mut *tx)
                .await?;
                let states = job_states(&jobs)?;
                let live_jobs: Vec<JobId> = states
                    .iter()
                    .filter(|(_, state)| state.is_live())
                    .map(|(id, _)| *id)
                    .collect();
                let mut rechecks_due = Vec::new();
                for row in &verifications {
                    if row.try_get::<bool, _>("recheck_due")? {
                        rechecks_due.push(row.try_get::<JobId, _>("job_id")?);
                    }
                }
                if refuse_unfinished && !(live_jobs.is_empty() && rechecks_due.is_empty()) {
                    return Ok(Erased::Unfinished {
                        live_jobs,
                        rechecks_due,
                    });
                }
                let events = person_events(&mut tx, email).await?;
                let mut account_ids = Vec::new();
                for (rows, column) in [(&jobs, "account_id"), (&verifications, "account_id")] {
                    for row in rows {
                        account_ids.extend(row.try_get::<Option<String>, _>(column)?);
                    }
                }
                account_ids.extend(events.iter().filter_map(|e| e.chain_account_id.clone()));
                let rewrite = Rewrite::new(email, account_ids, pseudonyms);

                let events = rewrite_events(&mut tx, &rewrite, &events).await?;
                rewrite_jobs(&mut tx, &rewrite, &jobs).await?;
                let deliveries = rewrite_deliveries(&mut tx, &rewrite).await?;
                rewrite_verifications(&mut tx, &rewrite, &verifications).await?;
                rewrite_person(&mut tx, &rewrite).await?;
                for (id, state) in &states {
                    insert_event(
                        &mut tx,
                        *id,
                        Some(*state),
                        *state,
                        actor,
                        $crate::evidence::PSEUDONYMIZED_DETAIL,
                    )
                    .await?;
                }
                tx.commit().await?;
                Ok(Erased::Done {
                    pseudonym: rewrite.pseudonym().to_owned(),
                    jobs: jobs.len() as u64,
                    events,
                    deliveries,
                    verifications: verifications.len() as u64,
                })
            }

            async fn due_for_pseudonymization(
                &self,
                before: chrono::DateTime<chrono::Utc>,
                limit: u32,
            ) -> $crate::store::StoreResult<Vec<$crate::domain::Email>> {
                let emails: Vec<String> = sqlx::query_scalar(
                    "SELECT email FROM jobs WHERE email NOT LIKE $1 \
                       AND email NOT IN (SELECT email FROM verifications \
                         WHERE recheck_at IS NOT NULL AND rechecked_at IS NULL) \
                     GROUP BY email \
                     HAVING count(finalized_at) = count(*) AND max(finalized_at) < $2 \
                     ORDER BY email LIMIT $3",
                )
                .bind(format!(
                    "%@{}",
                    $crate::evidence::pseudonym::PSEUDONYM_DOMAIN
                ))
                .bind(stored(before))
                .bind(i64::from(limit))
                .fetch_all(self)
                .await?;
                Ok(emails
                    .into_iter()
                    .map($crate::domain::Email::stored)
                    .collect())
            }

            fn serve_pace(&self) -> $crate::store::chain::SealPace {
                use std::time::Duration;
                match BACKEND {
                    // Sealing takes no lock a writer of events or jobs waits for.
                    $crate::store::Backend::Postgres => $crate::store::chain::SealPace {
                        batch: 1000,
                        backlog_every: Duration::from_millis(100),
                    },
                    // SQLite's write lock is not handed out fairly: one short transaction a
                    // second, so that a backlog (a bulk request's jobs) never keeps webhooks
                    // waiting past their deadline (`tests/it/bulk_and_webhooks.rs`).
                    $crate::store::Backend::Sqlite => $crate::store::chain::SealPace {
                        batch: 250,
                        backlog_every: Duration::from_secs(1),
                    },
                }
            }

            async fn compact(&self, vacuum: bool) -> $crate::store::StoreResult<()> {
                match BACKEND {
                    $crate::store::Backend::Postgres => {}
                    $crate::store::Backend::Sqlite => {
                        let mut conn = self.acquire().await?;
                        sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                            .execute(&mut *conn)
                            .await?;
                        if vacuum {
                            sqlx::query("VACUUM").execute(&mut *conn).await?;
                            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                                .execute(&mut *conn)
                                .await?;
                        }
                    }
                }
                Ok(())
            }
        }

        /// Each job's id and state.
        fn job_states(
            jobs: &[<Db as sqlx::Database>::Row],
        ) -> $crate::store::StoreResult<Vec<(JobId, JobState)>> {
            use sqlx::Row as _;
            jobs.iter()
                .map(|row| {
                    let state = row.try_get::<&str, _>("state")?;
                    Ok((
                        row.try_get("id")?,
                        $crate::store::model::parse_column(state)?,
                    ))
                })
                .collect()
        }

        /// The audit events of a person's jobs.
        async fn person_events(
            tx: &mut sqlx::Transaction<'static, Db>,
            email: &str,
        ) -> $crate::store::StoreResult<Vec<$crate::evidence::erasure::EventText>> {
            use sqlx::Row as _;
            let rows = sqlx::query(
                "SELECT e.id, e.actor, e.detail, e.chain_seq, e.chain_account_id, \
                   j.account_id AS job_account_id \
                 FROM job_events e JOIN jobs j ON j.id = e.job_id WHERE j.email = $1",
            )
            .bind(email)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter()
                .map(|row| {
                    Ok($crate::evidence::erasure::EventText {
                        id: row.try_get("id")?,
                        sealed: row.try_get::<Option<i64>, _>("chain_seq")?.is_some(),
                        actor: row.try_get("actor")?,
                        detail: row.try_get("detail")?,
                        chain_account_id: row.try_get("chain_account_id")?,
                        job_account_id: row.try_get("job_account_id")?,
                    })
                })
                .collect()
        }

        /// Rewrites the events that name the person, with the append-only guard lifted for
        /// this transaction only. Returns how many.
        async fn rewrite_events(
            tx: &mut sqlx::Transaction<'static, Db>,
            rewrite: &$crate::evidence::erasure::Rewrite<'_>,
            events: &[$crate::evidence::erasure::EventText],
        ) -> $crate::store::StoreResult<u64> {
            allow_rewrite(tx, true).await?;
            let mut changed = 0;
            for after in events.iter().filter_map(|event| rewrite.event(event)) {
                sqlx::query(
                    "UPDATE job_events SET actor = $2, detail = $3, chain_account_id = $4 \
                     WHERE id = $1",
                )
                .bind(after.id)
                .bind(after.actor)
                .bind(after.detail)
                .bind(after.chain_account_id)
                .execute(&mut **tx)
                .await?;
                changed += 1;
            }
            allow_rewrite(tx, false).await?;
            Ok(changed)
        }

        async fn rewrite_jobs(
            tx: &mut sqlx::Transaction<'static, Db>,
            rewrite: &$crate::evidence::erasure::Rewrite<'_>,
            jobs: &[<Db as sqlx::Database>::Row],
        ) -> $crate::store::StoreResult<()> {
            use sqlx::Row as _;
            for row in jobs {
                sqlx::query(
                    "UPDATE jobs SET email = $2, account_id = $3, params = $4, last_error = $5 \
                     WHERE id = $1",
                )
                .bind(row.try_get::<JobId, _>("id")?)
                .bind(rewrite.pseudonym())
                .bind(rewrite.account_id(row.try_get("account_id")?))
                .bind(rewrite.scrub(row.try_get("params")?))
                .bind(rewrite.scrub_optional(row.try_get("last_error")?))
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Rewrites the deliveries whose answer or error names the email (a scan: an erasure
        /// is rare, and a delivery may name people it made no job for). Returns how many.
        async fn rewrite_deliveries(
            tx: &mut sqlx::Transaction<'static, Db>,
            rewrite: &$crate::evidence::erasure::Rewrite<'_>,
        ) -> $crate::store::StoreResult<u64> {
            use sqlx::Row as _;
            let rows = sqlx::query(
                "SELECT id, response, error FROM deliveries \
                 WHERE lower(response) LIKE $1 ESCAPE '\\' \
                    OR lower(coalesce(error, '')) LIKE $1 ESCAPE '\\'",
            )
            .bind($crate::store::chain::containing(rewrite.email()))
            .fetch_all(&mut **tx)
            .await?;
            for row in &rows {
                sqlx::query("UPDATE deliveries SET response = $2, error = $3 WHERE id = $1")
                    .bind(row.try_get::<i64, _>("id")?)
                    .bind(rewrite.scrub(row.try_get("response")?))
                    .bind(rewrite.scrub_optional(row.try_get("error")?))
                    .execute(&mut **tx)
                    .await?;
            }
            Ok(rows.len() as u64)
        }

        async fn rewrite_verifications(
            tx: &mut sqlx::Transaction<'static, Db>,
            rewrite: &$crate::evidence::erasure::Rewrite<'_>,
            verifications: &[<Db as sqlx::Database>::Row],
        ) -> $crate::store::StoreResult<()> {
            use sqlx::Row as _;
            for row in verifications {
                sqlx::query(
                    "UPDATE verifications SET email = $2, account_id = $3, seen = $4, \
                     recheck_seen = $5 WHERE id = $1",
                )
                .bind(row.try_get::<i64, _>("id")?)
                .bind(rewrite.pseudonym())
                .bind(rewrite.account_id(row.try_get("account_id")?))
                .bind(rewrite.scrub(row.try_get("seen")?))
                .bind(rewrite.scrub_optional(row.try_get("recheck_seen")?))
                .execute(&mut **tx)
                .await?;
            }
            Ok(())
        }

        /// Renames the person's row of `people` (README, "A person's case") to the pseudonym,
        /// merged with a row the pseudonym may have already (an erasure of someone named
        /// again after an earlier one): the earlier times stand.
        async fn rewrite_person(
            tx: &mut sqlx::Transaction<'static, Db>,
            rewrite: &$crate::evidence::erasure::Rewrite<'_>,
        ) -> $crate::store::StoreResult<()> {
            let row: Option<(StoredTime, StoredTime)> = sqlx::query_as(
                "DELETE FROM people WHERE email = $1 RETURNING first_seen, effective_at",
            )
            .bind(rewrite.email())
            .fetch_optional(&mut **tx)
            .await?;
            let Some((first_seen, effective_at)) = row else {
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO people (email, first_seen, effective_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (email) DO UPDATE SET \
                 first_seen = CASE WHEN excluded.first_seen < people.first_seen \
                     THEN excluded.first_seen ELSE people.first_seen END, \
                 effective_at = CASE WHEN excluded.effective_at < people.effective_at \
                     THEN excluded.effective_at ELSE people.effective_at END",
            )
            .bind(rewrite.pseudonym())
            .bind(first_seen)
            .bind(effective_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        /// The newest sealed event, on a connection or in a transaction.
        async fn chain_head_in(
            conn: &mut <Db as sqlx::Database>::Connection,
        ) -> $crate::store::StoreResult<Option<$crate::evidence::chain::ChainHead>> {
            let head: Option<(i64, String)> = sqlx::query_as(
                "SELECT chain_seq, sha256 FROM job_events WHERE chain_seq IS NOT NULL \
                 ORDER BY chain_seq DESC LIMIT 1",
            )
            .fetch_optional(&mut *conn)
            .await?;
            Ok(head.map(
                |(chain_seq, sha256)| $crate::evidence::chain::ChainHead { chain_seq, sha256 },
            ))
        }
    };
}
pub(super) use chain_sql;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_in_an_email_are_literal() {
        assert_eq!(containing("a_b%c\\d@x.io"), "%a\\_b\\%c\\\\d@x.io%");
    }
}
