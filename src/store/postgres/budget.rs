//! The fleet's rate budget on Postgres (README, "Running several replicas"): one row per API
//! family, read and written under its row lock, so that every replica's lease comes out of
//! one bucket. The bucket's arithmetic is `crate::atlassian::refill`, the same as each
//! process's own; the database supplies the clock every replica shares.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::PgPool;

use crate::atlassian::{FleetBudget, Lease, refill};
use crate::domain::ApiFamily;

pub(super) struct PgBudget {
    pub(super) pool: PgPool,
}

/// What the row holds, as seen at the database's `now()`.
struct Seen {
    tokens: f64,
    elapsed: f64,
    paused_for: f64,
}

/// The grant out of a bucket of `tokens` (already refilled): at most `want` whole tokens;
/// none while the family is held, and then how long until it may ask again.
fn grant(tokens: f64, paused_for: f64, want: u32, rate: f64) -> (u32, f64, Duration) {
    if paused_for > 0.0 {
        return (0, tokens, Duration::from_secs_f64(paused_for));
    }
    let granted = tokens.floor().clamp(0.0, f64::from(want));
    let left = tokens - granted;
    let retry_in = Duration::from_secs_f64(((1.0 - left) / rate).max(0.0));
    (granted as u32, left, retry_in)
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
        sqlx::query(
            "INSERT INTO rate_budget (family, tokens, refilled_at) VALUES ($1, $2, now()) \
             ON CONFLICT (family) DO NOTHING",
        )
        .bind(family.as_str())
        .bind(burst)
        .execute(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        let (tokens, elapsed, paused_for): (f64, f64, f64) = sqlx::query_as(
            "SELECT tokens, extract(epoch FROM now() - refilled_at)::float8, \
               greatest(extract(epoch FROM paused_until - now()), 0)::float8 \
             FROM rate_budget WHERE family = $1 FOR UPDATE",
        )
        .bind(family.as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| e.to_string())?;
        let seen = Seen {
            tokens,
            elapsed,
            paused_for,
        };
        let refilled = if seen.paused_for > 0.0 {
            seen.tokens
        } else {
            refill(seen.tokens, seen.elapsed, rate, burst)
        };
        let (granted, left, retry_in) = grant(refilled, seen.paused_for, want, rate);
        if seen.paused_for <= 0.0 {
            sqlx::query("UPDATE rate_budget SET tokens = $2, refilled_at = now() WHERE family = $1")
                .bind(family.as_str())
                .bind(left)
                .execute(&mut *tx)
                .await
                .map_err(|e| e.to_string())?;
        }
        tx.commit().await.map_err(|e| e.to_string())?;
        Ok(Lease { granted, retry_in })
    }

    /// Holds the family until `wait` from now, restarting with one token after it (as each
    /// process's own bucket does); a later hold is never shortened.
    async fn hold(&self, family: ApiFamily, wait: Duration) -> Result<(), String> {
        sqlx::query(
            "UPDATE rate_budget SET \
               paused_until = greatest(paused_until, now() + make_interval(secs => $2)), \
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

#[cfg(test)]
mod tests {
    use super::grant;
    use std::time::Duration;

    #[test]
    fn a_grant_is_whole_tokens_up_to_the_want() {
        assert_eq!(grant(3.7, 0.0, 2, 10.0).0, 2);
        let (granted, left, retry) = grant(0.5, 0.0, 2, 10.0);
        assert_eq!((granted, left), (0, 0.5));
        assert_eq!(retry, Duration::from_millis(50));
        let (granted, _, retry) = grant(5.0, 3.0, 2, 10.0);
        assert_eq!((granted, retry), (0, Duration::from_secs(3)), "held");
    }
}
