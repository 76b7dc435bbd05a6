//! The queue cap (issue 9): new writes are refused while the queue holds
//! `queue.max_queued` writes not yet finished, or while the database's filesystem has less
//! than `queue.min_free_disk` free. The socket checks before it stores a request (all or
//! nothing); SQL producers are refused by the database itself (migration 0008), which
//! reads the cap and the disk's state that this file's monitor keeps there. Writes already
//! accepted keep flowing.
//!
//! The cap is checked against the count before a request is stored, so requests stored at
//! the same moment may pass it by their own size; it bounds the queue, not to the write.

use std::path::Path;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::QueueConfig;
use crate::model::capacity::{disk_reason, refusal};
use crate::runtime::disk::free_bytes;
use crate::store::{Store, StoreError};

/// Whether `incoming` writes may be stored now, reading the count and the disk.
pub async fn check(
    store: &Store,
    config: &QueueConfig,
    database: &Path,
    incoming: u64,
) -> Result<Option<String>, StoreError> {
    let state = store.queue_state().await?;
    let disk = match config.min_free_disk {
        0 => None,
        min => free_bytes(database)
            .ok()
            .and_then(|free| disk_reason(free, min)),
    };
    Ok(refusal(
        state.queued,
        state.max_queued,
        incoming,
        disk.as_deref(),
    ))
}

/// Keeps the disk's state where SQL producers' inserts see it: every `interval`, records
/// (or clears) the reason new writes are refused for lack of space. Logs each change.
pub async fn monitor(
    store: Store,
    config: QueueConfig,
    database: std::path::PathBuf,
    interval: Duration,
    shutdown: CancellationToken,
) {
    // What the database holds: written at start and on every change only (each write
    // takes SQLite's write lock and an fsync).
    let mut stored: Option<Option<String>> = None;
    loop {
        let last = stored.clone().flatten();
        let reason = match config.min_free_disk {
            0 => None,
            min => match free_bytes(&database) {
                Ok(free) => disk_reason(free, min),
                Err(e) => {
                    warn!(error = %e, "cannot read the free space of the database's filesystem");
                    last.clone()
                }
            },
        };
        if stored.as_ref() != Some(&reason) {
            match &reason {
                Some(r) => warn!(reason = %r, "new writes are refused until space is freed"),
                None if last.is_some() => {
                    info!("the database's filesystem has room again; new writes are accepted")
                }
                None => {}
            }
            match store.set_full_reason(reason.as_deref()).await {
                Ok(()) => stored = Some(reason),
                Err(e) => warn!(error = %e, "recording the disk's state for SQL producers failed"),
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(interval) => {}
        }
    }
}
