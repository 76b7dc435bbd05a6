//! A batch on its way out and back: the lane it belongs to, the rows claimed into it,
//! the same rows as the reconciler weighs them, and the line the batch leaves in the log.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Association, Operation};

/// Which kind of request a due write goes in; a batch holds one lane of one object type.
/// Stored (as the generated column `outbox.lane`) as `create`, `upsert:PROP`,
/// `update:` (by record id), `update:PROP`, or `associations` (an upsert's or update's
/// associations, created after its record).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lane {
    Create,
    Upsert(String),
    Update(Option<String>),
    Associations,
}

impl Lane {
    /// The lane as `outbox.lane` holds it.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.split_once(':') {
            None if text == "create" => Self::Create,
            None if text == "associations" => Self::Associations,
            Some(("upsert", p)) if !p.is_empty() => Self::Upsert(p.to_owned()),
            Some(("update", "")) => Self::Update(None),
            Some(("update", p)) => Self::Update(Some(p.to_owned())),
            _ => return None,
        })
    }

    /// The text `outbox.lane` holds.
    pub fn as_text(&self) -> String {
        match self {
            Self::Create => "create".into(),
            Self::Upsert(p) => format!("upsert:{p}"),
            Self::Update(p) => format!("update:{}", p.as_deref().unwrap_or("")),
            Self::Associations => "associations".into(),
        }
    }
}

/// A row claimed into a batch, as it will be sent: the JSON columns are kept as the stored
/// text, so the sender embeds them without parsing them again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub operation: Operation,
    /// An upsert's or update's `idProperty` and `id`.
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    /// Its record's id, once known (the associations step).
    pub hubspot_id: Option<String>,
    /// The target types whose associations are done (JSON array text), if any.
    pub associations_done: Option<String>,
    /// `true` when the write is at its associations step.
    pub associating: bool,
}

impl ClaimedRow {
    /// The lane the row was claimed in.
    pub fn lane(&self) -> Lane {
        if self.associating {
            return Lane::Associations;
        }
        match self.operation {
            Operation::Create => Lane::Create,
            Operation::Upsert => Lane::Upsert(self.id_property.clone().unwrap_or_default()),
            Operation::Update => Lane::Update(self.id_property.clone()),
        }
    }

    /// The target object types of its associations still to create (upserts and
    /// updates; their associations carry `toObjectType`), in the order they first appear.
    pub fn pending_targets(&self) -> Vec<String> {
        let associations: Vec<Association> =
            serde_json::from_str(&self.associations).unwrap_or_default();
        let done: Vec<String> = self
            .associations_done
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok())
            .unwrap_or_default();
        pending_targets(&associations, &done)
    }
}

/// The target types of `associations` not in `done`, each once, in order of appearance.
pub fn pending_targets(associations: &[Association], done: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for a in associations {
        if let Some(t) = &a.to_object_type
            && !done.iter().any(|d| d == t.as_str())
            && !out.iter().any(|o| o == t.as_str())
        {
            out.push(t.as_str().to_owned());
        }
    }
    out
}

/// One write of the batch as it was sent, as the reconciler weighs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
    pub operation: Operation,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub hubspot_id: Option<String>,
    pub associations: Vec<Association>,
    /// The target types whose associations are done.
    pub associations_done: Vec<String>,
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
            operation: row.operation,
            id_property: row.id_property.clone(),
            record_key: row.record_key.clone(),
            hubspot_id: row.hubspot_id.clone(),
            associations: serde_json::from_str(&row.associations).unwrap_or_default(),
            associations_done: row
                .associations_done
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default(),
        }
    }

    /// The target types of its associations still to create.
    pub fn pending_targets(&self) -> Vec<String> {
        pending_targets(&self.associations, &self.associations_done)
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
