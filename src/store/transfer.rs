//! Moving an outbox from one database to another (`hubspot-outbox export` and `import`,
//! issue 12): every write as it stands (state, HubSpot id, trace id, attempts, what it
//! waits for), its error history, the batch log, the purged trace ids that still make a
//! repeat a duplicate, and the requests each day has used.
//!
//! The rows here are the tables' columns as they are stored on SQLite (times as
//! `YYYY-MM-DDTHH:MM:SS.sssZ` text, JSON columns as their text), so both databases read
//! and write the same rows and the export file is the same whichever one wrote it. What
//! only the database itself means is left out: the row ids (the importing database gives
//! its own, in the exported order, and a waiting write names the write it waits in by
//! trace id), the generated `lane`, PostgreSQL's `claimed_by` (a write imported in flight
//! belongs to no running daemon, so it is resolved as after a crash: read before resent),
//! pauses and the trace property cache (the importing daemons find those out again).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreError;

/// One write, every column but the database's own.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WriteRow {
    /// The exporting database's id: orders the writes (and pages the export); the
    /// importing database gives its own ids in this order.
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub order_key: Option<String>,
    /// JSON object text.
    pub properties: String,
    /// JSON array text.
    pub associations: String,
    pub referenced_associations: Option<String>,
    pub associations_done: Option<String>,
    pub state: String,
    pub step: String,
    pub hubspot_id: Option<String>,
    pub new_record: Option<bool>,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub validated: bool,
    pub next_attempt_at: String,
    pub batch_id: Option<String>,
    pub split_to: Option<i64>,
    pub note: Option<String>,
    pub first_failed_at: Option<String>,
    pub sent_with: Option<String>,
    pub read_by: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A waiting write (`write_trace_id`) waits for the write with `trace_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct WaitRow {
    pub trace_id: String,
    pub write_trace_id: String,
    pub missing_since: Option<String>,
}

/// One error a write met.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct HistoryRow {
    /// The exporting database's id, for order only.
    pub id: i64,
    pub trace_id: String,
    pub attempt: i64,
    pub batch_id: Option<String>,
    pub at: String,
    pub http_status: i64,
    pub category: Option<String>,
    pub message: String,
    pub correlation_id: Option<String>,
    pub raw: Option<String>,
}

/// One request sent to HubSpot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct BatchLogRow {
    pub batch_id: String,
    pub object_type: String,
    pub size: i64,
    pub http_status: i64,
    pub outcome: String,
    pub duration_ms: i64,
    pub correlation_id: Option<String>,
    pub sent_at: String,
    pub finished_at: String,
}

/// A trace id whose write was sent and purged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct PurgedRow {
    pub trace_id: String,
    pub purged_at: String,
}

/// Requests sent on one day of the account's time zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow)]
pub struct UsageRow {
    pub day: String,
    pub requests: i64,
}

/// A read of the whole outbox as of one moment, page by page. Each page holds the rows
/// after the given key (the last page's last row), in key order; an empty page ends.
#[async_trait]
pub trait ExportTx: Send {
    async fn writes(&mut self, after_id: i64, limit: i64) -> Result<Vec<WriteRow>, StoreError>;
    /// What waits for what, all at once: a row exists only while its write waits, so
    /// they are few.
    async fn waits(&mut self) -> Result<Vec<WaitRow>, StoreError>;
    async fn history(&mut self, after_id: i64, limit: i64) -> Result<Vec<HistoryRow>, StoreError>;
    async fn batches(&mut self, after: &str, limit: i64) -> Result<Vec<BatchLogRow>, StoreError>;
    async fn purged(&mut self, after: &str, limit: i64) -> Result<Vec<PurgedRow>, StoreError>;
    async fn usage(&mut self) -> Result<Vec<UsageRow>, StoreError>;
}

/// One import: nothing of it is visible until [`ImportTx::commit`], and dropping it
/// without commit rolls it all back. Each `add_` call inserts one page.
#[async_trait]
pub trait ImportTx: Send {
    /// Records that the export `export_id` is being imported; `false` (nothing recorded)
    /// when it was imported into this outbox before.
    async fn record_import(
        &mut self,
        export_id: &str,
        exported_at: &str,
        source: &str,
    ) -> Result<bool, StoreError>;
    /// Inserts the writes as they stand, in order, unless a write with one of their trace
    /// ids is already in the outbox (or was purged from it): then nothing of the page is
    /// inserted and those trace ids are returned.
    async fn add_writes(&mut self, rows: &[WriteRow]) -> Result<Vec<String>, StoreError>;
    /// Both writes must have been added.
    async fn add_waits(&mut self, rows: &[WaitRow]) -> Result<(), StoreError>;
    async fn add_history(&mut self, rows: &[HistoryRow]) -> Result<(), StoreError>;
    /// A batch id already logged is kept as it is.
    async fn add_batches(&mut self, rows: &[BatchLogRow]) -> Result<(), StoreError>;
    /// A trace id already remembered keeps its time.
    async fn add_purged(&mut self, rows: &[PurgedRow]) -> Result<(), StoreError>;
    /// Added to what the day has already used here: one account, one count.
    async fn add_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// Opening an export or an import.
#[async_trait]
pub trait TransferStore: Send + Sync {
    /// A read that sees one moment of the outbox throughout, however long it pages.
    async fn begin_export(&self) -> Result<Box<dyn ExportTx>, StoreError>;
    /// A write transaction for an import; the rows it adds bypass the producers' insert
    /// guard and the queue's cap (the count still counts them).
    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError>;
}

/// The rows as one JSON array parameter, so a page is one statement with constant text.
pub(in crate::store) fn page_json<T: Serialize>(rows: &[T]) -> String {
    serde_json::to_string(rows).expect("rows serialize")
}

/// How many of `rows` are unfinished (pending, waiting or in flight): what the queue's
/// count gains by their import.
pub(in crate::store) fn unfinished(rows: &[WriteRow]) -> i64 {
    rows.iter()
        .filter(|r| matches!(r.state.as_str(), "pending" | "waiting" | "in_flight"))
        .count() as i64
}
