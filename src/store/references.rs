//! Writes that wait for writes (issue 11). A write whose associations point at queued
//! writes by trace id is `waiting`, with one `waits_for` row per write it points at.
//! Whenever writes settle (succeed, fail, are discarded), the writes waiting for them are
//! looked up by trace id and decided by [`crate::model::references::resolve`], in the
//! same transaction as the change that settled them: a crash leaves either both or
//! neither. Those steps are part of the other families' statements (ingest, intake,
//! settle, ops); this trait holds the two that run on their own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The category of the error history entry a failed reference leaves.
pub const REFERENCE_CATEGORY: &str = "REFERENCE";

/// The waiting set's own sweeps.
#[async_trait]
pub trait ReferenceStore: Send + Sync {
    /// Fails the waiting writes that have pointed at a trace id not in the outbox since
    /// before `cutoff` (`references.wait_for_missing` ago, spelt `waited` in the error),
    /// and the writes that wait for them. Returns how many failed for want of one.
    async fn expire_missing_references(
        &self,
        cutoff: DateTime<Utc>,
        waited: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Decides every waiting write whose referenced writes have settled, by a scan of the
    /// waiting set (at start). Returns the writes that became due.
    async fn resolve_waiting(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}
