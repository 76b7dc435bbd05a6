//! Browsing writes for the dashboard (issue 13): any state, filtered, newest first, a page
//! at a time by key (the last id shown), never by OFFSET, so a page never reads the pages
//! before it; and the failed writes' errors grouped by category and message. A filter no
//! index serves (free text, category) still reads rows until the page is full.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// Which writes a page shows. Every field narrows it; none set: all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteQuery {
    pub state: Option<String>,
    pub object_type: Option<String>,
    /// The category of the write's latest error.
    pub category: Option<String>,
    /// Last changed at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Last changed before this.
    pub until: Option<DateTime<Utc>>,
    /// Exactly the write's trace id or HubSpot id, or anywhere in its properties' text
    /// (a value such as an email address).
    pub text: Option<String>,
    /// Only writes older than this one (its id): the next page after a page ending there.
    pub before_id: Option<i64>,
    /// Only writes with this id or a later one: the window a page looks in when its
    /// filter is one no index serves (see [`needs_window`]).
    pub floor_id: Option<i64>,
    pub limit: i64,
}

impl WriteQuery {
    /// Whether it filters by nothing but its state (its page aside).
    pub fn only_state(&self) -> bool {
        self.object_type.is_none()
            && self.category.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.text.is_none()
    }
}

/// Writes a list page looks at, at most, when its filter is one no index serves: it
/// then looks at the `WINDOW` writes before its start (by id) and offers to look further
/// back. About 25 ms of SQLite's time per page, whatever the outbox holds.
pub const WINDOW: i64 = 100_000;

/// Whether `query` must look in a window: any filter but a state alone reads rows one by
/// one until the page is full, which, for a rare value among a million writes, is every
/// row. A state alone is read from its index, then sorted by id: that is quick for the
/// states writes pass through or wait in for an operator, not for `succeeded` and
/// `discarded`, which hold nearly every write until retention purges them, so those look
/// in a window too (where they are found at once).
pub fn needs_window(query: &WriteQuery) -> bool {
    matches!(query.state.as_deref(), Some("succeeded" | "discarded")) || !query.only_state()
}

/// One line of the list.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct WriteLine {
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub state: String,
    pub hubspot_id: Option<String>,
    pub attempts: i64,
    pub last_error: Option<String>,
    /// The category of its latest error, if any.
    pub category: Option<String>,
    pub updated_at: String,
}

/// Failed writes sharing a category and message.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct ErrorGroup {
    pub category: Option<String>,
    pub message: String,
    pub writes: i64,
}

#[async_trait]
pub trait BrowseStore: Send + Sync {
    /// The writes `query` selects, newest (highest id) first, at most `query.limit`.
    async fn find_writes(&self, query: &WriteQuery) -> Result<Vec<WriteLine>, StoreError>;

    /// The trace ids of the writes whose trace id or HubSpot id is exactly `text` (both
    /// indexed): what a search for an id finds whatever window it looks in.
    async fn exact_ids(&self, text: &str) -> Result<Vec<String>, StoreError>;

    /// The highest write id (0 when there is none): where the first window starts.
    async fn last_write_id(&self) -> Result<i64, StoreError>;

    /// The failed writes among those `query` selects (its state ignored), grouped by
    /// their latest error's category and message, largest groups first, at most
    /// `query.limit` groups.
    async fn error_groups(&self, query: &WriteQuery) -> Result<Vec<ErrorGroup>, StoreError>;
}
