//! Retention (issue 9): every [`PASS_EVERY`] (and once at start), succeeded and discarded
//! writes older than `retention.succeeded` / `retention.discarded` are purged with their
//! error history and batch log, and purged trace ids older than `retention.trace_ids` are
//! forgotten, each in batches of a few hundred rows so producers never wait long for the
//! write lock. Failed and unconfirmed writes are never purged automatically. The same
//! pass folds the writes' count changes (`OpsStore::fold_counts`, PostgreSQL).

use std::time::Duration;

use chrono::Utc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::RetentionConfig;
use crate::model::earlier;
use crate::store::ops::{PURGE_BATCH, Purgeable};
use crate::store::{Store, StoreError};

/// How often a retention pass runs.
pub const PASS_EVERY: Duration = Duration::from_secs(600);

/// Runs retention passes until `shutdown`.
pub async fn run(store: Store, config: RetentionConfig, shutdown: CancellationToken) {
    loop {
        // Daemons sharing the outbox purge it once, not once each.
        let result = match store.leads_maintenance().await {
            true => pass(&store, &config, &shutdown).await,
            false => Ok((0, 0)),
        };
        match result {
            Ok((0, 0)) => {}
            Ok((purged, forgotten)) => info!(purged, forgotten, "retention: old writes purged"),
            Err(e) => warn!(error = %e, "retention pass failed; trying again at the next"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PASS_EVERY) => {}
        }
    }
}

/// One pass: returns (writes purged, trace ids forgotten). Stops early at `shutdown`.
pub async fn pass(
    store: &Store,
    config: &RetentionConfig,
    shutdown: &CancellationToken,
) -> Result<(u64, u64), StoreError> {
    store.fold_counts().await?;
    let now = Utc::now();
    let mut purged = 0;
    for (state, kept) in [
        (Purgeable::Succeeded, config.succeeded),
        (Purgeable::Discarded, config.discarded),
    ] {
        if kept.is_zero() {
            continue;
        }
        let before = earlier(now, kept);
        loop {
            let n = store.purge_batch(state, before, PURGE_BATCH).await?;
            purged += n;
            if n < PURGE_BATCH as u64 || shutdown.is_cancelled() {
                break;
            }
            // Let producers and the dispatcher have the write lock between batches.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if state == Purgeable::Succeeded {
            while store.purge_batch_log(before, PURGE_BATCH).await? == PURGE_BATCH as u64
                && !shutdown.is_cancelled()
            {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    let mut forgotten = 0;
    if config.trace_ids.is_zero() {
        // "0s": remembered for ever.
        return Ok((purged, forgotten));
    }
    let before = earlier(now, config.trace_ids);
    loop {
        let n = store.forget_traces(before, PURGE_BATCH).await?;
        forgotten += n;
        if n < PURGE_BATCH as u64 || shutdown.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok((purged, forgotten))
}
