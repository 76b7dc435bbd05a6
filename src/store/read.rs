//! Looking writes up, with their error history, for the socket API and the command line.

use super::{Store, StoreError};
use crate::model::ErrorRecord;

/// A write as stored, every public column.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredWrite {
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub properties: String,
    pub associations: String,
    pub state: String,
    pub hubspot_id: Option<String>,
    /// An upsert's: whether HubSpot created the record (else it updated one).
    pub new_record: Option<bool>,
    /// `record`, or `associations` once an upsert's or update's record is done.
    pub step: String,
    /// The target types whose associations are created (a JSON array), if any.
    pub associations_done: Option<String>,
    /// The associations as written, when one points at a write by trace id (then
    /// `associations` holds them with HubSpot ids once resolved).
    pub referenced_associations: Option<String>,
    /// The trace ids a waiting write still waits for (a JSON array; `[]` when none).
    pub waiting_for: String,
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
            "SELECT id, trace_id, object_type, operation, id_property, record_key, properties,
                    associations, state, hubspot_id, new_record, step, associations_done,
                    referenced_associations,
                    (SELECT json_group_array(trace_id) FROM waits_for WHERE write_id = outbox.id)
                        AS waiting_for,
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
            "SELECT id, trace_id, object_type, operation, id_property, record_key, properties,
                    associations, state, hubspot_id, new_record, step, associations_done,
                    referenced_associations,
                    (SELECT json_group_array(trace_id) FROM waits_for WHERE write_id = outbox.id)
                        AS waiting_for,
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

    /// The error history of one write, oldest first.
    pub async fn error_history(&self, trace_id: &str) -> Result<Vec<ErrorRecord>, StoreError> {
        let rows: Vec<ErrorRow> = sqlx::query_as(
            "SELECT trace_id, attempt, http_status, category, message, correlation_id, raw
             FROM error_history WHERE trace_id = ?1 ORDER BY id",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ErrorRecord {
                trace_id: r.trace_id,
                attempt: r.attempt.max(0) as u32,
                status: r.http_status.clamp(0, 999) as u16,
                category: r.category,
                message: r.message,
                correlation_id: r.correlation_id,
                raw: r.raw.unwrap_or_default(),
            })
            .collect())
    }
}

/// A row of `error_history` as stored.
#[derive(sqlx::FromRow)]
struct ErrorRow {
    trace_id: String,
    attempt: i64,
    http_status: i64,
    category: Option<String>,
    message: String,
    correlation_id: Option<String>,
    raw: Option<String>,
}
