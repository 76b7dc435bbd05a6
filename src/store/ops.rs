//! What operators ask of the outbox and do to it: counts, failed writes, putting writes
//! back in the queue, giving them up, and retention. Every change is one short
//! transaction, safe while the daemon runs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use super::audit::Actor;
use super::browse::WriteQuery;

/// Writes per object type and state.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DepthRow {
    pub object_type: String,
    pub state: String,
    pub writes: i64,
}

/// One failed write, as the `failed_writes` view shows it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedRow {
    #[serde(rename = "objectWriteTraceId")]
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    /// An upsert's or update's `id` (the record it names).
    pub record_key: Option<String>,
    pub attempts: i64,
    pub category: Option<String>,
    pub message: Option<String>,
    pub correlation_id: Option<String>,
    pub failed_at: String,
}

/// Which writes an operator command is about.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub object_type: Option<String>,
    pub category: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub limit: Option<i64>,
}

/// How wide the buckets of [`OpsStore::sent_by`] are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Minute,
    Hour,
}

impl Bucket {
    /// How many characters of a stored time (`2026-12-04T21:07:...`) name the bucket.
    pub fn prefix_len(self) -> i64 {
        match self {
            Self::Minute => 16,
            Self::Hour => 13,
        }
    }
}

/// Requests and writes sent in one bucket of time: `bucket` is the start of a stored time
/// cut to its minute (`2026-12-04T21:07`) or hour (`2026-12-04T21`), UTC.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SentIn {
    pub bucket: String,
    pub requests: i64,
    pub writes: i64,
}

/// Requests and writes sent since some time, from the batch log.
#[derive(Debug, Clone, Copy, Default, sqlx::FromRow, serde::Serialize)]
pub struct Sent {
    pub requests: i64,
    pub writes: i64,
}

/// The set of writes `retry` and `discard` act on.
#[derive(Debug, Clone)]
pub enum Selection {
    TraceIds(Vec<String>),
    Failed(Filter),
    Unconfirmed(Filter),
    /// Every failed or unconfirmed write the dashboard's filter shows (its page and limit
    /// ignored): what the dashboard's "retry/discard all matching" acts on.
    Matching(WriteQuery),
}

impl Selection {
    /// The selection in words, for the audit log.
    pub fn describe(&self) -> String {
        let filter = |state: &str, f: &Filter| {
            let mut parts = vec![format!("state={state}")];
            parts.extend(f.object_type.as_ref().map(|t| format!("type={t}")));
            parts.extend(f.category.as_ref().map(|c| format!("category={c}")));
            parts.extend(f.since.map(|t| format!("since={}", super::timestamp(t))));
            parts.extend(f.limit.map(|l| format!("limit={l}")));
            parts.join(" ")
        };
        match self {
            Self::TraceIds(ids) => {
                const SHOWN: usize = 20;
                let mut text = ids[..ids.len().min(SHOWN)].join(" ");
                if ids.len() > SHOWN {
                    text.push_str(&format!(" and {} more", ids.len() - SHOWN));
                }
                text
            }
            Self::Failed(f) => filter("failed", f),
            Self::Unconfirmed(f) => filter("unconfirmed", f),
            Self::Matching(q) => {
                let mut parts = vec![format!(
                    "state={}",
                    q.state.as_deref().unwrap_or("failed|unconfirmed")
                )];
                parts.extend(q.object_type.as_ref().map(|t| format!("type={t}")));
                parts.extend(q.category.as_ref().map(|c| format!("category={c}")));
                parts.extend(q.since.map(|t| format!("since={}", super::timestamp(t))));
                parts.extend(q.until.map(|t| format!("until={}", super::timestamp(t))));
                parts.extend(q.text.as_ref().map(|t| format!("text={t:?}")));
                parts.join(" ")
            }
        }
    }
}

/// Rows one purge transaction deletes at most: a few milliseconds of the write lock.
pub const PURGE_BATCH: usize = 500;

/// The states whose writes may be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purgeable {
    Succeeded,
    Discarded,
}

impl Purgeable {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Discarded => "discarded",
        }
    }
}

/// What operators ask of the outbox and change in it.
#[async_trait]
pub trait OpsStore: Send + Sync {
    /// Writes per object type and state.
    async fn queue_depth(&self) -> Result<Vec<DepthRow>, StoreError>;

    /// When the oldest pending write was created.
    async fn oldest_pending(&self) -> Result<Option<String>, StoreError>;

    /// Requests sent and writes they carried since `since`.
    async fn sent_since(&self, since: DateTime<Utc>) -> Result<Sent, StoreError>;

    /// Requests and writes sent since `since`, by minute or hour, oldest first; buckets
    /// with nothing sent are left out (the dashboard's charts).
    async fn sent_by(
        &self,
        since: DateTime<Utc>,
        bucket: Bucket,
    ) -> Result<Vec<SentIn>, StoreError>;

    /// Failed writes matching `filter`, newest first.
    async fn failed_writes(&self, filter: &Filter) -> Result<Vec<FailedRow>, StoreError>;

    /// How many writes `selection` holds for `retry` (what its `--dry-run` reports).
    async fn count_selection(&self, selection: &Selection) -> Result<u64, StoreError>;

    /// How many writes `selection` holds for `discard` (what its `--dry-run` reports):
    /// by trace id, waiting writes too.
    async fn count_discard(&self, selection: &Selection) -> Result<u64, StoreError>;

    /// Puts the selected `failed` or `unconfirmed` writes back to `pending`, attempts reset.
    /// They are marked unvalidated, so the intake checks them again before anything is
    /// sent: a row a producer inserted with SQL that failed validation fails again with
    /// its reason instead of reaching HubSpot as it is. A write whose references were never
    /// resolved (one it pointed at failed) still holds them, and waits for them again; one
    /// whose references were resolved keeps the HubSpot ids they were resolved to.
    /// The change and its audit line (by `by`) are one transaction.
    async fn retry_writes(&self, selection: &Selection, by: &Actor) -> Result<u64, StoreError>;

    /// Marks the selected `failed` or `unconfirmed` writes `discarded`: given up, kept.
    /// Named by trace id, a `waiting` write may be discarded too (the writes waiting for
    /// it then fail, naming it).
    /// The change and its audit line (by `by`) are one transaction.
    async fn discard_writes(&self, selection: &Selection, by: &Actor) -> Result<u64, StoreError>;

    /// Replaces a `failed` or `unconfirmed` write's properties with `properties` and its
    /// record key with `record_key` (already validated and canonical) and puts it back to
    /// `pending`, from its first step. It is marked unvalidated, so the intake checks it
    /// again and works out its order key before it is sent. Only while the write is as
    /// it was read (its `updated_at` still `seen_at`): an edit made from an older reading
    /// never overwrites a newer change. Returns whether it changed; when it did, the
    /// audit line (by `by`, `what` was changed) is in the same transaction.
    async fn edit_and_retry(
        &self,
        trace_id: &str,
        properties: &str,
        record_key: Option<&str>,
        seen_at: &str,
        by: &Actor,
        what: &str,
    ) -> Result<bool, StoreError>;

    /// How many writes in `state` were last changed before `before`.
    async fn count_purgeable(
        &self,
        state: Purgeable,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Deletes `state` writes last changed before `before`, with their error history, and
    /// remembers their trace ids (a producer retrying one gets "duplicate"), in batches
    /// of [`PURGE_BATCH`] rows, each its own short transaction so producers are never held
    /// for long. A succeeded purge also deletes the batch log from before `before`.
    /// Returns the writes deleted.
    async fn purge(&self, state: Purgeable, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let n = self.purge_batch(state, before, PURGE_BATCH).await?;
            total += n;
            if n < PURGE_BATCH as u64 {
                break;
            }
            tokio::task::yield_now().await;
        }
        if state == Purgeable::Succeeded {
            while self.purge_batch_log(before, PURGE_BATCH).await? == PURGE_BATCH as u64 {
                tokio::task::yield_now().await;
            }
        }
        Ok(total)
    }

    /// Folds the changes to the writes' counts and to the queue's count that the outbox's
    /// triggers left for later into the counts (PostgreSQL; on SQLite the triggers keep
    /// the counts themselves).
    /// Run with retention, so the changes never pile up when nobody looks at the counts.
    async fn fold_counts(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// One batch of [`OpsStore::purge`]: at most `limit` writes.
    async fn purge_batch(
        &self,
        state: Purgeable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError>;

    /// Deletes at most `limit` batch-log lines sent before `before`.
    async fn purge_batch_log(&self, before: DateTime<Utc>, limit: usize)
    -> Result<u64, StoreError>;

    /// Forgets at most `limit` purged trace ids remembered since before `before`.
    async fn forget_traces(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError>;
}
