//! Looking writes up, for the socket API and the command line.

use super::{Store, StoreError};

/// A write as stored, every public column.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredWrite {
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub properties: String,
    pub associations: String,
    pub state: String,
    pub hubspot_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub validated: bool,
    pub next_attempt_at: String,
    pub created_at: String,
    pub updated_at: String,
}

impl Store {
    /// The write stored under `trace_id`, if any.
    pub async fn get_write(&self, trace_id: &str) -> Result<Option<StoredWrite>, StoreError> {
        let row = sqlx::query_as(
            "SELECT id, trace_id, object_type, properties, associations, state, hubspot_id,
                    attempts, last_error, validated, next_attempt_at, created_at, updated_at
             FROM outbox WHERE trace_id = ?1",
        )
        .bind(trace_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row)
    }

    /// Writes, most recently changed first, optionally of one state and object type.
    pub async fn list_writes(
        &self,
        state: Option<&str>,
        object_type: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredWrite>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, properties, associations, state, hubspot_id,
                    attempts, last_error, validated, next_attempt_at, created_at, updated_at
             FROM outbox WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR object_type = ?2)
             ORDER BY updated_at DESC, id DESC LIMIT ?3",
        )
        .bind(state)
        .bind(object_type)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// How many rows the outbox holds in total.
    pub async fn count_writes(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM outbox")
            .fetch_one(&self.pool)
            .await?)
    }
}
