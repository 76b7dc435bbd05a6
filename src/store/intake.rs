//! Rows that producers inserted with plain SQL arrive with `validated = 0` (false): the
//! daemon checks them once, then either stores the canonical form or marks them `failed`.

use async_trait::async_trait;

use super::StoreError;

/// A row that no one has validated yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnvalidatedRow {
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub properties: String,
    pub associations: String,
}

/// What validation decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Valid: store the canonical JSON texts (values as strings, HubSpot's shape).
    Accept {
        id: i64,
        properties: String,
        associations: String,
        /// What orders the writes to its record (see `NewWrite::order_key`).
        order_key: Option<String>,
        /// Some association points at a write by trace id: the write waits for it.
        references: bool,
    },
    /// Invalid: the row becomes `failed` with this `last_error`.
    Reject { id: i64, error: String },
}

/// Validating rows that producers inserted with SQL.
#[async_trait]
pub trait IntakeStore: Send + Sync {
    /// Up to `limit` unvalidated rows, oldest first.
    async fn unvalidated_rows(&self, limit: i64) -> Result<Vec<UnvalidatedRow>, StoreError>;

    /// Applies validation outcomes in one transaction. A row that someone else changed
    /// meanwhile (no longer `validated = 0`) is left alone. Accepted rows that point at
    /// writes wait for them, and writes waiting for a rejected row fail (see
    /// [`super::references`]). Returns the rows changed.
    async fn settle_validation(&self, outcomes: &[Validation]) -> Result<u64, StoreError>;
}
