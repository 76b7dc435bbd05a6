//! The words every stage shares, and nothing that does I/O: a write and its state
//! ([`mod@write`]), a batch on its way out ([`batch`]), what the reconciler decides for it
//! ([`plan`]), the rules it decides under ([`policy`]), the account's day ([`day`]), and
//! what a valid write is ([`validate`], pure), and writes that point at queued writes
//! ([`references`]).
//! Every stage speaks these types; none of them knows how they are stored or sent.

pub mod association_types;
pub mod batch;
pub mod capacity;
pub mod day;
pub mod plan;
pub mod policy;
pub mod rate;
pub mod references;
pub mod validate;
pub mod write;

pub use batch::{BatchLogEntry, BatchRow, ClaimedRow, Lane};
pub use day::{day_key, earlier, later, next_daily_reset};
pub use plan::{ErrorRecord, Pause, Plan, RowUpdate};
pub use policy::{Backoff, OnAmbiguous, OnConflict, Policy};
pub use write::{
    Association, AssociationCategory, AssociationTarget, AssociationType, MAX_PROPERTY_VALUE_CHARS,
    MAX_TRACE_ID_LEN, NewWrite, ObjectType, Operation, RECORD_ID_PROPERTY, RecordKey, TraceId,
    WriteState,
};
