//! Looking writes up, with their error history, for the socket API and the command line.

use crate::model::ErrorRecord;
use async_trait::async_trait;

use super::StoreError;

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

/// Looking writes up.
#[async_trait]
pub trait ReadStore: Send + Sync {
    /// The write stored under `trace_id`, if any.
    async fn get_write(&self, trace_id: &str) -> Result<Option<StoredWrite>, StoreError>;

    /// Writes, most recently changed first, optionally of one state and object type.
    async fn list_writes(
        &self,
        state: Option<&str>,
        object_type: Option<&str>,
        limit: i64,
    ) -> Result<Vec<StoredWrite>, StoreError>;

    /// How many rows the outbox holds in total.
    async fn count_writes(&self) -> Result<i64, StoreError>;

    /// The error history of one write, oldest first.
    async fn error_history(&self, trace_id: &str) -> Result<Vec<ErrorRecord>, StoreError>;
}

/// A row of `error_history` as stored.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct ErrorRow {
    pub(in crate::store) trace_id: String,
    pub(in crate::store) attempt: i64,
    pub(in crate::store) http_status: i64,
    pub(in crate::store) category: Option<String>,
    pub(in crate::store) message: String,
    pub(in crate::store) correlation_id: Option<String>,
    pub(in crate::store) raw: Option<String>,
}

impl From<ErrorRow> for ErrorRecord {
    fn from(r: ErrorRow) -> Self {
        Self {
            trace_id: r.trace_id,
            attempt: r.attempt.max(0) as u32,
            status: r.http_status.clamp(0, 999) as u16,
            category: r.category,
            message: r.message,
            correlation_id: r.correlation_id,
            raw: r.raw.unwrap_or_default(),
        }
    }
}
