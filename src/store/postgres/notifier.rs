//! Tells other replicas, through `NOTIFY`, that jobs may be due: after the commit, coalesced,
//! on a connection of its own.
//!
//! A `NOTIFY` inside the transaction that creates the jobs would be simpler, but Postgres
//! holds one database-wide lock from the moment a notifying transaction prepares to commit
//! until its commit record is flushed. Every accepted delivery would wait for every other
//! one's flush: measured with 32 clients, that alone cut accepts from 2,591/s to 1,626/s.
//! Here a commit only raises a flag; one task sends a `NOTIFY` for all the flags raised
//! while the previous one was in flight, on a connection with `synchronous_commit = off`
//! (a lost notification costs at most one poll interval, never a job).
//!
//! Notifications are at least `SPACING` apart. Each is a transaction of its own, with a
//! transaction id and a commit record: sent as soon as the previous one was answered, they
//! were one for every four deliveries accepted under load (3,078 for 12,000 in
//! `ingest_bench`), work the database did beside every batch. A replica that is woken up to
//! `SPACING` later still claims long before its next poll would have.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{ConnectOptions, Connection};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The least time from one notification to the next.
const SPACING: Duration = Duration::from_millis(25);

pub(super) struct Notifier {
    shared: Arc<Shared>,
}

struct Shared {
    pending: AtomicBool,
    signal: Notify,
}

impl Notifier {
    /// Starts the task that sends the notifications on `channel`; it ends with the last
    /// handle.
    pub(super) fn spawn(options: &PgConnectOptions, channel: &'static str) -> Notifier {
        let shared = Arc::new(Shared {
            pending: AtomicBool::new(false),
            signal: Notify::new(),
        });
        let options = options
            .clone()
            .options([("synchronous_commit", "off")])
            .application_name("offboard-notify");
        tokio::spawn(run(Arc::downgrade(&shared), options, channel));
        Notifier { shared }
    }

    /// Asks for a notification; returns at once. Call it after the commit it announces.
    pub(super) fn announce(&self) {
        self.shared.pending.store(true, Ordering::Release);
        self.shared.signal.notify_one();
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        // Wakes the task so it sees that the store is gone.
        self.shared.signal.notify_one();
    }
}

async fn run(shared: std::sync::Weak<Shared>, options: PgConnectOptions, channel: &'static str) {
    let mut conn: Option<PgConnection> = None;
    let mut backoff = Duration::from_millis(100);
    let mut last_sent: Option<Instant> = None;
    loop {
        let Some(signal) = shared.upgrade() else {
            return;
        };
        // `Notify` keeps one permit, so an announce between the check and the wait is kept.
        if !signal.pending.load(Ordering::Acquire) {
            signal.signal.notified().await;
            // Dropping our reference before looking again lets a dropped store end the task.
            continue;
        }
        drop(signal);
        if let Some(sent) = last_sent {
            // What is announced meanwhile goes with this notification.
            tokio::time::sleep_until(sent + SPACING).await;
        }
        let Some(signal) = shared.upgrade() else {
            return;
        };
        signal.pending.store(false, Ordering::Release);
        drop(signal);
        let sent = async {
            if conn.is_none() {
                conn = Some(options.connect().await?);
            }
            let c = conn.as_mut().expect("connected above");
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(channel)
                .execute(&mut *c)
                .await
                .map(|_| ())
        }
        .await;
        match sent {
            Ok(()) => {
                backoff = Duration::from_millis(100);
                last_sent = Some(Instant::now());
            }
            Err(e) => {
                // Other replicas fall back to polling; try again with the next announce.
                tracing::warn!(error = %e, retry_in = ?backoff, "cannot notify other replicas of new jobs");
                if let Some(c) = conn.take() {
                    let _ = c.close().await;
                }
                if let Some(signal) = shared.upgrade() {
                    signal.pending.store(true, Ordering::Release);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}
