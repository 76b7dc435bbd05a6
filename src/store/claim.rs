//! Claiming work: which object types have due rows, and a batch of them claimed into
//! `in_flight` in one short `BEGIN IMMEDIATE` transaction, never held across an HTTP call;
//! and the rows a crash left in flight, for recovery at start.

use chrono::{DateTime, Utc};

use super::{Store, StoreError, timestamp};
use crate::model::ClaimedRow;

/// A claimed row as the claim queries read it; handed out as [`ClaimedRow`].
#[derive(Debug, Clone, sqlx::FromRow)]
struct ClaimedRecord {
    id: i64,
    trace_id: String,
    properties: String,
    associations: String,
    attempts: i64,
    split_to: Option<i64>,
    first_failed_at: Option<String>,
    read_by: Option<String>,
    sent_with: Option<String>,
    last_error: Option<String>,
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
        }
    }
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

/// An in-flight row as the recovery query reads it.
#[derive(sqlx::FromRow)]
struct InFlightRecord {
    batch_id: String,
    object_type: String,
    sent_with: Option<String>,
    #[sqlx(flatten)]
    row: ClaimedRecord,
}

/// An object type with due rows: how many, and since when the oldest has been due.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueType {
    pub object_type: String,
    pub count: i64,
    pub oldest_due_at: String,
}

impl Store {
    /// Object types with rows due at `now`, each with its oldest due time and how many are
    /// due, counted up to `cap` (the scheduler only asks whether a full batch is waiting).
    ///
    /// Walks the `outbox_due` index type by type (each step one seek: a loose index scan
    /// written as a recursive query) instead of grouping every due row: with 1,000,000
    /// rows queued a `GROUP BY` took about 0.4 s per tick, this takes well under 1 ms.
    pub async fn due_types(
        &self,
        now: DateTime<Utc>,
        cap: usize,
    ) -> Result<Vec<DueType>, StoreError> {
        Ok(sqlx::query_as(
            "WITH RECURSIVE types(t) AS (
                 SELECT min(object_type) FROM outbox INDEXED BY outbox_due
                 WHERE state = 'pending' AND validated = 1
                 UNION ALL
                 SELECT (SELECT min(object_type) FROM outbox INDEXED BY outbox_due
                         WHERE state = 'pending' AND validated = 1 AND object_type > t)
                 FROM types WHERE t IS NOT NULL
             )
             SELECT object_type, count, oldest_due_at FROM (
                 SELECT t AS object_type,
                        (SELECT count(*) FROM (
                             SELECT 1 FROM outbox
                             WHERE state = 'pending' AND validated = 1 AND object_type = t
                               AND next_attempt_at <= ?1
                             LIMIT ?2)) AS count,
                        (SELECT min(next_attempt_at) FROM outbox
                         WHERE state = 'pending' AND validated = 1 AND object_type = t
                           AND next_attempt_at <= ?1) AS oldest_due_at
                 FROM types WHERE t IS NOT NULL
             )
             WHERE oldest_due_at IS NOT NULL
             ORDER BY object_type",
        )
        .bind(timestamp(now))
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    /// The earliest time a pending row becomes due (for sleeping until then).
    pub async fn next_due_at(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' AND validated = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// Claims a batch of `object_type`. Rows to be read back come first: when any is due,
    /// up to `look_ahead` of them (oldest first, grouped by the property they are read by)
    /// are the candidates; else up to `look_ahead` due rows to create, which will carry
    /// the trace property `sent_with`. `choose` picks which go (unique values, split caps,
    /// one read-back property per batch); those are marked `in_flight` under `batch_id` and
    /// one request is counted against `day`. Returns the claimed rows in the order chosen
    /// (a read batch when the first has `read_by`); empty when nothing was chosen (and
    /// nothing is changed).
    #[allow(clippy::too_many_arguments)]
    pub async fn claim_batch(
        &self,
        object_type: &str,
        look_ahead: usize,
        now: DateTime<Utc>,
        batch_id: &str,
        day: &str,
        sent_with: Option<&str>,
        choose: impl FnOnce(&[ClaimedRow]) -> Vec<usize>,
    ) -> Result<Vec<ClaimedRow>, StoreError> {
        let now_text = timestamp(now);
        let mut tx = self.begin_write().await?;
        // INDEXED BY: left to itself, SQLite scans the whole due index for the few rows
        // to read back (30 ms on a 100,000-row backlog, every claim).
        let mut candidates: Vec<ClaimedRecord> = sqlx::query_as(
            "SELECT id, trace_id, properties, associations, attempts, split_to, first_failed_at, read_by,
                    sent_with, last_error
             FROM outbox INDEXED BY outbox_read_due
             WHERE state = 'pending' AND validated = 1 AND object_type = ?1 AND read_by IS NOT NULL
               AND next_attempt_at <= ?2
             ORDER BY read_by, next_attempt_at, id LIMIT ?3",
        )
        .bind(object_type)
        .bind(&now_text)
        .bind(look_ahead as i64)
        .fetch_all(&mut *tx)
        .await?;
        let read = !candidates.is_empty();
        if !read {
            candidates = sqlx::query_as(
                "SELECT id, trace_id, properties, associations, attempts, split_to, first_failed_at, read_by,
                        sent_with, last_error
                 FROM outbox
                 WHERE state = 'pending' AND validated = 1 AND object_type = ?1 AND read_by IS NULL
                   AND next_attempt_at <= ?2
                 ORDER BY next_attempt_at, id LIMIT ?3",
            )
            .bind(object_type)
            .bind(&now_text)
            .bind(look_ahead as i64)
            .fetch_all(&mut *tx)
            .await?;
        }
        let candidates: Vec<ClaimedRow> = candidates.into_iter().map(ClaimedRow::from).collect();
        let chosen: Vec<ClaimedRow> = choose(&candidates)
            .into_iter()
            .map(|i| candidates[i].clone())
            .collect();
        if chosen.is_empty() {
            // Ended here, not left to the drop: a dropped transaction's rollback waits for
            // the connection's next use, and SQLite's write lock with it.
            tx.rollback().await?;
            return Ok(chosen);
        }
        let ids = serde_json::to_string(&chosen.iter().map(|r| r.id).collect::<Vec<_>>())
            .expect("ids serialize");
        // A read leaves `sent_with` as the create set it.
        let done = sqlx::query(
            "UPDATE outbox SET state = 'in_flight', batch_id = ?1, updated_at = ?2,
                    sent_with = CASE WHEN ?4 THEN sent_with ELSE ?5 END
             WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'pending'",
        )
        .bind(batch_id)
        .bind(&now_text)
        .bind(ids)
        .bind(read)
        .bind(sent_with)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != chosen.len() as u64 {
            return Err(StoreError::Sqlx(sqlx::Error::Protocol(format!(
                "claimed {} of {} rows",
                done.rows_affected(),
                chosen.len()
            ))));
        }
        super::pauses::count_request_in(&mut tx, day).await?;
        tx.commit().await?;
        Ok(chosen)
    }

    /// Rows a crash or kill left `in_flight`, with their batch and object type, for the
    /// ambiguity rules.
    pub async fn in_flight_rows(&self) -> Result<Vec<InFlightRow>, StoreError> {
        let records: Vec<InFlightRecord> = sqlx::query_as(
            "SELECT coalesce(batch_id, '') AS batch_id, object_type, sent_with, id, trace_id,
                    properties, associations, attempts, split_to, first_failed_at, read_by, last_error
             FROM outbox WHERE state = 'in_flight' ORDER BY batch_id, id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(records
            .into_iter()
            .map(|r| InFlightRow {
                batch_id: r.batch_id,
                object_type: r.object_type,
                sent_with: r.sent_with,
                row: r.row.into(),
            })
            .collect())
    }
}
