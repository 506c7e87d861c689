//! Group commit: requests made concurrently are written together by one writer task.
//!
//! The writer takes whatever is waiting (up to a limit) as one batch, writes it, answers
//! every request of it, and takes the next. An idle system thus writes each request at once,
//! with no added delay, and a busy one pays one commit for many requests. Used for
//! recording deliveries and job results, where the commit, not the rows, is what costs.

use std::future::Future;

use tokio::sync::{mpsc, oneshot};

/// A request on its way to the writer, and where its answer goes.
type Pending<T, R> = (T, oneshot::Sender<R>);

/// The writer stopped (its task panicked or the runtime is shutting down).
#[derive(Debug)]
pub struct Stopped;

/// Hands requests of type `T` to one writer task that answers each with an `R`.
pub struct Batcher<T, R> {
    queue: mpsc::Sender<Pending<T, R>>,
}

impl<T: Send + 'static, R: Send + 'static> Batcher<T, R> {
    /// Starts the writer. `write` gets each batch in arrival order and returns one answer
    /// per request, in the same order. At most `queued` requests wait; more wait to be
    /// queued. The writer ends once the `Batcher` is dropped and its queue is drained.
    pub fn spawn<F, Fut>(queued: usize, max_batch: usize, mut write: F) -> Self
    where
        F: FnMut(Vec<T>) -> Fut + Send + 'static,
        Fut: Future<Output = Vec<R>> + Send,
    {
        let (queue, mut pending) = mpsc::channel::<Pending<T, R>>(queued.max(1));
        tokio::spawn(async move {
            while let Some(first) = pending.recv().await {
                let mut batch = vec![first];
                while batch.len() < max_batch {
                    match pending.try_recv() {
                        Ok(next) => batch.push(next),
                        Err(_) => break,
                    }
                }
                let (items, replies): (Vec<T>, Vec<oneshot::Sender<R>>) = batch.into_iter().unzip();
                let answers = write(items);
                for (reply, answer) in replies.into_iter().zip(answers.await) {
                    // The requester may have gone away (e.g. its HTTP client hung up).
                    let _ = reply.send(answer);
                }
            }
        });
        Batcher { queue }
    }

    /// Queues one request and waits for its batch to be written.
    pub async fn submit(&self, item: T) -> Result<R, Stopped> {
        let (reply, answer) = oneshot::channel();
        self.queue.send((item, reply)).await.map_err(|_| Stopped)?;
        answer.await.map_err(|_| Stopped)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn concurrent_requests_share_batches_and_each_gets_its_own_answer() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let seen = sizes.clone();
        let batcher = Arc::new(Batcher::spawn(64, 8, move |items: Vec<u32>| {
            seen.lock().unwrap().push(items.len());
            async move {
                // A slow write, so that requests pile up behind it.
                tokio::time::sleep(Duration::from_millis(20)).await;
                items.into_iter().map(|i| i * 10).collect()
            }
        }));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..30u32 {
            let batcher = batcher.clone();
            tasks.spawn(async move { (i, batcher.submit(i).await.unwrap()) });
        }
        for (i, answer) in tasks.join_all().await {
            assert_eq!(answer, i * 10, "each request gets its own answer");
        }
        let sizes = sizes.lock().unwrap().clone();
        assert_eq!(sizes.iter().sum::<usize>(), 30);
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert!(sizes.len() < 30, "requests were batched: {sizes:?}");
    }

    #[tokio::test]
    async fn an_idle_writer_takes_a_single_request_at_once() {
        let batcher = Batcher::spawn(4, 8, |items: Vec<&'static str>| async move {
            items.into_iter().map(str::len).collect()
        });
        let answer = tokio::time::timeout(Duration::from_secs(1), batcher.submit("four"))
            .await
            .expect("no waiting for a batch to fill");
        assert_eq!(answer.unwrap(), 4);
    }
}
