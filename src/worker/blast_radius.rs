//! The blast-radius guard: at most `max_actions_per_hour` successful mutating calls in the
//! last hour (or since the last resume, if shorter), counted in the store so the limit holds
//! across replicas. Reaching it pauses the worker (`blast_radius`) before the next call.
//!
//! Asking the store before every call would serialise all workers on two queries, so the
//! count is cached for up to a second and topped up locally: the estimate is the stored count,
//! plus the calls that were in flight when it was read, plus every call reserved here since.
//! That over-counts (some of those calls fail, or are already in the count), never
//! under-counts this process's calls, and whenever the estimate reaches the limit the store is
//! asked again before anything is refused. Other replicas' calls are seen within the refresh
//! interval.
//!
//! The count that decides is exact for this process: it is taken while no finished call is
//! between "result written" and "reservation released", so each call is either in the store or
//! in flight, never both (which would pause too early) and never neither (too late).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{Mutex, RwLock};
use tokio::time::Instant;

use crate::domain::PauseReason;
use crate::store::{Store, StoreError};

/// How long a count read from the store is trusted.
const REFRESH: Duration = Duration::from_secs(1);

pub struct BlastRadius {
    limit: u64,
    window: Mutex<Window>,
    in_flight: AtomicU64,
    /// Shared while a finished call's result is written and its reservation released;
    /// exclusive while the store is counted.
    settling: RwLock<()>,
}

#[derive(Default)]
struct Window {
    stored: u64,
    /// Calls that may have reached the store since it was read: those in flight then, and
    /// those reserved since.
    unseen: u64,
    read_at: Option<Instant>,
}

/// One mutating call counted while in flight. Release it with [`Reservation::settle`], which
/// writes the call's result first.
pub struct Reservation<'a>(&'a BlastRadius);

impl Reservation<'_> {
    /// Runs `record` (the write of the call's result to the store), then releases the
    /// reservation, with no store count in between.
    pub async fn settle<T>(self, record: impl Future<Output = T>) -> T {
        let radius = self.0;
        let _settling = radius.settling.read().await;
        let recorded = record.await;
        drop(self);
        recorded
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BlastRadius {
    pub fn new(limit: u64) -> Self {
        BlastRadius {
            limit,
            window: Mutex::new(Window::default()),
            in_flight: AtomicU64::new(0),
            settling: RwLock::new(()),
        }
    }

    /// Reserves one mutating call, or pauses the worker and returns `None` when the limit is
    /// reached (or the worker is already paused).
    pub async fn reserve(&self, store: &dyn Store) -> Result<Option<Reservation<'_>>, StoreError> {
        let mut window = self.window.lock().await;
        let estimate = window.stored + window.unseen;
        let stale = window.read_at.is_none_or(|at| at.elapsed() >= REFRESH);
        if stale || estimate >= self.limit {
            let state = store.worker_state().await?;
            if state.paused {
                return Ok(None);
            }
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            let since = state.resumed_at.map_or(hour_ago, |r| r.max(hour_ago));
            let (stored, in_flight) = {
                let _counting = self.settling.write().await;
                let stored = store.count_done_since(since).await?;
                (stored, self.in_flight.load(Ordering::SeqCst))
            };
            *window = Window {
                stored,
                unseen: in_flight,
                read_at: Some(Instant::now()),
            };
            if window.stored + in_flight >= self.limit {
                tracing::warn!(
                    done = window.stored,
                    in_flight,
                    limit = self.limit,
                    "blast radius reached: pausing the worker"
                );
                store.pause(PauseReason::BlastRadius).await?;
                // The next reservation asks the store again, e.g. after a resume.
                window.read_at = None;
                return Ok(None);
            }
        }
        window.unseen += 1;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Reservation(self)))
    }
}
