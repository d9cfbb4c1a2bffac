//! Group commit: one writer per process writes every decision (for SQLite
//! a thread with its own connection, for PostgreSQL a task). A request
//! hands its [`WriteSet`] over and waits; the writer takes whatever has
//! queued since its last commit (up to [`MAX_BATCH`]) and commits it in one
//! transaction ([`Store::commit_batch`]). Under light load a batch is one
//! request and nothing waits longer than its own commit; under heavy load
//! the queue fills while a commit runs, so commits grow instead of queueing
//! one behind another. No durability is traded: a request is answered only
//! after the transaction holding its rows has committed.

use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

use super::batch::{Committed, WriteSet, WriterConnection};
use super::sqlite_writer::SqliteWriter;
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

/// What commits a batch: a connection of the pool through sqlx
/// (PostgreSQL, or SQLite in memory), or the writer's own connection to a
/// SQLite file.
enum Committer {
    Pool {
        store: Store,
        held: Option<WriterConnection>,
    },
    Sqlite(SqliteWriter),
}

impl Committer {
    async fn commit(&mut self, sets: &[WriteSet]) -> Result<Vec<Committed>, StoreError> {
        match self {
            Self::Pool { store, held } => store.commit_batch_on(held, sets).await,
            Self::Sqlite(writer) => writer.commit_batch(sets),
        }
    }

    /// After a pause: the connection is let go, so the next batch gets a
    /// checked one (a restarted or silently dropped server).
    fn release(&mut self) {
        match self {
            Self::Pool { held, .. } => *held = None,
            Self::Sqlite(writer) => writer.release(),
        }
    }

    /// Whether requests about to hand theirs over should be let in first:
    /// on the runtime a task yields a scheduler turn to them; the SQLite
    /// thread gathers while it commits (the queue fills during its fsync).
    fn gathers(&self) -> bool {
        matches!(self, Self::Pool { .. })
    }
}

impl Writer {
    /// Starts the writer for `store`: for SQLite on a thread of its own
    /// with its own connection, for PostgreSQL as a task on the current
    /// Tokio runtime.
    pub(crate) fn start(store: Store, sizes: Histogram) -> Result<Self, StoreError> {
        let runtime =
            tokio::runtime::Handle::try_current().map_err(|_| StoreError::WriterStopped)?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        match &store {
            Store::Sqlite(pool) => {
                let pool = pool.clone();
                std::thread::Builder::new()
                    .name("store-writer".into())
                    .spawn(move || {
                        runtime.block_on(async move {
                            let committer = match database_file(&pool).await {
                                Some(file) => Committer::Sqlite(SqliteWriter::new(&file)),
                                None => Committer::Pool { store, held: None },
                            };
                            run(committer, queue, sizes).await;
                        });
                    })
                    .map_err(|_| StoreError::WriterStopped)?;
            }
            Store::Postgres(_) => {
                runtime.spawn(run(Committer::Pool { store, held: None }, queue, sizes));
            }
        }
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

/// The file the pool's SQLite database is in, as SQLite names it; `None`
/// for a database in memory, which is the pool's own (a second connection
/// would open another, empty one), so its writes go through the pool.
async fn database_file(pool: &sqlx::SqlitePool) -> Option<std::path::PathBuf> {
    let file: Result<String, _> =
        sqlx::query_scalar("SELECT file FROM pragma_database_list WHERE name = 'main'")
            .fetch_one(pool)
            .await;
    match file {
        Ok(file) if !file.is_empty() => Some(file.into()),
        Ok(_) => None,
        Err(e) => {
            tracing::error!(error = %e, "cannot tell where the database is; writing through the pool");
            None
        }
    }
}

async fn run(mut committer: Committer, mut queue: mpsc::Receiver<Job>, sizes: Histogram) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // One connection for every batch while it works (warm page cache, no
    // wait for the pool); a failed batch lets it go, and so does a pause of
    // [`IDLE_RELEASE`].
    loop {
        let waiting = std::time::Instant::now();
        if queue.recv_many(&mut batch, MAX_BATCH).await == 0 {
            break;
        }
        if waiting.elapsed() >= IDLE_RELEASE {
            committer.release();
        }
        // Let requests that are about to hand theirs over (woken on the
        // other workers, or queued behind this task) do so first: a larger
        // batch for the cost of a scheduler turn, never a timer.
        for _ in 0..GATHER_TURNS {
            if batch.len() >= MAX_BATCH || !committer.gathers() {
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
        match committer.commit(&sets).await {
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
                    let outcome = committer
                        .commit(std::slice::from_ref(&set))
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn sizes() -> Histogram {
        Histogram::new([1.0])
    }

    fn audit(id: String) -> WriteSet {
        WriteSet::audit(super::super::AuditEvent {
            id,
            action: "test".into(),
            ..Default::default()
        })
    }

    #[tokio::test]
    async fn an_in_memory_store_commits_through_its_pool() {
        let store = Store::open("sqlite::memory:").await.unwrap();
        let Store::Sqlite(pool) = &store else {
            panic!("not SQLite")
        };
        assert_eq!(database_file(pool).await, None);
        let writer = Writer::start(store.clone(), sizes()).unwrap();
        assert_eq!(
            writer.commit(audit("in-memory".into())).await.unwrap(),
            Committed::Written(1)
        );
    }

    #[tokio::test]
    async fn a_store_on_disk_commits_on_the_writer_thread() {
        let (dir, store, pool) = super::super::sqlite_store_on_disk().await;
        assert_eq!(
            database_file(&pool).await,
            Some(dir.path().join("s.db").canonicalize().unwrap())
        );
        let writer = Writer::start(store.clone(), sizes()).unwrap();
        for seq in 1..=3 {
            assert_eq!(
                writer
                    .commit(audit(format!("on-disk-{seq}")))
                    .await
                    .unwrap(),
                Committed::Written(seq)
            );
        }
    }
}
