//! Looking writes up, with their error history, on PostgreSQL.

use crate::model::ErrorRecord;
use crate::store::StoreError;
use async_trait::async_trait;

use super::PgStore;
use crate::store::read::{ErrorRow, ReadStore, StoredWrite};

/// Every column of [`StoredWrite`], as text where the SQLite store has text.
macro_rules! stored_columns {
    () => {
        "id, trace_id, object_type, operation, id_property, record_key,
         properties::text AS properties, associations::text AS associations, state, hubspot_id,
         new_record, step, associations_done::text AS associations_done,
         referenced_associations::text AS referenced_associations,
         (SELECT coalesce(jsonb_agg(trace_id), '[]')::text FROM waits_for WHERE write_id = outbox.id)
             AS waiting_for,
         attempts, last_error, validated, outbox_ts(next_attempt_at) AS next_attempt_at,
         outbox_ts(created_at) AS created_at, outbox_ts(updated_at) AS updated_at"
    };
}

#[async_trait]
impl ReadStore for PgStore {
    async fn get_write(&self, trace_id: &str) -> Result<Option<StoredWrite>, StoreError> {
        let row = sqlx::query_as(concat!(
            "SELECT ",
            stored_columns!(),
            " FROM outbox WHERE trace_id = $1"
        ))
        .bind(trace_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    async fn list_writes(
        &self,
        state: Option<&str>,
        object_type: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredWrite>, StoreError> {
        Ok(sqlx::query_as(concat!(
            "SELECT ",
            stored_columns!(),
            " FROM outbox WHERE ($1 IS NULL OR state = $1) AND ($2 IS NULL OR object_type = $2)
             ORDER BY updated_at DESC, id DESC LIMIT $3"
        ))
        .bind(state)
        .bind(object_type)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_writes(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn error_history(&self, trace_id: &str) -> Result<Vec<ErrorRecord>, StoreError> {
        let rows: Vec<ErrorRow> = sqlx::query_as(
            "SELECT trace_id, attempt, http_status, category, message, correlation_id, raw
             FROM error_history WHERE trace_id = $1 ORDER BY id",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(ErrorRecord::from).collect())
    }
}
