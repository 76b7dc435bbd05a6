//! Browsing writes on PostgreSQL (see [`crate::store::browse`]).

use async_trait::async_trait;

use super::PgStore;
use crate::store::browse::{BrowseStore, ErrorGroup, WriteLine, WriteQuery};
use crate::store::{StoreError, timestamp};

/// The writes a [`WriteQuery`] selects: $1 state, $2 object type, $3 category (of the
/// latest error, or `INVALID_WRITE` for a row that failed validation, as the
/// `failed_writes` view says), $4 since, $5 until, $6 text, $7 before this id and $8 from this
/// id (the page's window; `i64::MAX` and 0 when not given). The list and
/// the dashboard's actions on everything matching share it, so an action takes exactly
/// the writes the list shows.
macro_rules! matching {
    () => {
        " FROM outbox AS o
          LEFT JOIN LATERAL (SELECT h.category FROM error_history AS h
                             WHERE h.trace_id = o.trace_id ORDER BY h.id DESC LIMIT 1) AS e ON true
          WHERE ($1::text IS NULL OR o.state = $1) AND ($2::text IS NULL OR o.object_type = $2)
            AND ($3::text IS NULL OR coalesce(e.category, CASE WHEN o.state = 'failed'
                 AND o.last_error LIKE 'invalid write:%' THEN 'INVALID_WRITE' END) = $3)
            AND ($4::timestamptz IS NULL OR o.updated_at >= $4::timestamptz)
            AND ($5::timestamptz IS NULL OR o.updated_at < $5::timestamptz)
            AND ($6::text IS NULL OR o.trace_id = $6 OR o.hubspot_id = $6
                 OR strpos(o.properties::text, $6) > 0)
            AND o.id < $7 AND o.id >= $8"
    };
}

#[async_trait]
impl BrowseStore for PgStore {
    async fn find_writes(&self, q: &WriteQuery) -> Result<Vec<WriteLine>, StoreError> {
        let query = sqlx::query_as(concat!(
            "SELECT o.id, o.trace_id, o.object_type, o.operation, o.state, o.hubspot_id,
                    o.attempts, o.last_error,
                    coalesce(e.category, CASE WHEN o.state = 'failed'
                      AND o.last_error LIKE 'invalid write:%' THEN 'INVALID_WRITE' END) AS category,
                    outbox_ts(o.updated_at) AS updated_at",
            matching!(),
            " ORDER BY o.id DESC LIMIT $9"
        ));
        Ok(bind(query, q)
            .bind(q.before_id.unwrap_or(i64::MAX))
            .bind(q.floor_id.unwrap_or(0))
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn exact_ids(&self, text: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT trace_id FROM outbox WHERE trace_id = $1
             UNION SELECT trace_id FROM outbox WHERE hubspot_id = $1 LIMIT 20",
        )
        .bind(text)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn last_write_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(id), 0)::bigint FROM outbox")
                .fetch_one(&self.pool)
                .await?,
        )
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

/// The trace ids of every failed or unconfirmed write `q` selects (its page and limit
/// ignored), read in the caller's transaction and locked for the change when `lock`:
/// what a dashboard action on everything matching changes.
pub(super) async fn matching_ids(
    conn: &mut sqlx::PgConnection,
    q: &WriteQuery,
    lock: bool,
) -> Result<Vec<String>, StoreError> {
    let sql = match lock {
        true => concat!(
            "SELECT o.trace_id",
            matching!(),
            " AND o.state IN ('failed', 'unconfirmed') ORDER BY o.id FOR UPDATE OF o"
        ),
        false => concat!(
            "SELECT o.trace_id",
            matching!(),
            " AND o.state IN ('failed', 'unconfirmed')"
        ),
    };
    let rows = bind(sqlx::query_as::<_, (String,)>(sql), q)
        .bind(i64::MAX)
        .bind(0_i64)
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// Binds $1..$6 of [`matching!`].
fn bind<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    q: &'q WriteQuery,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(q.state.as_deref())
        .bind(q.object_type.as_deref())
        .bind(q.category.as_deref())
        .bind(q.since.map(timestamp))
        .bind(q.until.map(timestamp))
        .bind(q.text.as_deref())
}
