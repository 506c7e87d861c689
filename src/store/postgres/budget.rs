//! The fleet's rate budget on Postgres (README, "Running several replicas"): one row per API
//! family, read and written under its row lock, so that every replica's lease comes out of
//! one bucket. The bucket's arithmetic is `crate::atlassian::refill`, the same as each
//! process's own; the database supplies the clock every replica shares.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::atlassian::{FleetBudget, Lease, grant, refill};
use crate::domain::ApiFamily;

pub(super) struct PgBudget {
    pub(super) pool: PgPool,
}

#[async_trait]
impl FleetBudget for PgBudget {
    async fn lease(
        &self,
        family: ApiFamily,
        want: u32,
        rate: f64,
        burst: f64,
    ) -> Result<Lease, String> {
        let mut tx = self.pool.begin().await.map_err(|e| e.to_string())?;
        let read = "SELECT tokens, extract(epoch FROM now() - refilled_at)::float8, \
               coalesce(greatest(extract(epoch FROM paused_until - now()), 0), 0)::float8 \
             FROM rate_budget WHERE family = $1 FOR UPDATE";
        let row: Option<(f64, f64, f64)> = sqlx::query_as(read)
            .bind(family.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        let (tokens, elapsed, held_for) = match row {
            Some(row) => row,
            None => {
                // The family's first lease on this store: its bucket starts full. Another
                // replica may be adding it too; the read after waits for that one's row.
                sqlx::query(
                    "INSERT INTO rate_budget (family, tokens, refilled_at) VALUES ($1, $2, now()) \
                     ON CONFLICT (family) DO NOTHING",
                )
                .bind(family.as_str())
                .bind(burst)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
                sqlx::query_as(read)
                    .bind(family.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(|e| e.to_string())?
            }
        };
        let refilled = if held_for > 0.0 {
            tokens
        } else {
            refill(tokens, elapsed, rate, burst)
        };
        let (lease, left) = grant(refilled, held_for, want, rate);
        if held_for <= 0.0 {
            sqlx::query(
                "UPDATE rate_budget SET tokens = $2, refilled_at = now() WHERE family = $1",
            )
            .bind(family.as_str())
            .bind(left)
            .execute(&mut *tx)
            .await
            .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(lease)
    }

    /// Holds the family until `wait` from now, restarting with one token after it (as each
    /// process's own bucket does); a later hold is never shortened.
    async fn hold(&self, family: ApiFamily, wait: Duration) -> Result<(), String> {
        sqlx::query(
            "UPDATE rate_budget SET \
               paused_until = greatest(coalesce(paused_until, now()), now() + make_interval(secs => $2)), \
               tokens = least(tokens, 1), \
               refilled_at = greatest(refilled_at, now() + make_interval(secs => $2)) \
             WHERE family = $1",
        )
        .bind(family.as_str())
        .bind(wait.as_secs_f64())
        .execute(&self.pool)
        .await
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}
