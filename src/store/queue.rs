//! How full the queue is (migration 0008): the count of writes not yet finished, kept by
//! triggers, the cap the daemon wrote at start, and whether the disk is short of space.

use super::{Store, StoreError};

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

impl Store {
    pub async fn queue_state(&self) -> Result<QueueState, StoreError> {
        Ok(
            sqlx::query_as("SELECT queued, max_queued, full_reason FROM queue_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// At start: writes `queue.max_queued` where SQL producers' inserts are checked
    /// against it, and counts the writes not yet finished afresh, so a count that drifted
    /// (a producer who edited `queue_state` or dropped a trigger) heals at every start.
    pub async fn set_max_queued(&self, max: u64) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE queue_state SET max_queued = ?1,
                    queued = (SELECT count(*) FROM outbox WHERE state IN ('pending', 'waiting', 'in_flight'))",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Records (or clears, with `None`) why new writes are refused; writes only on a change.
    pub async fn set_full_reason(&self, reason: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE queue_state SET full_reason = ?1 WHERE full_reason IS NOT ?1")
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
