//! One token bucket per API family, shared by every clone of the client, and with a store
//! that Postgres replicas share, by the whole fleet (README, "Running several replicas").
//!
//! Atlassian publishes no numeric limits, so the pace is configured (`requests_per_second`,
//! burst `max(1, ceil(rate))`) and a 429/503 that names a wait pauses the whole family: any
//! request sent before then would only lengthen the wait.
//!
//! Lanes (README, "Lanes"): a request of an urgent job takes the next token before any
//! scheduled or bulk one waiting; a scheduled one before a bulk one; and while scheduled
//! requests wait, bulk ones take at most `bulk_share` of the tokens.
//!
//! The fleet's budget: with a [`FleetBudget`] the tokens this process may spend also come from
//! the store, in small leases of [`LEASE_SECONDS`] worth, so the replicas' combined rate stays
//! within the one bucket without a database write per request. A lease's unused tokens
//! expire with it: a replica that dies loses at most one lease.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::{Instant, sleep_until};

use crate::domain::{ApiFamily, Lane};

/// How long a lease of the fleet's tokens lasts, and so how many it asks for at a time:
/// this many seconds of the rate (at least one token).
pub const LEASE_SECONDS: f64 = 0.25;
/// How long the share of bulk requests is remembered (its half-life).
const SHARE_HALF_LIFE_SECONDS: f64 = 5.0;
/// The lane of a request made outside any job (the doctor, the inventory, a verification).
const NO_JOB: Lane = Lane::Scheduled;

tokio::task_local! {
    /// The lane of the job whose requests this task makes.
    static LANE: Lane;
}

/// Runs `work` with its Atlassian requests in `lane`.
pub async fn in_lane<F: Future>(lane: Lane, work: F) -> F::Output {
    LANE.scope(lane, work).await
}

/// The lane of the job this task works for, if any.
pub fn current_lane() -> Option<Lane> {
    LANE.try_with(|lane| *lane).ok()
}

/// A grant of the fleet's tokens.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lease {
    /// Tokens this process may spend within [`LEASE_SECONDS`].
    pub granted: u32,
    /// When nothing was granted: how long until a token is due, or the family's hold ends.
    pub retry_in: Duration,
}

/// The budget every replica on one store shares (Postgres). SQLite's single process has none:
/// its own buckets are the fleet's.
#[async_trait]
pub trait FleetBudget: Send + Sync {
    /// Takes up to `want` tokens from `family`'s bucket of `rate` and `burst`.
    async fn lease(
        &self,
        family: ApiFamily,
        want: u32,
        rate: f64,
        burst: f64,
    ) -> Result<Lease, String>;
    /// Holds `family` for every replica for `wait` (a 429's reset).
    async fn hold(&self, family: ApiFamily, wait: Duration) -> Result<(), String>;
}

/// Tokens earned over `elapsed_seconds` at `rate`, added to `tokens` and capped at `burst`:
/// the one refill rule of this process's buckets and of the fleet's.
pub fn refill(tokens: f64, elapsed_seconds: f64, rate: f64, burst: f64) -> f64 {
    (tokens + elapsed_seconds.max(0.0) * rate).min(burst)
}

/// A lease out of a fleet bucket holding `tokens` (already refilled): at most `want` whole
/// tokens, and what is left; none while the family is held for `held_for` seconds, or when
/// not one token is there, and then how long until `want` are.
pub fn grant(tokens: f64, held_for: f64, want: u32, rate: f64) -> (Lease, f64) {
    if held_for > 0.0 {
        let lease = Lease {
            granted: 0,
            retry_in: Duration::from_secs_f64(held_for),
        };
        return (lease, tokens);
    }
    let granted = tokens.floor().clamp(0.0, f64::from(want));
    let left = tokens - granted;
    let retry_in = Duration::from_secs_f64(((f64::from(want) - left) / rate).max(0.0));
    (
        Lease {
            granted: granted as u32,
            retry_in,
        },
        left,
    )
}

/// The burst of a rate: `max(1, ceil(rate))`.
pub fn burst_of(rate: f64) -> f64 {
    rate.ceil().max(1.0)
}

/// What this process's buckets show, for the console's header.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FamilyUse {
    pub family: ApiFamily,
    /// Requests per second recently, and the configured rate.
    pub recent_rate: f64,
    pub rate: f64,
    /// How long the family is held for a 429, if it is.
    pub paused_for: Option<Duration>,
}

/// The buckets of both families.
pub(crate) struct Pacer {
    site: Bucket,
    admin: Bucket,
    fleet: OnceLock<Arc<dyn FleetBudget>>,
}

impl std::fmt::Debug for Pacer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pacer")
            .field("shared", &self.fleet.get().is_some())
            .finish_non_exhaustive()
    }
}

impl Pacer {
    /// `requests_per_second` must be positive and finite (checked by `Client::new`);
    /// `bulk_share` in 0..=1.
    pub(crate) fn new(requests_per_second: f64, bulk_share: f64) -> Pacer {
        Pacer {
            site: Bucket::new(requests_per_second, bulk_share),
            admin: Bucket::new(requests_per_second, bulk_share),
            fleet: OnceLock::new(),
        }
    }

    /// The share of the tokens bulk requests may take while scheduled ones wait.
    pub(crate) fn set_bulk_share(&self, share: f64) {
        for bucket in [&self.site, &self.admin] {
            bucket.lock_state().bulk_share = share;
        }
    }

    /// From now on, tokens also come from the fleet's budget.
    pub(crate) fn share(&self, fleet: Arc<dyn FleetBudget>) {
        let _ = self.fleet.set(fleet);
    }

    /// Waits until the family may send one more request, in the lane of the job this task
    /// works for.
    pub(crate) async fn acquire(&self, family: ApiFamily) {
        let lane = current_lane().unwrap_or(NO_JOB);
        self.bucket(family)
            .acquire(family, lane, self.fleet.get())
            .await;
    }

    /// Holds every request of the family until `until`, in this process and, where the
    /// budget is shared, in every replica.
    pub(crate) fn pause_until(&self, family: ApiFamily, until: Instant) {
        self.bucket(family).pause_until(until);
        if let Some(fleet) = self.fleet.get() {
            let fleet = fleet.clone();
            let wait = until.saturating_duration_since(Instant::now());
            tokio::spawn(async move {
                if let Err(e) = fleet.hold(family, wait).await {
                    tracing::warn!(error = %e, ?family, "cannot hold the family for the fleet");
                }
            });
        }
    }

    /// What each family shows now.
    pub(crate) fn usage(&self) -> [FamilyUse; 2] {
        let now = Instant::now();
        [ApiFamily::Site, ApiFamily::Admin].map(|family| {
            let mut state = self.bucket(family).lock_state();
            state.decay(now);
            FamilyUse {
                family,
                recent_rate: state.used.iter().sum::<f64>() * std::f64::consts::LN_2
                    / SHARE_HALF_LIFE_SECONDS,
                rate: state.rate,
                paused_for: (state.paused_until > now).then(|| state.paused_until - now),
            }
        })
    }

    fn bucket(&self, family: ApiFamily) -> &Bucket {
        match family {
            ApiFamily::Site => &self.site,
            ApiFamily::Admin => &self.admin,
        }
    }
}

struct Bucket {
    /// Waiters queue here, one queue per lane (tokio's mutex is fair), so a steady stream of
    /// new callers cannot starve one that has been waiting in its lane.
    turns: [tokio::sync::Mutex<()>; 3],
    /// How many callers wait in each lane: a lane gives way to the ones before it.
    waiting: [AtomicUsize; 3],
    /// One lease is asked for at a time.
    leasing: tokio::sync::Mutex<()>,
    /// Never held across an await: `pause_until` must get in while the head waiter sleeps.
    state: Mutex<BucketState>,
}

/// What the head waiter of a lane does next.
enum Next {
    Take,
    WaitUntil(Instant),
    Lease,
}

/// Counts a waiter of a lane while it waits.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Bucket {
    fn new(rate: f64, bulk_share: f64) -> Bucket {
        let now = Instant::now();
        let burst = burst_of(rate);
        Bucket {
            turns: Default::default(),
            waiting: Default::default(),
            leasing: tokio::sync::Mutex::new(()),
            state: Mutex::new(BucketState {
                rate,
                burst,
                bulk_share,
                tokens: burst,
                refilled_at: now,
                paused_until: now,
                leased: 0.0,
                lease_until: now,
                lease_denied: false,
                used: [0.0; 3],
                used_at: now,
            }),
        }
    }

    async fn acquire(&self, family: ApiFamily, lane: Lane, fleet: Option<&Arc<dyn FleetBudget>>) {
        let index = lane_index(lane);
        self.waiting[index].fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting[index]);
        let _turn = self.turns[index].lock().await;
        loop {
            let waiting = self.waiting.each_ref().map(|w| w.load(Ordering::SeqCst));
            let next = self
                .lock_state()
                .next(Instant::now(), lane, waiting, fleet.is_some());
            match next {
                Next::Take => return,
                Next::WaitUntil(at) => sleep_until(at).await,
                Next::Lease => {
                    if let Some(fleet) = fleet {
                        self.lease(family, fleet).await;
                    }
                }
            }
        }
    }

    /// Asks the fleet for a lease, unless another lane's waiter just got one.
    async fn lease(&self, family: ApiFamily, fleet: &Arc<dyn FleetBudget>) {
        let _leasing = self.leasing.lock().await;
        let (rate, burst) = {
            let state = self.lock_state();
            if state.has_lease(Instant::now()) {
                return;
            }
            (state.rate, state.burst)
        };
        let want = (rate * LEASE_SECONDS).ceil().clamp(1.0, burst);
        // Tokens leased are spent a little later than the fleet's bucket counts them, and a
        // burst sent meanwhile would find Atlassian's bucket less full than ours: the fleet
        // keeps one lease of the burst in reserve for requests still on their way.
        let fleet_burst = (burst - want).max(want);
        match fleet.lease(family, want as u32, rate, fleet_burst).await {
            Ok(lease) => self.lock_state().leased(Instant::now(), lease),
            Err(e) => {
                tracing::warn!(error = %e, ?family, "cannot lease from the fleet's budget; retrying");
                let retry = Lease {
                    granted: 0,
                    retry_in: Duration::from_millis(200),
                };
                self.lock_state().leased(Instant::now(), retry);
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

fn lane_index(lane: Lane) -> usize {
    Lane::BY_PRIORITY
        .iter()
        .position(|l| *l == lane)
        .unwrap_or_default()
}

#[derive(Debug)]
struct BucketState {
    rate: f64,
    burst: f64,
    bulk_share: f64,
    tokens: f64,
    refilled_at: Instant,
    paused_until: Instant,
    /// Tokens of the fleet's lease still to spend, until `lease_until`; with nothing granted,
    /// `lease_until` is when to ask again.
    leased: f64,
    lease_until: Instant,
    lease_denied: bool,
    /// Tokens taken per lane, decaying with [`SHARE_HALF_LIFE_SECONDS`].
    used: [f64; 3],
    used_at: Instant,
}

impl BucketState {
    /// What the head waiter of `lane` does next, `waiting` callers per lane, with or without
    /// the fleet's budget.
    fn next(&mut self, now: Instant, lane: Lane, waiting: [usize; 3], fleet: bool) -> Next {
        if now < self.paused_until {
            return Next::WaitUntil(self.paused_until);
        }
        self.refill(now);
        let next_token = now + Duration::from_secs_f64((1.0 - self.tokens).max(0.0) / self.rate);
        let one_token = now + Duration::from_secs_f64(1.0 / self.rate);
        let index = lane_index(lane);
        if self.gives_way(now, lane, waiting) {
            return Next::WaitUntil(
                next_token
                    .max(now + Duration::from_millis(1))
                    .min(one_token),
            );
        }
        if self.tokens < 1.0 {
            return Next::WaitUntil(next_token);
        }
        if fleet {
            if self.lease_denied && now < self.lease_until {
                // Nothing was granted: ask again when the fleet said.
                return Next::WaitUntil(self.lease_until);
            }
            if now >= self.lease_until || self.leased < 1.0 {
                return Next::Lease;
            }
            self.leased -= 1.0;
        }
        self.tokens -= 1.0;
        self.decay(now);
        self.used[index] += 1.0;
        Next::Take
    }

    /// Whether a lease (or the fleet's "not yet") still stands.
    fn has_lease(&self, now: Instant) -> bool {
        now < self.lease_until && (self.lease_denied || self.leased >= 1.0)
    }

    fn leased(&mut self, now: Instant, lease: Lease) {
        self.lease_denied = lease.granted == 0;
        if lease.granted > 0 {
            self.leased = f64::from(lease.granted);
            self.lease_until = now + Duration::from_secs_f64(LEASE_SECONDS);
        } else {
            self.leased = 0.0;
            self.lease_until = now + lease.retry_in.max(Duration::from_millis(1));
        }
    }

    /// Whether the head waiter of `lane` lets another lane's take the next token: everyone
    /// gives way to an urgent request; while both wait, a bulk request goes as long as bulk
    /// has had less than its share of the tokens lately, and a scheduled one otherwise.
    fn gives_way(&mut self, now: Instant, lane: Lane, waiting: [usize; 3]) -> bool {
        let waits = |lane: Lane| waiting[lane_index(lane)] > 0;
        match lane {
            Lane::Urgent => false,
            Lane::Scheduled => {
                waits(Lane::Urgent) || (waits(Lane::Bulk) && !self.bulk_over_share(now))
            }
            Lane::Bulk => {
                waits(Lane::Urgent) || (waits(Lane::Scheduled) && self.bulk_over_share(now))
            }
        }
    }

    /// Whether bulk requests have had their share of the tokens lately.
    fn bulk_over_share(&mut self, now: Instant) -> bool {
        self.decay(now);
        let bulk = self.used[lane_index(Lane::Bulk)];
        let scheduled = self.used[lane_index(Lane::Scheduled)];
        bulk + scheduled > 0.0 && bulk / (bulk + scheduled) >= self.bulk_share
    }

    fn decay(&mut self, now: Instant) {
        if now > self.used_at {
            let factor = 0.5_f64.powf((now - self.used_at).as_secs_f64() / SHARE_HALF_LIFE_SECONDS);
            for used in &mut self.used {
                *used *= factor;
            }
            self.used_at = now;
        }
    }

    fn refill(&mut self, now: Instant) {
        if now > self.refilled_at {
            let elapsed = (now - self.refilled_at).as_secs_f64();
            self.tokens = refill(self.tokens, elapsed, self.rate, self.burst);
            self.refilled_at = now;
        }
    }

    /// After a pause the family restarts with a single token rather than a full burst: the
    /// server has just said we were too fast. A lease taken before it is spent no more.
    fn pause_until(&mut self, until: Instant) {
        if until > self.paused_until {
            self.paused_until = until;
            self.tokens = 1.0;
            self.refilled_at = until;
            self.leased = 0.0;
            self.lease_until = until;
            self.lease_denied = true;
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
        let pacer = Pacer::new(5.0, 0.5);
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
        let pacer = Pacer::new(2.5, 0.5);
        assert_eq!(
            time_to_take(&pacer, ApiFamily::Site, 3).await,
            Duration::ZERO
        );
        let slow = Pacer::new(0.5, 0.5);
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
        let pacer = Pacer::new(10.0, 0.5);
        time_to_take(&pacer, ApiFamily::Admin, 10).await;
        assert_near(
            time_to_take(&pacer, ApiFamily::Admin, 20).await,
            Duration::from_secs(2),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_the_bucket() {
        let pacer = Arc::new(Pacer::new(4.0, 0.5));
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
        let pacer = Arc::new(Pacer::new(10.0, 0.5));
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
        let pacer = Arc::new(Pacer::new(1.0, 0.5));
        pacer.acquire(ApiFamily::Admin).await;
        let start = Instant::now();
        let waiter = spawn_waiter(&pacer, ApiFamily::Admin, start);
        tokio::task::yield_now().await;
        pacer.pause_until(ApiFamily::Admin, start + Duration::from_secs(10));
        assert_near(waiter.await.unwrap(), Duration::from_secs(10));
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_pause_does_not_shorten_a_later_one() {
        let pacer = Pacer::new(10.0, 0.5);
        let start = Instant::now();
        pacer.pause_until(ApiFamily::Site, start + Duration::from_secs(5));
        pacer.pause_until(ApiFamily::Site, start + Duration::from_secs(1));
        assert_near(
            time_to_take(&pacer, ApiFamily::Site, 1).await,
            Duration::from_secs(5),
        );
    }

    /// An urgent request takes the next token before the bulk ones queued before it.
    #[tokio::test(start_paused = true)]
    async fn an_urgent_request_goes_before_waiting_bulk_ones() {
        let pacer = Arc::new(Pacer::new(2.0, 0.5));
        time_to_take(&pacer, ApiFamily::Site, 2).await;
        let start = Instant::now();
        let bulk: Vec<_> = (0..10)
            .map(|_| {
                let pacer = pacer.clone();
                tokio::spawn(in_lane(Lane::Bulk, async move {
                    pacer.acquire(ApiFamily::Site).await;
                    start.elapsed()
                }))
            })
            .collect();
        tokio::task::yield_now().await;
        let urgent = {
            let pacer = pacer.clone();
            tokio::spawn(in_lane(Lane::Urgent, async move {
                pacer.acquire(ApiFamily::Site).await;
                start.elapsed()
            }))
        };
        let urgent = urgent.await.unwrap();
        assert!(
            urgent <= Duration::from_millis(510),
            "urgent waited {urgent:?}"
        );
        let mut last = Duration::ZERO;
        for waiter in bulk {
            last = last.max(waiter.await.unwrap());
        }
        assert_near(last, Duration::from_millis(5500));
    }

    /// While scheduled requests wait, bulk ones get at most their share of the tokens.
    #[tokio::test(start_paused = true)]
    async fn bulk_takes_its_share_while_scheduled_requests_wait() {
        let pacer = Arc::new(Pacer::new(10.0, 0.25));
        time_to_take(&pacer, ApiFamily::Admin, 10).await;
        let counts = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut tasks = Vec::new();
        for (lane, slot) in [(Lane::Scheduled, 0), (Lane::Bulk, 1)] {
            for _ in 0..4 {
                let (pacer, counts) = (pacer.clone(), counts.clone());
                tasks.push(tokio::spawn(in_lane(lane, async move {
                    while Instant::now() < deadline {
                        pacer.acquire(ApiFamily::Admin).await;
                        counts[slot].fetch_add(1, Ordering::SeqCst);
                    }
                })));
            }
        }
        for task in tasks {
            task.await.unwrap();
        }
        let scheduled = counts[0].load(Ordering::SeqCst) as f64;
        let bulk = counts[1].load(Ordering::SeqCst) as f64;
        let share = bulk / (bulk + scheduled);
        assert!((0.15..=0.32).contains(&share), "bulk share {share}");
        assert!(
            bulk + scheduled <= 10.0 * 20.0 + 10.0,
            "{bulk} + {scheduled}"
        );
    }

    /// A bucket the test holds as the fleet's, with the same refill rule.
    struct OneBucket(std::sync::Mutex<(f64, Instant, u32)>);

    #[async_trait]
    impl FleetBudget for OneBucket {
        async fn lease(
            &self,
            _family: ApiFamily,
            want: u32,
            rate: f64,
            burst: f64,
        ) -> Result<Lease, String> {
            let mut bucket = self.0.lock().unwrap();
            let now = Instant::now();
            let tokens = refill(bucket.0, (now - bucket.1).as_secs_f64(), rate, burst);
            let (lease, left) = grant(tokens, 0.0, want, rate);
            *bucket = (left, now, bucket.2 + 1);
            Ok(lease)
        }

        async fn hold(&self, _family: ApiFamily, _wait: Duration) -> Result<(), String> {
            Ok(())
        }
    }

    /// A grant is whole tokens up to the want; none while held.
    #[test]
    fn a_grant_is_whole_tokens_up_to_the_want() {
        assert_eq!(grant(3.7, 0.0, 2, 10.0).0.granted, 2);
        let (lease, left) = grant(0.5, 0.0, 2, 10.0);
        assert_eq!((lease.granted, left), (0, 0.5));
        assert_eq!(lease.retry_in, Duration::from_millis(150));
        let (lease, _) = grant(5.0, 3.0, 2, 10.0);
        assert_eq!(
            (lease.granted, lease.retry_in),
            (0, Duration::from_secs(3)),
            "held"
        );
    }

    /// Two processes sharing one fleet bucket of 10/s send 10/s between them, not 20, and
    /// ask the fleet once per lease, not once per request.
    #[tokio::test(start_paused = true)]
    async fn two_processes_share_the_fleets_bucket() {
        let fleet = Arc::new(OneBucket(std::sync::Mutex::new((10.0, Instant::now(), 0))));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let pacer = Arc::new(Pacer::new(10.0, 0.5));
            pacer.share(fleet.clone());
            tasks.push(tokio::spawn(async move {
                time_to_take(&pacer, ApiFamily::Site, 60).await
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
        // 120 requests: the burst of 10, then 110 at 10/s; never faster, and a lease that
        // waits for its few tokens costs at most a fraction of a second at the end.
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(10_990) && took <= Duration::from_millis(11_500),
            "took {took:?}"
        );
        let leases = fleet.0.lock().unwrap().2;
        assert!(leases < 120, "{leases} leases for 120 requests");
    }
}
