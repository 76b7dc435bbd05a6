//! Browsing writes on PostgreSQL (see [`crate::store::browse`]).

use async_trait::async_trait;

use super::PgStore;
use crate::store::browse::{BrowseStore, ErrorGroup, WriteLine, WriteQuery};
use crate::store::{StoreError, timestamp};

#[async_trait]
impl BrowseStore for PgStore {
    async fn find_writes(&self, q: &WriteQuery) -> Result<Vec<WriteLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT o.id, o.trace_id, o.object_type, o.operation, o.state, o.hubspot_id,
                    o.attempts, o.last_error, e.category, outbox_ts(o.updated_at) AS updated_at
             FROM outbox AS o
             LEFT JOIN LATERAL (SELECT h.category FROM error_history AS h
                                WHERE h.trace_id = o.trace_id ORDER BY h.id DESC LIMIT 1) AS e ON true
             WHERE ($1::text IS NULL OR o.state = $1) AND ($2::text IS NULL OR o.object_type = $2)
               AND ($3::text IS NULL OR e.category = $3)
               AND ($4::timestamptz IS NULL OR o.updated_at >= $4::timestamptz)
               AND ($5::timestamptz IS NULL OR o.updated_at < $5::timestamptz)
               AND ($6::text IS NULL OR o.trace_id = $6 OR o.hubspot_id = $6
                    OR strpos(o.properties::text, $6) > 0)
               AND ($7::bigint IS NULL OR o.id < $7)
             ORDER BY o.id DESC LIMIT $8",
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
             WHERE ($1::text IS NULL OR object_type = $1) AND ($2::text IS NULL OR category = $2)
               AND ($3::timestamptz IS NULL OR failed_at >= $3::timestamptz)
               AND ($4::timestamptz IS NULL OR failed_at < $4::timestamptz)
             GROUP BY category, message ORDER BY writes DESC, category, message LIMIT $5",
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
