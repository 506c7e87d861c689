//! One token bucket per API family, shared by every clone of the client.
//!
//! Atlassian publishes no numeric limits, so the pace is configured (`requests_per_second`,
//! burst `max(1, ceil(rate))`) and a 429/503 that names a wait pauses the whole family: any
//! request sent before then would only lengthen the wait.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};

use crate::domain::ApiFamily;

/// The buckets of both families.
#[derive(Debug)]
pub(crate) struct Pacer {
    site: Bucket,
    admin: Bucket,
}

impl Pacer {
    /// `requests_per_second` must be positive and finite (checked by `Client::new`).
    pub(crate) fn new(requests_per_second: f64) -> Pacer {
        Pacer {
            site: Bucket::new(requests_per_second),
            admin: Bucket::new(requests_per_second),
        }
    }

    /// Waits until the family may send one more request.
    pub(crate) async fn acquire(&self, family: ApiFamily) {
        self.bucket(family).acquire().await;
    }

    /// Holds every request of the family until `until`.
    pub(crate) fn pause_until(&self, family: ApiFamily, until: Instant) {
        self.bucket(family).pause_until(until);
    }

    fn bucket(&self, family: ApiFamily) -> &Bucket {
        match family {
            ApiFamily::Site => &self.site,
            ApiFamily::Admin => &self.admin,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    /// Waiters queue here (tokio's mutex is fair), so a steady stream of new callers cannot
    /// starve one that has been waiting.
    turn: tokio::sync::Mutex<()>,
    /// Never held across an await: `pause_until` must get in while the head waiter sleeps.
    state: Mutex<BucketState>,
}

impl Bucket {
    fn new(rate: f64) -> Bucket {
        let now = Instant::now();
        let burst = rate.ceil().max(1.0);
        Bucket {
            turn: tokio::sync::Mutex::new(()),
            state: Mutex::new(BucketState {
                rate,
                burst,
                tokens: burst,
                refilled_at: now,
                paused_until: now,
            }),
        }
    }

    async fn acquire(&self) {
        let _turn = self.turn.lock().await;
        loop {
            let next_try = self.lock_state().try_take(Instant::now());
            match next_try {
                None => return,
                Some(at) => sleep_until(at).await,
            }
        }
    }

    fn pause_until(&self, until: Instant) {
        self.lock_state().pause_until(until);
    }

    /// The state is a handful of numbers updated in one step, so a panic elsewhere cannot
    /// leave it half-written: a poisoned lock is safe to reuse.
    fn lock_state(&self) -> std::sync::MutexGuard<'_, BucketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
struct BucketState {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    paused_until: Instant,
}

impl BucketState {
    /// Takes a token, or says when to try again.
    fn try_take(&mut self, now: Instant) -> Option<Instant> {
        if now < self.paused_until {
            return Some(self.paused_until);
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return None;
        }
        let missing = (1.0 - self.tokens) / self.rate;
        Some(now + Duration::from_secs_f64(missing))
    }

    fn refill(&mut self, now: Instant) {
        if now > self.refilled_at {
            let earned = (now - self.refilled_at).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
            self.refilled_at = now;
        }
    }

    /// After a pause the family restarts with a single token rather than a full burst: the
    /// server has just said we were too fast.
    fn pause_until(&mut self, until: Instant) {
        if until > self.paused_until {
            self.paused_until = until;
            self.tokens = 1.0;
            self.refilled_at = until;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    /// Tokio's timer has millisecond resolution, so virtual times land within a tick or two.
    #[track_caller]
    fn assert_near(actual: Duration, expected: Duration) {
        let tolerance = Duration::from_millis(5);
        assert!(
            actual + tolerance >= expected && actual <= expected + tolerance,
            "took {actual:?}, expected about {expected:?}"
        );
    }

    /// Takes `n` tokens one after the other and returns the elapsed (virtual) time.
    async fn time_to_take(pacer: &Pacer, family: ApiFamily, n: usize) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            pacer.acquire(family).await;
        }
        start.elapsed()
    }

    /// Spawns one acquire and reports how long after `start` it got its token.
    fn spawn_waiter(
        pacer: &Arc<Pacer>,
        family: ApiFamily,
        start: Instant,
    ) -> tokio::task::JoinHandle<Duration> {
        let pacer = pacer.clone();
        tokio::spawn(async move {
            pacer.acquire(family).await;
            start.elapsed()
        })
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_burst_goes_at_once() {
        let pacer = Pacer::new(5.0);
        assert_eq!(
            time_to_take(&pacer, ApiFamily::Site, 5).await,
            Duration::ZERO
        );
        assert_near(
            time_to_take(&pacer, ApiFamily::Site, 1).await,
            Duration::from_millis(200),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn fractional_rates_round_the_burst_up() {
        let pacer = Pacer::new(2.5);
        assert_eq!(
            time_to_take(&pacer, ApiFamily::Site, 3).await,
            Duration::ZERO
        );
        let slow = Pacer::new(0.5);
        assert_eq!(
            time_to_take(&slow, ApiFamily::Site, 1).await,
            Duration::ZERO
        );
        assert_near(
            time_to_take(&slow, ApiFamily::Site, 1).await,
            Duration::from_secs(2),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_burst_requests_follow_the_rate() {
        let pacer = Pacer::new(10.0);
        time_to_take(&pacer, ApiFamily::Admin, 10).await;
        assert_near(
            time_to_take(&pacer, ApiFamily::Admin, 20).await,
            Duration::from_secs(2),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_bucket() {
        let pacer = Arc::new(Pacer::new(4.0));
        let start = Instant::now();
        let waiters: Vec<_> = (0..12)
            .map(|_| spawn_waiter(&pacer, ApiFamily::Site, start))
            .collect();
        let mut last = Duration::ZERO;
        for waiter in waiters {
            last = last.max(waiter.await.unwrap());
        }
        assert_near(last, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_the_whole_family_but_not_the_other() {
        let pacer = Arc::new(Pacer::new(10.0));
        let start = Instant::now();
        pacer.pause_until(ApiFamily::Site, start + Duration::from_secs(30));

        let waiter = spawn_waiter(&pacer, ApiFamily::Site, start);
        assert_eq!(
            time_to_take(&pacer, ApiFamily::Admin, 3).await,
            Duration::ZERO
        );
        assert_near(waiter.await.unwrap(), Duration::from_secs(30));
        assert_near(
            time_to_take(&pacer, ApiFamily::Site, 1).await,
            Duration::from_millis(100),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_reaches_callers_already_waiting_for_a_token() {
        let pacer = Arc::new(Pacer::new(1.0));
        pacer.acquire(ApiFamily::Admin).await;
        let start = Instant::now();
        let waiter = spawn_waiter(&pacer, ApiFamily::Admin, start);
        tokio::task::yield_now().await;
        pacer.pause_until(ApiFamily::Admin, start + Duration::from_secs(10));
        assert_near(waiter.await.unwrap(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_pause_does_not_shorten_a_later_one() {
        let pacer = Pacer::new(10.0);
        let start = Instant::now();
        pacer.pause_until(ApiFamily::Site, start + Duration::from_secs(5));
        pacer.pause_until(ApiFamily::Site, start + Duration::from_secs(1));
        assert_near(
            time_to_take(&pacer, ApiFamily::Site, 1).await,
            Duration::from_secs(5),
        );
    }
}
