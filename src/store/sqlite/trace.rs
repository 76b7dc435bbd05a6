//! Whether each object type's trace property can be used, as the daemon found it: for
//! operators (`status`, `/metrics`), and so the answer survives a restart's log.

use crate::model::rate::Rule;
use crate::store::{StoreError, timestamp};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::trace::{TraceRow, TraceStore};

#[async_trait]
impl TraceStore for SqliteStore {
    async fn set_trace_state(
        &self,
        object_type: &str,
        property: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let state = if reason.is_some() {
            "unavailable"
        } else {
            "ready"
        };
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO trace_properties (object_type, property, state, reason, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (object_type) DO UPDATE SET property = ?2, state = ?3, reason = ?4, updated_at = ?5",
        )
        .bind(object_type)
        .bind(property)
        .bind(state)
        .bind(reason)
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn trace_states(&self) -> Result<Vec<TraceRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT object_type, property, state, reason FROM trace_properties ORDER BY object_type",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_request(
        &self,
        day: &str,
        _rate: Rule,
    ) -> Result<Option<crate::store::claim::SharedSlot>, StoreError> {
        let mut tx = self.begin_write().await?;
        super::pauses::count_request_in(&mut tx, day).await?;
        tx.commit().await?;
        Ok(None)
    }
}
