//! Group commit: one task per process writes every decision. A request
//! hands its [`WriteSet`] over and waits; the task takes whatever has
//! queued since its last commit (up to [`MAX_BATCH`]) and commits it in one
//! transaction ([`Store::commit_batch`]). Under light load a batch is one
//! request and nothing waits longer than its own commit; under heavy load
//! the queue fills while a commit runs, so commits grow instead of queueing
//! one behind another. No durability is traded: a request is answered only
//! after the transaction holding its rows has committed.

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::batch::{Committed, WriteSet, WriterConnection};
use super::{Store, StoreError};

/// The most write sets one transaction takes.
const MAX_BATCH: usize = 256;
/// Scheduler turns the writer yields for before committing what it has.
const GATHER_TURNS: usize = 2;
/// A pause after which the writer gives its connection back to the pool.
const IDLE_RELEASE: std::time::Duration = std::time::Duration::from_secs(10);
/// Requests waiting for the writer beyond this wait to hand theirs over.
const QUEUE: usize = 4096;

struct Job {
    set: WriteSet,
    reply: oneshot::Sender<Result<Committed, StoreError>>,
}

/// The handle requests commit through.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

fn stopped() -> StoreError {
    StoreError::WriterStopped
}

impl Writer {
    /// Starts the writer for `store` on the current Tokio runtime.
    pub(crate) fn start(store: Store, sizes: Histogram) -> Result<Self, StoreError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| StoreError::WriterStopped)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        runtime.spawn(run(store, queue, sizes));
        Ok(Self { jobs })
    }

    /// Commits `set` with whatever else is waiting; returns when it is
    /// committed (or failed).
    pub(crate) async fn commit(&self, set: WriteSet) -> Result<Committed, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { set, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(store: Store, mut queue: mpsc::Receiver<Job>, sizes: Histogram) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One connection for every batch while it works (warm page cache, no
    // wait for the pool); a failed batch lets it go, and so does a pause of
    // [`IDLE_RELEASE`]: the pool checks a connection it hands out, which a
    // held one would skip (a restarted or silently dropped server).
    let mut held: Option<WriterConnection> = None;
    loop {
        let waiting = std::time::Instant::now();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        if waiting.elapsed() >= IDLE_RELEASE {
            held = None;
        }
        // Let requests that are about to hand theirs over (woken on the
        // other workers, or queued behind this task) do so first: a larger
        // batch for the cost of a scheduler turn, never a timer.
        for _ in 0..GATHER_TURNS {
            if batch.len() >= MAX_BATCH {
                break;
            }
            tokio::task::yield_now().await;
            if queue.is_empty() {
                continue;
            }
            let room = MAX_BATCH - batch.len();
            queue.recv_many(&mut batch, room).await;
        }
        sizes.observe(batch.len() as f64);
        let (sets, replies): (Vec<WriteSet>, Vec<_>) =
            batch.drain(..).map(|job| (job.set, job.reply)).unzip();
        match store.commit_batch_on(&mut held, &sets).await {
            Ok(outcomes) => {
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(Ok(outcome));
                }
            }
            // One set's failure must not fail the others: each on its own,
            // unless the commit's outcome is unknown (then a retry could
            // find its own nonces spent and refuse what was granted).
            Err(e) if sets.len() > 1 && !matches!(e, StoreError::CommitUncertain(_)) => {
                tracing::warn!(error = %e, sets = sets.len(), "a batch failed; committing its sets one by one");
                for (set, reply) in sets.into_iter().zip(replies) {
                    let outcome = store
                        .commit_batch_on(&mut held, std::slice::from_ref(&set))
                        .await
                        .and_then(|mut o| o.pop().ok_or_else(stopped));
                    let _ = reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, sets = sets.len(), "a batch failed");
                let (reason, unavailable) = (e.to_string(), e.is_unavailable());
                for reply in replies {
                    let _ = reply.send(Err(StoreError::BatchFailed {
                        reason: reason.clone(),
                        unavailable,
                    }));
                }
            }
        }
    }
}
