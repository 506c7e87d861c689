//! The blast-radius guard: at most `max_actions_per_hour` successful mutating calls in the
//! last hour (or since the last resume, if shorter), counted in the store so the limit holds
//! across replicas. Reaching it pauses the worker (`blast_radius`) before the next call.
//!
//! Asking the store before every call would serialise all workers on two queries, so the
//! count is cached for up to a second and topped up locally: the estimate is the stored count,
//! plus every call reserved here since it was read, plus the calls still in flight. That
//! over-counts (a call can be both reserved-since and in flight), never under-counts this
//! process's calls, and whenever the estimate reaches the limit the store is asked again
//! before anything is refused. Other replicas' calls are seen within the refresh interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::{PauseReason, Store, StoreError};

/// How long a count read from the store is trusted.
const REFRESH: Duration = Duration::from_secs(1);

pub struct BlastRadius {
    limit: u64,
    window: Mutex<Window>,
    in_flight: AtomicU64,
}

#[derive(Default)]
struct Window {
    stored: u64,
    reserved_since: u64,
    read_at: Option<Instant>,
}

/// One mutating call counted while in flight. Keep it until the call's result is in the
/// store: released earlier, the call would be neither in flight nor counted for a moment.
pub struct Reservation<'a>(&'a AtomicU64);

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl BlastRadius {
    pub fn new(limit: u64) -> Self {
        BlastRadius {
            limit,
            window: Mutex::new(Window::default()),
            in_flight: AtomicU64::new(0),
        }
    }

    /// Reserves one mutating call, or pauses the worker and returns `None` when the limit is
    /// reached (or the worker is already paused).
    pub async fn reserve(&self, store: &dyn Store) -> Result<Option<Reservation<'_>>, StoreError> {
        let mut window = self.window.lock().await;
        let in_flight = self.in_flight.load(Ordering::SeqCst);
        let estimate = window.stored + window.reserved_since + in_flight;
        let stale = window.read_at.is_none_or(|at| at.elapsed() >= REFRESH);
        if stale || estimate >= self.limit {
            let state = store.worker_state().await?;
            if state.paused {
                return Ok(None);
            }
            let hour_ago = Utc::now() - chrono::Duration::hours(1);
            let since = state.resumed_at.map_or(hour_ago, |r| r.max(hour_ago));
            *window = Window {
                stored: store.count_done_since(since).await?,
                reserved_since: 0,
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
        window.reserved_since += 1;
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Ok(Some(Reservation(&self.in_flight)))
    }
}
