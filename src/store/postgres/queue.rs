//! How full the queue is, on PostgreSQL: the count is `queue_count.queued` plus the
//! changes the statement triggers appended to `queue_changes` since the last fold (see
//! migration 0001), so producers' transactions never wait on a counter row. A daemon
//! reading the state folds those changes in, in one statement.

use async_trait::async_trait;

use super::PgStore;
use crate::store::StoreError;
use crate::store::queue::{QueueState, QueueStore};

#[async_trait]
impl QueueStore for PgStore {
    async fn queue_state(&self) -> Result<QueueState, StoreError> {
        if self.owner.is_none() {
            // A command reads the sum and changes nothing (its role may only read).
            return Ok(sqlx::query_as(
                "SELECT queued, max_queued, full_reason FROM queue_state WHERE id = 1",
            )
            .fetch_one(&self.pool)
            .await?);
        }
        // One statement, one snapshot: the changes deleted are exactly the ones added.
        Ok(sqlx::query_as(
            "WITH folded AS (DELETE FROM queue_changes RETURNING delta)
             UPDATE queue_count SET queued = queued + (SELECT coalesce(sum(delta), 0) FROM folded)::bigint
             WHERE id = 1
             RETURNING queued, max_queued, full_reason",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn set_max_queued(&self, max: u64) -> Result<(), StoreError> {
        // At every start: the writes per state are counted afresh too (see `counts`).
        self.recount_writes().await?;
        // Counted afresh and the pending changes dropped in one statement (one snapshot),
        // so a count that drifted heals at every start.
        sqlx::query(
            "WITH folded AS (DELETE FROM queue_changes RETURNING delta)
             UPDATE queue_count SET max_queued = $1,
                    queued = (SELECT count(*) FROM outbox WHERE state IN ('pending', 'waiting', 'in_flight'))
                             + 0 * (SELECT count(*) FROM folded)
             WHERE id = 1",
        )
        .bind(i64::try_from(max).unwrap_or(i64::MAX))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn set_full_reason(&self, reason: Option<&str>) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE queue_count SET full_reason = $1 WHERE id = 1 AND full_reason IS DISTINCT FROM $1",
        )
        .bind(reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
