//! How full the queue is (migration 0008): the count of writes not yet finished, kept by
//! triggers, the cap the daemon wrote at start, and whether the disk is short of space.

use crate::store::StoreError;
use async_trait::async_trait;

use super::SqliteStore;
use crate::store::queue::{QueueState, QueueStore};

#[async_trait]
impl QueueStore for SqliteStore {
    async fn queue_state(&self) -> Result<QueueState, StoreError> {
        Ok(
            sqlx::query_as("SELECT queued, max_queued, full_reason FROM queue_state WHERE id = 1")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn set_max_queued(&self, max: u64) -> Result<(), StoreError> {
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

    async fn set_full_reason(&self, reason: Option<&str>) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE queue_state SET full_reason = ?1 WHERE full_reason IS NOT ?1")
            .bind(reason)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
