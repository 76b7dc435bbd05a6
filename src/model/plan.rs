//! What the reconciler decides for a batch and the store applies: a new state per row,
//! error-history entries, and a pause of sending. Plain data, no behaviour.

use std::time::Duration;

/// The new state of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowUpdate {
    Succeeded {
        id: i64,
        hubspot_id: String,
        /// Set when the id was adopted from a conflict rather than created now.
        note: Option<String>,
        /// An upsert's `new`: whether HubSpot created the record (else it updated one).
        new_record: Option<bool>,
    },
    /// An upsert's or update's record is done; its associations are next (back to
    /// `pending` at the `associations` step, due now).
    Recorded {
        id: i64,
        hubspot_id: String,
        new_record: Option<bool>,
    },
    /// The associations to these target types are done; others remain (back to
    /// `pending`, due now, no attempt counted).
    Associated { id: i64, done: Vec<String> },
    Failed {
        id: i64,
        error: String,
        count_attempt: bool,
    },
    /// Back to `pending`, sendable after `after`.
    Retry {
        id: i64,
        after: Duration,
        count_attempt: bool,
        error: Option<String>,
        /// Largest batch this row may go in next (halving to find a bad input).
        split_to: Option<usize>,
    },
    /// Parked as `unconfirmed`: never resent without an operator.
    Hold { id: i64, error: String },
    /// HubSpot may have it: back to `pending`, due after `after`, to be read back by
    /// `read_by` before it is sent again.
    Verify {
        id: i64,
        read_by: String,
        after: Duration,
        count_attempt: bool,
        error: Option<String>,
        split_to: Option<usize>,
    },
}

/// One entry for the error history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    pub trace_id: String,
    /// The attempt this error belongs to (attempts before it + 1).
    pub attempt: u32,
    pub status: u16,
    pub category: Option<String>,
    pub message: String,
    pub correlation_id: Option<String>,
    pub raw: String,
}

/// A pause of sending that the answer calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pause {
    /// All sending waits this long (429 windows, `Retry-After`).
    All { wait: Duration, reason: String },
    /// All sending waits until the daily limit resets.
    UntilDailyReset { reason: String },
    /// The token is refused: probe with single requests until it works.
    Unauthorized { reason: String },
    /// This object type may not be written (`kind`: "forbidden" for a 403, "rejected"
    /// when HubSpot refuses the request itself): probe it alone until it works.
    ObjectType { kind: &'static str, reason: String },
    /// The object type does not exist: every queued row of it fails with this error.
    FailObjectType { error: String },
    /// This lane of the object type (an upsert or update by one `idProperty`) cannot
    /// work as configured (HubSpot says the property is not unique): probe it alone
    /// until it works; other lanes go on.
    Lane { reason: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub updates: Vec<RowUpdate>,
    pub errors: Vec<ErrorRecord>,
    pub pause: Option<Pause>,
}

impl RowUpdate {
    /// The row it is for.
    pub fn id(&self) -> i64 {
        match self {
            Self::Succeeded { id, .. }
            | Self::Recorded { id, .. }
            | Self::Associated { id, .. }
            | Self::Failed { id, .. }
            | Self::Retry { id, .. }
            | Self::Hold { id, .. }
            | Self::Verify { id, .. } => *id,
        }
    }
}

impl Plan {
    /// Whether the plan decides the fate of each of `ids` exactly once and of nothing
    /// else, and gives no empty HubSpot id: what "nothing is lost" asks of a reconciler.
    /// The property tests and fuzz targets hold every plan to it.
    pub fn check_covers(&self, ids: &[i64]) -> Result<(), String> {
        let mut seen = std::collections::BTreeMap::<i64, usize>::new();
        for update in &self.updates {
            *seen.entry(update.id()).or_default() += 1;
            if let RowUpdate::Succeeded { hubspot_id, .. } | RowUpdate::Recorded { hubspot_id, .. } =
                update
                && hubspot_id.trim().is_empty()
            {
                return Err(format!("row {} succeeded with an empty id", update.id()));
            }
        }
        for id in ids {
            match seen.remove(id) {
                Some(1) => {}
                Some(n) => return Err(format!("row {id} has {n} updates")),
                None => return Err(format!("row {id} has no update")),
            }
        }
        match seen.keys().next() {
            Some(stray) => Err(format!("an update for row {stray}, not in the batch")),
            None => Ok(()),
        }
    }
}
