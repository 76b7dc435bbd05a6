//! Claiming work: which object types have due rows, and a batch of them claimed into
//! `in_flight` in one short transaction, never held across an HTTP call; and the rows a
//! crash left in flight, for recovery at start.

use crate::model::rate::Rule;
use crate::model::{ClaimedRow, Operation};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Picks which of a claim's candidates go, by index (see [`ClaimStore::claim_batch`]).
pub type Chooser<'a> = dyn for<'r> Fn(&'r [ClaimedRow]) -> Vec<usize> + Send + Sync + 'a;

/// What to claim: a batch of one lane of one object type.
#[derive(Debug, Clone, Copy)]
pub struct Claim<'a> {
    pub object_type: &'a str,
    /// `outbox.lane` (see `model::Lane`).
    pub lane: &'a str,
    /// How many candidates to read for `choose`.
    pub look_ahead: usize,
    pub now: DateTime<Utc>,
    pub batch_id: &'a str,
    /// The day of the account's time zone the request is counted against.
    pub day: &'a str,
    /// The trace property a create batch will carry (stored as `sent_with`).
    pub sent_with: Option<&'a str>,
    /// The type's trace property: an upsert or update naming a record by it (its value a
    /// create's trace id) waits for that create to finish.
    pub trace_property: Option<&'a str>,
    /// HubSpot's burst limit in force: where daemons share the outbox, the claim takes
    /// its request's slot in the budget they share (see [`Claimed::shared_slot`]).
    pub rate: Rule,
}

/// What a claim took.
#[derive(Debug, Clone, Default)]
pub struct Claimed {
    /// The rows, in the order chosen; empty when nothing was chosen (and nothing changed).
    pub rows: Vec<ClaimedRow>,
    /// Where daemons share one rate budget (PostgreSQL): the request's slot in it, taken
    /// in the claim's transaction. `None`: this daemon's own limiter is the whole budget.
    pub shared_slot: Option<SharedSlot>,
}

/// A departure taken in the rate budget daemons share.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedSlot {
    /// Its entry in the budget's ledger.
    pub id: i64,
    /// How long from when it was taken until it.
    pub departs_in: std::time::Duration,
}

/// A row left `in_flight`, with the batch that claimed it.
#[derive(Debug, Clone)]
pub struct InFlightRow {
    pub batch_id: String,
    pub object_type: String,
    /// The trace property its create carried, if any.
    pub sent_with: Option<String>,
    pub row: ClaimedRow,
}

/// A lane of an object type with due rows: how many, and since when the oldest has been
/// due.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueType {
    pub object_type: String,
    pub lane: String,
    pub count: i64,
    pub oldest_due_at: String,
}

/// Finding due work and claiming it.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Lanes of object types with rows due at `now`, each with its oldest due time and
    /// how many are due, counted up to `cap` (the scheduler only asks whether a full batch
    /// is waiting). Called every scheduler tick: it must not cost in proportion to the
    /// backlog.
    async fn due_types(&self, now: DateTime<Utc>, cap: usize) -> Result<Vec<DueType>, StoreError>;

    /// The earliest time a pending row becomes due (for sleeping until then).
    async fn next_due_at(&self) -> Result<Option<String>, StoreError>;

    /// Claims a batch of one lane of one object type. In the create lane, rows to be read
    /// back come first: when any is due, up to `look_ahead` of them (oldest first, grouped
    /// by the property they are read by) are the candidates; else up to `look_ahead` due
    /// rows of the lane. A row waits while an earlier write to the same record (its
    /// `order_key`, or for an upsert or update by the trace property, the create with that
    /// trace id) is pending, waiting or in flight, so writes to one record go one at a time, in
    /// the order they came. `choose` picks which candidates go (unique values, split caps,
    /// one read-back property or association target per batch); those are marked
    /// `in_flight` under `batch_id` and one request is counted against `day`.
    async fn claim_batch(
        &self,
        claim: &Claim<'_>,
        choose: &Chooser<'_>,
    ) -> Result<Claimed, StoreError>;

    /// Where daemons share one rate budget: how long from now until its next free slot,
    /// without taking it (a tick does not claim rows it could not send soon). `None`:
    /// this daemon's own limiter is the whole budget.
    async fn next_departure(&self, rate: Rule) -> Result<Option<std::time::Duration>, StoreError>;

    /// A request that could not leave at its shared slot `missed` (it woke late) gives it
    /// up and takes the next one: the others' slots were placed around the moment it
    /// was due, and leaving later could put one request too many in some window.
    async fn retake_departure(
        &self,
        missed: i64,
        rate: Rule,
    ) -> Result<Option<SharedSlot>, StoreError>;

    /// Rows a crash or kill left `in_flight`, with their batch and object type, for the
    /// ambiguity rules.
    async fn in_flight_rows(&self) -> Result<Vec<InFlightRow>, StoreError>;
}

/// A claimed row as the claim queries read it; handed out as [`ClaimedRow`].
#[derive(Debug, Clone, sqlx::FromRow)]
pub(in crate::store) struct ClaimedRecord {
    pub(in crate::store) id: i64,
    pub(in crate::store) trace_id: String,
    pub(in crate::store) properties: String,
    pub(in crate::store) associations: String,
    pub(in crate::store) attempts: i64,
    pub(in crate::store) split_to: Option<i64>,
    pub(in crate::store) first_failed_at: Option<String>,
    pub(in crate::store) read_by: Option<String>,
    pub(in crate::store) sent_with: Option<String>,
    pub(in crate::store) last_error: Option<String>,
    pub(in crate::store) operation: String,
    pub(in crate::store) id_property: Option<String>,
    pub(in crate::store) record_key: Option<String>,
    pub(in crate::store) hubspot_id: Option<String>,
    pub(in crate::store) associations_done: Option<String>,
    pub(in crate::store) step: String,
}

impl From<ClaimedRecord> for ClaimedRow {
    fn from(r: ClaimedRecord) -> Self {
        Self {
            id: r.id,
            trace_id: r.trace_id,
            properties: r.properties,
            associations: r.associations,
            attempts: r.attempts,
            split_to: r.split_to,
            first_failed_at: r.first_failed_at,
            read_by: r.read_by,
            sent_with: r.sent_with,
            last_error: r.last_error,
            // The table's CHECK allows nothing else.
            operation: Operation::parse(&r.operation).unwrap_or_default(),
            id_property: r.id_property,
            record_key: r.record_key,
            hubspot_id: r.hubspot_id,
            associations_done: r.associations_done,
            associating: r.step == "associations",
        }
    }
}

/// An in-flight row as the recovery query reads it.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct InFlightRecord {
    pub(in crate::store) batch_id: String,
    pub(in crate::store) object_type: String,
    pub(in crate::store) sent_with: Option<String>,
    #[sqlx(flatten)]
    pub(in crate::store) row: ClaimedRecord,
}

impl From<InFlightRecord> for InFlightRow {
    fn from(r: InFlightRecord) -> Self {
        Self {
            batch_id: r.batch_id,
            object_type: r.object_type,
            sent_with: r.sent_with,
            row: r.row.into(),
        }
    }
}
