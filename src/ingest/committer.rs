//! Group commit: one task owns every socket write to the outbox. Requests queue on a
//! channel; the committer takes all that are waiting and stores them in one transaction.
//! A second task, the syncer, fsyncs the WAL once for every group committed since its last
//! fsync and only then answers their requests. So every acknowledgement is durable, and
//! the next group commits while the previous one is being fsync'd.

use std::sync::Arc;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use super::group::{Accepted, Conflict, PreparedWrite, plan_group};
use crate::store::{Store, StoreError};

/// Most writes folded into one transaction. Bounds the time SQLite's write lock is held
/// (SQL producers wait on it) and the memory of one group.
const MAX_GROUP_WRITES: usize = 50_000;

/// How many requests may wait for the committer before senders wait in turn.
const QUEUE_DEPTH: usize = 1024;

/// How many writes may wait for the committer, all requests together: two full groups.
/// A request past it waits for room (its client waits for the answer); the memory of the
/// queue is bounded by this, not by the number of clients. A request of more writes than
/// this (only possible with `limits.max_writes_per_request` set above it) waits for the
/// queue to be empty and then goes alone.
const MAX_QUEUED_WRITES: usize = 2 * MAX_GROUP_WRITES;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// The request reuses trace ids for different writes; nothing of it was stored.
    #[error("trace id reused for a different write")]
    Conflict(Vec<Conflict>),
    /// The outbox could not store the group; nothing of it was stored.
    #[error("the outbox could not store the writes: {0}")]
    Store(Arc<StoreError>),
    /// The daemon is shutting down and no longer stores writes.
    #[error("the daemon is shutting down")]
    ShuttingDown,
}

/// One request waiting to be committed.
struct Job {
    writes: Vec<PreparedWrite>,
    /// Its room in the queue, given back when its group is committed.
    room: OwnedSemaphorePermit,
    /// Answered after the commit (or its failure). The request handler holds the other end;
    /// if the client went away it is dropped, and the answer is discarded.
    reply: oneshot::Sender<Result<Vec<Accepted>, CommitError>>,
}

/// The handle request handlers submit through. Cheap to clone. When every handle is
/// dropped, the committer finishes the jobs already queued and exits.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    room: Arc<Semaphore>,
}

impl Committer {
    /// Starts the committer task. `stored` is notified after every commit that stored new
    /// rows, so whoever sends them can wake up at once.
    pub fn spawn(store: Store, stored: Arc<Notify>) -> (Self, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run(store, rx, stored));
        let room = Arc::new(Semaphore::new(MAX_QUEUED_WRITES));
        (Self { jobs, room }, task)
    }

    /// Stores the writes of one request, all or nothing, and returns once they are durable
    /// (committed and fsync'd).
    pub async fn submit(&self, writes: Vec<PreparedWrite>) -> Result<Vec<Accepted>, CommitError> {
        let (reply, answer) = oneshot::channel();
        // An empty group (a ping) takes one place too.
        let places = writes.len().clamp(1, MAX_QUEUED_WRITES) as u32;
        let room = self
            .room
            .clone()
            .acquire_many_owned(places)
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        self.jobs
            .send(Job {
                writes,
                room,
                reply,
            })
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        answer.await.unwrap_or(Err(CommitError::ShuttingDown))
    }

    /// Stores an empty group end to end (the queue, the committer, a write transaction,
    /// the syncer's fsync): `Ok` while socket writes can be stored. The watchdog asks.
    pub async fn ping(&self) -> Result<(), CommitError> {
        self.submit(Vec::new()).await.map(|_| ())
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, stored: Arc<Notify>) {
    // Committed groups waiting for their fsync. Unbounded is safe: the committer only
    // produces as fast as SQLite commits, and every entry is answered after the next fsync.
    let (committed, to_sync) = mpsc::unbounded_channel();
    let syncer = tokio::spawn(sync_loop(store.clone(), to_sync, stored));
    while let Some(first) = rx.recv().await {
        let mut size = first.writes.len();
        let mut group = vec![first];
        while size < MAX_GROUP_WRITES {
            match rx.try_recv() {
                Ok(job) => {
                    size += job.writes.len();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        if let Some(done) = commit_group(&store, group).await {
            // The syncer lives until this sender is dropped below.
            let _ = committed.send(done);
        }
    }
    drop(committed);
    let _ = syncer.await;
    debug!("committer stopped: no more requests can arrive");
}

/// A committed group whose answers wait for the fsync.
struct Committed {
    answers: Vec<(Reply, Outcome)>,
    stored_rows: bool,
}

type Reply = oneshot::Sender<Result<Vec<Accepted>, CommitError>>;

/// Commits one group. On success its answers go to the syncer; on failure every request
/// is answered with the error here (nothing of the group was stored).
async fn commit_group(store: &Store, group: Vec<Job>) -> Option<Committed> {
    let mut writes = Vec::with_capacity(group.len());
    let mut replies = Vec::with_capacity(group.len());
    // The group's room in the queue is given back once it is stored (or refused).
    let mut rooms = Vec::with_capacity(group.len());
    for job in group {
        writes.push(job.writes);
        replies.push(job.reply);
        rooms.push(job.room);
    }
    let stored = store_group(store, writes).await;
    drop(rooms);
    match stored {
        Ok((outcomes, stored_rows)) => Some(Committed {
            answers: replies.into_iter().zip(outcomes).collect(),
            stored_rows,
        }),
        Err(e) => {
            error!(error = %e, requests = replies.len(), "group commit failed; nothing of it was stored");
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(CommitError::Store(e.clone())));
            }
            None
        }
    }
}

/// Fsyncs once for everything committed so far, then answers it.
async fn sync_loop(
    store: Store,
    mut to_sync: mpsc::UnboundedReceiver<Committed>,
    stored: Arc<Notify>,
) {
    while let Some(first) = to_sync.recv().await {
        let mut batch = vec![first];
        while let Ok(more) = to_sync.try_recv() {
            batch.push(more);
        }
        match store.make_durable().await {
            Ok(()) => {
                let stored_rows = batch.iter().any(|c| c.stored_rows);
                for (reply, outcome) in batch.into_iter().flat_map(|c| c.answers) {
                    let _ = reply.send(outcome.map_err(CommitError::Conflict));
                }
                if stored_rows {
                    stored.notify_waiters();
                }
            }
            Err(e) => {
                // The rows are committed but may not survive a power loss: the producer
                // must not take them as acknowledged. A retry with the same trace ids is
                // answered as duplicates once the disk works again.
                error!(error = %e, "fsync of the outbox failed; requests answered 503");
                let e = Arc::new(e);
                for (reply, _) in batch.into_iter().flat_map(|c| c.answers) {
                    let _ = reply.send(Err(CommitError::Store(e.clone())));
                }
            }
        }
    }
}

/// One request's fate: its writes' results, or the conflicts that refused it.
type Outcome = Result<Vec<Accepted>, Vec<Conflict>>;
type Outcomes = Vec<Outcome>;

async fn store_group(
    store: &Store,
    writes: Vec<Vec<PreparedWrite>>,
) -> Result<(Outcomes, bool), StoreError> {
    let mut tx = store.begin_ingest().await?;
    let explicit: Vec<&str> = writes
        .iter()
        .flatten()
        .filter(|w| w.explicit_id)
        .map(|w| w.row.trace_id.as_str())
        .collect();
    let existing = match tx.find_existing(&explicit).await {
        Ok(existing) => existing,
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    let plan = plan_group(writes, &existing);
    // A failed insert (a full disk) is rolled back at once, releasing the write lock.
    let stored = match tx.insert_validated(&plan.rows).await {
        Ok(()) => tx.settle_references(&plan.rows).await,
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        let _ = tx.rollback().await;
        return Err(e);
    }
    tx.commit().await?;
    Ok((plan.outcomes, !plan.rows.is_empty()))
}
