//! How full the queue is (migration 0008): the count of writes not yet finished, kept by
//! triggers, the cap the daemon wrote at start, and whether the disk is short of space.

use async_trait::async_trait;

use super::StoreError;

/// One reading of the queue's state.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct QueueState {
    /// Writes pending, waiting or in flight.
    pub queued: i64,
    /// 0: no cap.
    pub max_queued: i64,
    /// Why new writes are refused beside the cap (the disk), if they are.
    pub full_reason: Option<String>,
}

/// The queue's count, cap and fullness.
#[async_trait]
pub trait QueueStore: Send + Sync {
    async fn queue_state(&self) -> Result<QueueState, StoreError>;

    /// At start: writes `queue.max_queued` where SQL producers' inserts are checked
    /// against it, and counts the writes not yet finished afresh, so a count that drifted
    /// (a producer who edited `queue_state` or dropped a trigger) heals at every start. On
    /// PostgreSQL the writes per state (`queue_depth`) are counted afresh too.
    async fn set_max_queued(&self, max: u64) -> Result<(), StoreError>;

    /// Records (or clears, with `None`) why new writes are refused; writes only on a change.
    async fn set_full_reason(&self, reason: Option<&str>) -> Result<(), StoreError>;
}
