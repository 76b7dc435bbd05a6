//! Browsing writes on SQLite (see [`crate::store::browse`]).

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::browse::{BrowseStore, ErrorGroup, WriteLine, WriteQuery};
use crate::store::{StoreError, timestamp};

#[async_trait]
impl BrowseStore for SqliteStore {
    async fn find_writes(&self, q: &WriteQuery) -> Result<Vec<WriteLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.trace_id, o.object_type, o.operation, o.state, o.hubspot_id,
                    o.attempts, o.last_error, e.category, o.updated_at
             FROM outbox AS o
             LEFT JOIN error_history AS e
               ON e.id = (SELECT max(h.id) FROM error_history AS h WHERE h.trace_id = o.trace_id)
             WHERE (?1 IS NULL OR o.state = ?1) AND (?2 IS NULL OR o.object_type = ?2)
               AND (?3 IS NULL OR e.category = ?3)
               AND (?4 IS NULL OR o.updated_at >= ?4) AND (?5 IS NULL OR o.updated_at < ?5)
               AND (?6 IS NULL OR o.trace_id = ?6 OR o.hubspot_id = ?6 OR instr(o.properties, ?6) > 0)
               AND (?7 IS NULL OR o.id < ?7)
             ORDER BY o.id DESC LIMIT ?8",
        )
        .bind(q.state.as_deref())
        .bind(q.object_type.as_deref())
        .bind(q.category.as_deref())
        .bind(q.since.map(timestamp))
        .bind(q.until.map(timestamp))
        .bind(q.text.as_deref())
        .bind(q.before_id)
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn error_groups(&self, q: &WriteQuery) -> Result<Vec<ErrorGroup>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT category, coalesce(message, '') AS message, count(*) AS writes
             FROM failed_writes
             WHERE (?1 IS NULL OR object_type = ?1) AND (?2 IS NULL OR category = ?2)
               AND (?3 IS NULL OR failed_at >= ?3) AND (?4 IS NULL OR failed_at < ?4)
             GROUP BY category, message ORDER BY writes DESC, category, message LIMIT ?5",
        )
        .bind(q.object_type.as_deref())
        .bind(q.category.as_deref())
        .bind(q.since.map(timestamp))
        .bind(q.until.map(timestamp))
        .bind(q.limit)
        .fetch_all(&self.pool)
        .await?)
    }
}
