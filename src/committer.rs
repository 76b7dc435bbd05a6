//! Group commit: one task owns every socket write to the outbox. Requests queue on a
//! channel; the task takes all that are waiting, stores them in one transaction with one
//! fsync, and only then answers each. Durability per acknowledgement, throughput of a
//! batch.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, error};

use crate::ingest::{Accepted, Conflict, PreparedWrite, plan_group};
use crate::store::{Store, StoreError};

/// Most writes folded into one transaction. Bounds the time SQLite's write lock is held
/// (SQL producers wait on it) and the memory of one group.
const MAX_GROUP_WRITES: usize = 50_000;

/// How many requests may wait for the committer before senders wait in turn.
const QUEUE_DEPTH: usize = 1024;

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
    /// Answered after the commit (or its failure). The request handler holds the other end;
    /// if the client went away it is dropped, and the answer is discarded.
    reply: oneshot::Sender<Result<Vec<Accepted>, CommitError>>,
}

/// The handle request handlers submit through. Cheap to clone. When every handle is
/// dropped, the committer finishes the jobs already queued and exits.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer task. `stored` is notified after every commit that stored new
    /// rows, so whoever sends them can wake up at once.
    pub fn spawn(store: Store, stored: Arc<Notify>) -> (Self, JoinHandle<()>) {
        let (jobs, rx) = mpsc::channel(QUEUE_DEPTH);
        let task = tokio::spawn(run(store, rx, stored));
        (Self { jobs }, task)
    }

    /// Stores the writes of one request, all or nothing, and returns once they are durable.
    pub async fn submit(&self, writes: Vec<PreparedWrite>) -> Result<Vec<Accepted>, CommitError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { writes, reply })
            .await
            .map_err(|_| CommitError::ShuttingDown)?;
        answer.await.unwrap_or(Err(CommitError::ShuttingDown))
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>, stored: Arc<Notify>) {
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
        if commit_group(&store, group).await {
            stored.notify_waiters();
        }
    }
    debug!("committer stopped: no more requests can arrive");
}

/// Commits one group and answers each of its requests. Returns whether new rows were stored.
async fn commit_group(store: &Store, group: Vec<Job>) -> bool {
    let (writes, replies): (Vec<_>, Vec<_>) =
        group.into_iter().map(|j| (j.writes, j.reply)).unzip();
    match store_group(store, writes).await {
        Ok((outcomes, stored_any)) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(outcome.map_err(CommitError::Conflict));
            }
            stored_any
        }
        Err(e) => {
            error!(error = %e, requests = replies.len(), "group commit failed; nothing of it was stored");
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(CommitError::Store(e.clone())));
            }
            false
        }
    }
}

type Outcomes = Vec<Result<Vec<Accepted>, Vec<Conflict>>>;

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
    let existing = tx.find_existing(&explicit).await?;
    let plan = plan_group(writes, &existing);
    tx.insert_validated(&plan.rows).await?;
    tx.commit().await?;
    Ok((plan.outcomes, !plan.rows.is_empty()))
}
