//! Browsing writes on SQLite (see [`crate::store::browse`]).

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::browse::{BrowseStore, ErrorGroup, WriteLine, WriteQuery};
use crate::store::{StoreError, timestamp};

/// The writes a [`WriteQuery`] selects, but for its state: ?2 object type, ?3 category (of
/// the latest error, or `INVALID_WRITE` for a row that failed validation, as the
/// `failed_writes` view says), ?4 since, ?5 until, ?6 text, ?7 before this id and ?8
/// from this id (`i64::MAX` and 0 when not given: plain comparisons, so SQLite reads just
/// that range of ids). A statement adds the state when the query names one, written out
/// rather than as `(?1 IS NULL OR ...)` so SQLite can choose: `o.state = ?1` reads that
/// state's rows from its index (then sorts them by id), for a page without a window;
/// `+o.state = ?1` (the `+` keeps the index out) reads the window's ids in order and
/// checks each row's state, for a page with one. The list and the dashboard's actions on
/// everything matching share it, so an action takes exactly the writes the list shows.
macro_rules! matching {
    () => {
        concat!(filters!(), " AND o.id < ?7 AND o.id >= ?8")
    };
}

/// [`matching!`] without the ids (?7, ?8): for everything matching, where a range of ids
/// the planner cannot see is everything would lead it to read every row by id instead of
/// the state's rows from its index (0.17 s against 0.03 s at a million writes).
macro_rules! filters {
    () => {
        " FROM outbox AS o
          LEFT JOIN error_history AS e
            ON e.id = (SELECT max(h.id) FROM error_history AS h WHERE h.trace_id = o.trace_id)
          WHERE (?2 IS NULL OR o.object_type = ?2)
            AND (?3 IS NULL OR coalesce(e.category, CASE WHEN o.state = 'failed'
                 AND o.last_error LIKE 'invalid write:%' THEN 'INVALID_WRITE' END) = ?3)
            AND (?4 IS NULL OR o.updated_at >= ?4) AND (?5 IS NULL OR o.updated_at < ?5)
            AND (?6 IS NULL OR o.trace_id = ?6 OR o.hubspot_id = ?6 OR instr(o.properties, ?6) > 0)"
    };
}

macro_rules! line {
    () => {
        "SELECT o.id, o.trace_id, o.object_type, o.operation, o.state, o.hubspot_id,
                o.attempts, o.last_error,
                coalesce(e.category, CASE WHEN o.state = 'failed'
                  AND o.last_error LIKE 'invalid write:%' THEN 'INVALID_WRITE' END) AS category,
                o.updated_at"
    };
}

#[async_trait]
impl BrowseStore for SqliteStore {
    async fn find_writes(&self, q: &WriteQuery) -> Result<Vec<WriteLine>, StoreError> {
        let sql = match (&q.state, q.floor_id) {
            (Some(_), None) => concat!(
                line!(),
                matching!(),
                " AND o.state = ?1 ORDER BY o.id DESC LIMIT ?9"
            ),
            (Some(_), Some(_)) => concat!(
                line!(),
                matching!(),
                " AND +o.state = ?1 ORDER BY o.id DESC LIMIT ?9"
            ),
            (None, _) => concat!(line!(), matching!(), " ORDER BY o.id DESC LIMIT ?9"),
        };
        Ok(bind(sqlx::query_as(sql), q)
            .bind(q.before_id.unwrap_or(i64::MAX))
            .bind(q.floor_id.unwrap_or(0))
            .bind(q.limit)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn exact_ids(&self, text: &str) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT trace_id FROM outbox WHERE trace_id = ?1
             UNION SELECT trace_id FROM outbox WHERE hubspot_id = ?1 LIMIT 20",
        )
        .bind(text)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn last_write_id(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM outbox")
                .fetch_one(&self.pool)
                .await?,
        )
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

/// The trace ids of every failed or unconfirmed write `q` selects (its page, window and
/// limit ignored), read in the caller's transaction: what a dashboard action on
/// everything matching changes. Its state must be failed or unconfirmed (else nothing
/// is selected); the state's index bounds what is read.
pub(super) async fn matching_ids(
    conn: &mut sqlx::SqliteConnection,
    q: &WriteQuery,
) -> Result<Vec<String>, StoreError> {
    let query = sqlx::query_as::<_, (String,)>(concat!(
        "SELECT o.trace_id",
        filters!(),
        " AND o.state = ?1 AND o.state IN ('failed', 'unconfirmed')"
    ));
    let rows = bind(query, q).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(t,)| t).collect())
}

/// Binds ?1..?6 of [`matching!`] (and the state, ?1).
fn bind<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments>,
    q: &'q WriteQuery,
) -> sqlx::query::QueryAs<'q, sqlx::Sqlite, O, sqlx::sqlite::SqliteArguments> {
    query
        .bind(q.state.as_deref())
        .bind(q.object_type.as_deref())
        .bind(q.category.as_deref())
        .bind(q.since.map(timestamp))
        .bind(q.until.map(timestamp))
        .bind(q.text.as_deref())
}
