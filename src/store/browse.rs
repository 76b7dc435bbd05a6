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
    pub limit: i64,
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

    /// The failed writes among those `query` selects (its state ignored), grouped by
    /// their latest error's category and message, largest groups first, at most
    /// `query.limit` groups.
    async fn error_groups(&self, query: &WriteQuery) -> Result<Vec<ErrorGroup>, StoreError>;
}
