//! Storing accepted writes. One transaction holds a whole group of socket requests (group
//! commit): look up the trace ids that may already exist, insert the new rows in one
//! statement, commit once. The committer then makes durable once for every group
//! committed meanwhile ([`IngestStore::make_durable`]) before acknowledging any of them.

use async_trait::async_trait;

use super::StoreError;

/// A write already in the outbox under a trace id that a new request reuses.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExistingWrite {
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub properties: String,
    pub associations: String,
    /// The write was sent and purged; only its trace id is remembered.
    pub purged: bool,
}

/// A validated write ready to insert, in stored form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowToStore {
    pub trace_id: String,
    pub object_type: String,
    /// `create`, `upsert` or `update`.
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    /// What orders writes to one record (see `NewWrite::order_key`).
    pub order_key: Option<String>,
    /// JSON object text, property values as strings.
    pub properties: String,
    /// JSON array text in HubSpot's association shape.
    pub associations: String,
    /// Some association points at a write by trace id: the write waits for it.
    pub references: bool,
}

/// An open ingest transaction. Dropping it without [`IngestTx::commit`] rolls back.
#[async_trait]
pub trait IngestTx: Send {
    /// The stored writes whose trace id is among `trace_ids`, and the purged writes whose
    /// trace id is remembered (`purged`, the other fields empty).
    async fn find_existing(&mut self, trace_ids: &[&str])
    -> Result<Vec<ExistingWrite>, StoreError>;

    /// Inserts already-validated rows, in order, as `pending`. The rows travel as one JSON
    /// array parameter so the statement text is constant and a whole group is one
    /// statement, however many rows it has.
    async fn insert_validated(&mut self, rows: &[RowToStore]) -> Result<(), StoreError>;

    /// After [`IngestTx::insert_validated`]: the rows whose associations point at writes
    /// wait for them (or are decided at once), and a row that closes a reference cycle
    /// fails naming it (see [`super::references`]).
    async fn settle_references(&mut self, rows: &[RowToStore]) -> Result<(), StoreError>;

    /// Rolls back now: a dropped transaction's rollback may wait for the connection's
    /// next use, and its locks with it (producers would wait meanwhile).
    async fn rollback(self: Box<Self>) -> Result<(), StoreError>;

    /// Commits. The rows are visible at once and durable once
    /// [`IngestStore::make_durable`] returns.
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Storing a group of socket requests in one transaction.
#[async_trait]
pub trait IngestStore: Send + Sync {
    /// Opens an ingest transaction. Its commit is not durable until
    /// [`IngestStore::make_durable`] returns.
    async fn begin_ingest(&self) -> Result<Box<dyn IngestTx>, StoreError>;

    /// Makes every ingest commit so far durable: the committer calls it once for every
    /// group committed meanwhile, before acknowledging any of them (on SQLite, one fsync
    /// of the WAL; see `SqliteStore::sync_wal`).
    async fn make_durable(&self) -> Result<(), StoreError>;
}

/// `[[trace_id, object_type, {properties}, [associations], operation, id_property,
/// record_key, order_key], ...]`, with the stored JSON texts embedded as JSON (not as
/// strings), so the database's `->` hands them back as JSON.
pub(in crate::store) fn rows_as_json(rows: &[RowToStore]) -> String {
    let size: usize = rows
        .iter()
        .map(|r| {
            r.trace_id.len() + r.object_type.len() + r.properties.len() + r.associations.len() + 16
        })
        .sum();
    let mut out = String::with_capacity(size + 2);
    out.push('[');
    for (i, r) in rows.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push('[');
        out.push_str(&serde_json::to_string(&r.trace_id).expect("strings serialize"));
        out.push(',');
        out.push_str(&serde_json::to_string(&r.object_type).expect("strings serialize"));
        out.push(',');
        out.push_str(&r.properties);
        out.push(',');
        out.push_str(&r.associations);
        for text in [
            Some(r.operation.as_str()),
            r.id_property.as_deref(),
            r.record_key.as_deref(),
            r.order_key.as_deref(),
        ] {
            out.push(',');
            out.push_str(&serde_json::to_string(&text).expect("strings serialize"));
        }
        out.push(']');
    }
    out.push(']');
    out
}
