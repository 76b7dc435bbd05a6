//! A batch on its way out and back: the rows claimed into it, the same rows as the
//! reconciler weighs them, and the line the batch leaves in the log.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A row claimed into a batch, as it will be sent: the JSON columns are kept as the stored
/// text, so the sender embeds them without parsing them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedRow {
    pub id: i64,
    pub trace_id: String,
    pub properties: String,
    pub associations: String,
    pub attempts: i64,
    pub split_to: Option<i64>,
    /// When the write first failed transiently (stored text), if it has.
    pub first_failed_at: Option<String>,
    /// Set when the row is to be read back by this property rather than created.
    pub read_by: Option<String>,
    /// The trace property its last create carried, if any.
    pub sent_with: Option<String>,
    /// The error it last met, if any.
    pub last_error: Option<String>,
}

/// One write of the batch as it was sent, as the reconciler weighs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub id: i64,
    pub trace_id: String,
    /// Attempts counted before this one.
    pub attempts: u32,
    /// When the write first failed transiently, if it has.
    pub first_failed_at: Option<DateTime<Utc>>,
    pub properties: BTreeMap<String, String>,
    /// The largest batch the row was allowed in (set after an unexplained conflict).
    pub split_to: Option<i64>,
    /// The trace property its last create carried (its value: the trace id), if any.
    pub sent_with: Option<String>,
    /// The error it last met, if any.
    pub last_error: Option<String>,
}

impl BatchRow {
    /// The reconciler's view of a claimed row. Stored properties that are not a map of
    /// strings (impossible past validation) are weighed as none.
    pub fn from_claimed(row: &ClaimedRow) -> Self {
        Self {
            id: row.id,
            trace_id: row.trace_id.clone(),
            attempts: row.attempts.max(0) as u32,
            first_failed_at: row.first_failed_at.as_deref().and_then(|t| t.parse().ok()),
            properties: serde_json::from_str(&row.properties).unwrap_or_default(),
            split_to: row.split_to,
            sent_with: row.sent_with.clone(),
            last_error: row.last_error.clone(),
        }
    }
}

impl BatchRow {
    /// The value this write is read back by with `read_by`: its trace id when `read_by`
    /// is the trace property it was sent with (the create put the trace id there, whatever
    /// the producer's value), else its own value of that property, else its trace id.
    pub fn read_value(&self, read_by: &str) -> &str {
        if self.sent_with.as_deref() == Some(read_by) {
            return &self.trace_id;
        }
        self.properties
            .get(read_by)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
            .unwrap_or(&self.trace_id)
    }
}

/// One line of the batch log: what was sent, what came back, how long it took.
#[derive(Debug, Clone)]
pub struct BatchLogEntry {
    pub batch_id: String,
    pub object_type: String,
    pub size: usize,
    pub http_status: u16,
    pub outcome: String,
    pub duration: Duration,
    pub correlation_id: Option<String>,
    pub sent_at: DateTime<Utc>,
}
