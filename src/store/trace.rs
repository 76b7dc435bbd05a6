//! Whether each object type's trace property can be used, as the daemon found it: for
//! operators (`status`, `/metrics`), and so the answer survives a restart's log.

use crate::model::rate::Rule;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// One object type's trace property, as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TraceRow {
    pub object_type: String,
    pub property: String,
    /// `ready` or `unavailable`.
    pub state: String,
    pub reason: Option<String>,
}

/// Each object type's trace property state, and requests counted outside claims.
#[async_trait]
pub trait TraceStore: Send + Sync {
    /// Records what the daemon found for `object_type`'s trace property.
    async fn set_trace_state(
        &self,
        object_type: &str,
        property: &str,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every object type's trace property state, by type.
    async fn trace_states(&self) -> Result<Vec<TraceRow>, StoreError>;

    /// Counts one request against `day` (the claim of a batch counts its own), and where
    /// daemons share the outbox takes its slot in their rate budget under `rate`: how
    /// long from now that slot is (see `Claimed::shared_slot`).
    async fn count_request(
        &self,
        day: &str,
        rate: Rule,
    ) -> Result<Option<crate::store::claim::SharedSlot>, StoreError>;
}
