//! Claiming work: which object types have due rows, and a batch of them claimed into
//! `in_flight` in one short `BEGIN IMMEDIATE` transaction, never held across an HTTP call;
//! and the rows a crash left in flight, for recovery at start.

use super::SqliteStore;
use crate::model::ClaimedRow;
use crate::store::claim::{
    Chooser, Claim, ClaimStore, Claimed, ClaimedRecord, DueType, InFlightRecord, InFlightRow,
    SharedSlot,
};
use crate::store::{StoreError, timestamp};
use std::time::Duration;

use crate::model::rate::Rule;
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// The columns a claim reads, in [`ClaimedRecord`]'s order.
macro_rules! claimed_columns {
    () => {
        "id, trace_id, properties, associations, attempts, split_to, first_failed_at, read_by,
         sent_with, last_error, operation, id_property, record_key, hubspot_id,
         associations_done, step"
    };
}

#[async_trait]
impl ClaimStore for SqliteStore {
    /// One daemon owns a SQLite outbox: its limiter is the whole budget.
    async fn next_departure(&self, _rate: Rule) -> Result<Option<Duration>, StoreError> {
        Ok(None)
    }

    async fn retake_departure(
        &self,
        _missed: i64,
        _rate: Rule,
    ) -> Result<Option<SharedSlot>, StoreError> {
        Ok(None)
    }

    /// Walks the `outbox_due` index lane by lane (each step a few seeks: a loose index
    /// scan written as a recursive query) instead of grouping every due row: with
    /// 1,000,000 rows queued a `GROUP BY` took about 0.4 s per tick, this takes well under
    /// 1 ms.
    async fn due_types(&self, now: DateTime<Utc>, cap: usize) -> Result<Vec<DueType>, StoreError> {
        Ok(sqlx::query_as(
            "WITH RECURSIVE lanes(t, l) AS (
                 SELECT t0, (SELECT min(lane) FROM outbox INDEXED BY outbox_due
                             WHERE state = 'pending' AND validated = 1 AND object_type = t0)
                 FROM (SELECT min(object_type) AS t0 FROM outbox INDEXED BY outbox_due
                       WHERE state = 'pending' AND validated = 1)
                 UNION ALL
                 SELECT CASE WHEN (SELECT min(lane) FROM outbox INDEXED BY outbox_due
                                   WHERE state = 'pending' AND validated = 1
                                     AND object_type = t AND lane > l) IS NOT NULL
                             THEN t
                             ELSE (SELECT min(object_type) FROM outbox INDEXED BY outbox_due
                                   WHERE state = 'pending' AND validated = 1 AND object_type > t)
                        END,
                        coalesce(
                            (SELECT min(lane) FROM outbox INDEXED BY outbox_due
                             WHERE state = 'pending' AND validated = 1
                               AND object_type = t AND lane > l),
                            (SELECT min(lane) FROM outbox INDEXED BY outbox_due
                             WHERE state = 'pending' AND validated = 1
                               AND object_type = (SELECT min(object_type) FROM outbox INDEXED BY outbox_due
                                                  WHERE state = 'pending' AND validated = 1
                                                    AND object_type > t)))
                 FROM lanes WHERE t IS NOT NULL
             )
             SELECT object_type, lane, count, oldest_due_at FROM (
                 SELECT t AS object_type, l AS lane,
                        (SELECT count(*) FROM (
                             SELECT 1 FROM outbox INDEXED BY outbox_due
                             WHERE state = 'pending' AND validated = 1 AND object_type = t
                               AND lane = l AND next_attempt_at <= ?1
                             LIMIT ?2)) AS count,
                        (SELECT min(next_attempt_at) FROM outbox INDEXED BY outbox_due
                         WHERE state = 'pending' AND validated = 1 AND object_type = t
                           AND lane = l AND next_attempt_at <= ?1) AS oldest_due_at
                 FROM lanes WHERE t IS NOT NULL
             )
             WHERE oldest_due_at IS NOT NULL
             ORDER BY object_type, lane",
        )
        .bind(timestamp(now))
        .bind(i64::try_from(cap).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn next_due_at(&self) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT min(next_attempt_at) FROM outbox WHERE state = 'pending' AND validated = 1",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    async fn claim_batch(
        &self,
        claim: &Claim<'_>,
        choose: &Chooser<'_>,
    ) -> Result<Claimed, StoreError> {
        let now_text = timestamp(claim.now);
        let mut tx = self.begin_write().await?;
        let mut candidates: Vec<ClaimedRecord> = Vec::new();
        if claim.lane == "create" {
            // INDEXED BY: left to itself, SQLite scans the whole due index for the few
            // rows to read back (30 ms on a 100,000-row backlog, every claim).
            candidates = sqlx::query_as(concat!(
                "SELECT ",
                claimed_columns!(),
                " FROM outbox INDEXED BY outbox_read_due
                 WHERE state = 'pending' AND validated = 1 AND object_type = ?1 AND read_by IS NOT NULL
                   AND next_attempt_at <= ?2
                 ORDER BY read_by, next_attempt_at, id LIMIT ?3"
            ))
            .bind(claim.object_type)
            .bind(&now_text)
            .bind(claim.look_ahead as i64)
            .fetch_all(&mut *tx)
            .await?;
        }
        let read = !candidates.is_empty();
        if !read {
            candidates = sqlx::query_as(concat!(
                "SELECT ",
                claimed_columns!(),
                " FROM outbox AS o INDEXED BY outbox_due
                 WHERE state = 'pending' AND validated = 1 AND object_type = ?1 AND lane = ?4
                   AND read_by IS NULL AND next_attempt_at <= ?2
                   AND (order_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM outbox AS e INDEXED BY outbox_order
                        WHERE e.object_type = o.object_type AND e.order_key = o.order_key
                          AND e.id < o.id AND e.state IN ('pending', 'waiting', 'in_flight')))
                   AND (?5 IS NULL OR o.id_property IS NOT ?5 OR NOT EXISTS (
                        SELECT 1 FROM outbox AS c
                        WHERE c.trace_id = o.record_key AND c.id < o.id
                          AND c.state IN ('pending', 'waiting', 'in_flight')))
                 ORDER BY next_attempt_at, id LIMIT ?3"
            ))
            .bind(claim.object_type)
            .bind(&now_text)
            .bind(claim.look_ahead as i64)
            .bind(claim.lane)
            .bind(claim.trace_property)
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
            return Ok(Claimed::default());
        }
        let ids = serde_json::to_string(&chosen.iter().map(|r| r.id).collect::<Vec<_>>())
            .expect("ids serialize");
        // A read leaves `sent_with` as the create set it.
        let done = sqlx::query(
            "UPDATE outbox SET state = 'in_flight', batch_id = ?1, updated_at = ?2,
                    sent_with = CASE WHEN ?4 THEN sent_with ELSE ?5 END
             WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'pending'",
        )
        .bind(claim.batch_id)
        .bind(&now_text)
        .bind(ids)
        .bind(read)
        .bind(claim.sent_with)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != chosen.len() as u64 {
            return Err(StoreError::Sqlx(sqlx::Error::Protocol(format!(
                "claimed {} of {} rows",
                done.rows_affected(),
                chosen.len()
            ))));
        }
        super::pauses::count_request_in(&mut tx, claim.day).await?;
        tx.commit().await?;
        Ok(Claimed {
            rows: chosen,
            shared_slot: None,
        })
    }

    async fn in_flight_rows(&self) -> Result<Vec<InFlightRow>, StoreError> {
        let records: Vec<InFlightRecord> = sqlx::query_as(concat!(
            "SELECT coalesce(batch_id, '') AS batch_id, object_type, ",
            claimed_columns!(),
            " FROM outbox WHERE state = 'in_flight' ORDER BY batch_id, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        Ok(records.into_iter().map(InFlightRow::from).collect())
    }
}
