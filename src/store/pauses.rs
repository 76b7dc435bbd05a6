//! Pauses of sending and the day's request count: what the dispatcher records so that
//! operators (`status`, `/v1/status`, `/metrics`) see why nothing is sent, and so that the
//! daily limit survives a restart. Claims count requests (`claim_batch`); this reads them.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// A pause as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PauseRow {
    pub scope: String,
    pub kind: String,
    pub reason: String,
    pub until: Option<String>,
    /// When it was last recorded (a daemon probing a refused token records it again).
    pub updated_at: String,
}

/// Pauses of sending and the day's request count.
#[async_trait]
pub trait PauseStore: Send + Sync {
    /// Requests counted for `day` so far.
    async fn daily_requests(&self, day: &str) -> Result<u64, StoreError>;

    /// Records a pause (replacing any for the same scope).
    async fn set_pause(
        &self,
        scope: &str,
        kind: &str,
        reason: &str,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Removes the pause of `scope`, if any.
    async fn clear_pause(&self, scope: &str) -> Result<(), StoreError>;

    /// Forgets every recorded pause: at start the dispatcher knows of none, and meets again
    /// whatever still holds (a refused token, a used-up day).
    async fn clear_pauses(&self) -> Result<(), StoreError>;

    /// Every recorded pause.
    async fn pauses(&self) -> Result<Vec<PauseRow>, StoreError>;
}
