//! Settling a batch: a reconciler plan applied to its rows in one short transaction, with
//! the error history and the batch-log line; and failing every queued write of an object
//! type HubSpot does not know.

use crate::model::{BatchLogEntry, Plan};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Applying what the reconciler decided.
#[async_trait]
pub trait SettleStore: Send + Sync {
    /// Applies a reconciler plan for `batch_id` in one transaction, with its error history
    /// and its batch-log line (none for a batch that was never sent); retry times count
    /// from `now`. A row no longer `in_flight` in this batch (an operator
    /// changed it meanwhile) is left alone; the count of such rows is returned.
    async fn settle_batch(
        &self,
        batch_id: &str,
        plan: &Plan,
        log: Option<&BatchLogEntry>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// The object type does not exist in HubSpot: every queued row of it fails.
    async fn fail_object_type(
        &self,
        object_type: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;
}
