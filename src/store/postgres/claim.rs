//! Claiming work on PostgreSQL. Several daemons may claim at once: the candidates are
//! locked as they are read (`FOR UPDATE SKIP LOCKED`), so two daemons never take the same
//! row and neither waits for the other; the transaction is as short as on SQLite and never
//! held across an HTTP call.

use super::PgStore;
use crate::model::ClaimedRow;
use crate::model::rate::Rule;
use crate::store::claim::{
    Chooser, Claim, ClaimStore, Claimed, ClaimedRecord, DueType, InFlightRecord, InFlightRow,
    SharedSlot,
};
use crate::store::{StoreError, timestamp};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::PgConnection;

/// The columns a claim reads, in [`ClaimedRecord`]'s order.
macro_rules! claimed_columns {
    () => {
        "id, trace_id, properties::text AS properties, associations::text AS associations,
         attempts, split_to, outbox_ts(first_failed_at) AS first_failed_at, read_by, sent_with,
         last_error, operation, id_property, record_key, hubspot_id,
         associations_done::text AS associations_done, step"
    };
}

#[async_trait]
impl ClaimStore for PgStore {
    async fn retake_departure(
        &self,
        missed: i64,
        rate: Rule,
    ) -> Result<Option<SharedSlot>, StoreError> {
        let mut tx = self.begin_write().await?;
        let slot = retake_slot(&mut tx, missed, rate).await?;
        tx.commit().await?;
        Ok(Some(slot))
    }

    async fn next_departure(&self, rate: Rule) -> Result<Option<Duration>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        let (sorted, now) = ledger(&mut conn, rate).await?;
        Ok(Some(
            rate.next_departure(&sorted, None, now).saturating_sub(now),
        ))
    }

    /// Walks the `outbox_due` index lane by lane (a loose index scan written as a
    /// recursive query, as on SQLite) instead of grouping every due row.
    async fn due_types(&self, now: DateTime<Utc>, cap: usize) -> Result<Vec<DueType>, StoreError> {
        Ok(sqlx::query_as(
            "WITH RECURSIVE lanes(t, l) AS (
                 SELECT t0, (SELECT min(lane) FROM outbox
                             WHERE state = 'pending' AND validated AND object_type = t0)
                 FROM (SELECT min(object_type) AS t0 FROM outbox
                       WHERE state = 'pending' AND validated) AS first
                 UNION ALL
                 SELECT CASE WHEN (SELECT min(lane) FROM outbox
                                   WHERE state = 'pending' AND validated
                                     AND object_type = t AND lane > l) IS NOT NULL
                             THEN t
                             ELSE (SELECT min(object_type) FROM outbox
                                   WHERE state = 'pending' AND validated AND object_type > t)
                        END,
                        coalesce(
                            (SELECT min(lane) FROM outbox
                             WHERE state = 'pending' AND validated
                               AND object_type = t AND lane > l),
                            (SELECT min(lane) FROM outbox
                             WHERE state = 'pending' AND validated
                               AND object_type = (SELECT min(object_type) FROM outbox
                                                  WHERE state = 'pending' AND validated
                                                    AND object_type > t)))
                 FROM lanes WHERE t IS NOT NULL
             )
             SELECT object_type, lane, count, oldest_due_at FROM (
                 SELECT t AS object_type, l AS lane,
                        (SELECT count(*) FROM (
                             SELECT 1 FROM outbox
                             WHERE state = 'pending' AND validated AND object_type = t
                               AND lane = l AND next_attempt_at <= $1::timestamptz
                             LIMIT $2) AS d) AS count,
                        outbox_ts((SELECT min(next_attempt_at) FROM outbox
                         WHERE state = 'pending' AND validated AND object_type = t
                           AND lane = l AND next_attempt_at <= $1::timestamptz)) AS oldest_due_at
                 FROM lanes WHERE t IS NOT NULL
             ) AS due
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
            "SELECT outbox_ts(min(next_attempt_at)) FROM outbox WHERE state = 'pending' AND validated",
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
        let claimant = self.claimant()?;
        let mut tx = self.begin_write().await?;
        let mut candidates: Vec<ClaimedRecord> = Vec::new();
        if claim.lane == "create" {
            candidates = sqlx::query_as(concat!(
                "SELECT ",
                claimed_columns!(),
                " FROM outbox
                 WHERE state = 'pending' AND validated AND object_type = $1 AND read_by IS NOT NULL
                   AND next_attempt_at <= $2::timestamptz
                 ORDER BY read_by, next_attempt_at, id LIMIT $3
                 FOR UPDATE SKIP LOCKED"
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
                " FROM outbox AS o
                 WHERE state = 'pending' AND validated AND object_type = $1 AND lane = $4
                   AND read_by IS NULL AND next_attempt_at <= $2::timestamptz
                   AND (order_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM outbox AS e
                        WHERE e.object_type = o.object_type AND e.order_key = o.order_key
                          AND e.id < o.id AND e.state IN ('pending', 'waiting', 'in_flight')))
                   AND ($5 IS NULL OR o.id_property IS DISTINCT FROM $5 OR NOT EXISTS (
                        SELECT 1 FROM outbox AS c
                        WHERE c.trace_id = o.record_key AND c.id < o.id
                          AND c.state IN ('pending', 'waiting', 'in_flight')))
                 ORDER BY next_attempt_at, id LIMIT $3
                 FOR UPDATE OF o SKIP LOCKED"
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
            // Ended here, not left to the drop: the rows' locks go at once.
            tx.rollback().await?;
            return Ok(Claimed::default());
        }
        let ids: Vec<i64> = chosen.iter().map(|r| r.id).collect();
        // A read leaves `sent_with` as the create set it.
        let done = sqlx::query(
            "UPDATE outbox SET state = 'in_flight', batch_id = $1, updated_at = $2::timestamptz,
                    sent_with = CASE WHEN $4 THEN sent_with ELSE $5 END, claimed_by = $6
             WHERE id = ANY($3) AND state = 'pending'",
        )
        .bind(claim.batch_id)
        .bind(&now_text)
        .bind(ids)
        .bind(read)
        .bind(claim.sent_with)
        .bind(claimant)
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
        let slot = take_slot(&mut tx, claim.rate).await?;
        tx.commit().await?;
        Ok(Claimed {
            rows: chosen,
            shared_slot: Some(slot),
        })
    }

    /// Several daemons share the outbox: the rows in flight here are only those of daemons
    /// that are gone (their liveness lock is free: see `owner`), taken over by this one in
    /// the same transaction that found them, so two daemons never recover the same row.
    async fn in_flight_rows(&self) -> Result<Vec<InFlightRow>, StoreError> {
        let me = self.claimant()?;
        let mut tx = self.begin_write().await?;
        let owners: Vec<Option<i64>> = sqlx::query_scalar(
            "SELECT DISTINCT claimed_by FROM outbox
             WHERE state = 'in_flight' AND claimed_by IS DISTINCT FROM $1",
        )
        .bind(me)
        .fetch_all(&mut *tx)
        .await?;
        let (mut gone, mut unowned) = (Vec::new(), false);
        for owner in owners {
            match owner {
                None => unowned = true,
                // Free: its session ended. Held till this transaction ends, so a daemon
                // looking at the same moment takes it for a live one and leaves its rows.
                Some(key) => {
                    let free: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
                        .bind(key)
                        .fetch_one(&mut *tx)
                        .await?;
                    if free {
                        gone.push(key);
                    }
                }
            }
        }
        if gone.is_empty() && !unowned {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let mut records: Vec<InFlightRecord> = sqlx::query_as(concat!(
            "UPDATE outbox SET claimed_by = $1
             WHERE state = 'in_flight' AND (claimed_by = ANY($2) OR ($3 AND claimed_by IS NULL))
             RETURNING coalesce(batch_id, '') AS batch_id, object_type, ",
            claimed_columns!()
        ))
        .bind(me)
        .bind(&gone)
        .bind(unowned)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        records.sort_by(|a, b| (&a.batch_id, a.row.id).cmp(&(&b.batch_id, b.row.id)));
        Ok(records.into_iter().map(InFlightRow::from).collect())
    }
}

/// The rate budget's departures still inside some window, oldest first, and the
/// database's clock now, both as time since the epoch.
async fn ledger(
    conn: &mut PgConnection,
    rule: Rule,
) -> Result<(Vec<Duration>, Duration), StoreError> {
    let (now, departures): (f64, Vec<f64>) = sqlx::query_as(
        "SELECT extract(epoch FROM clock_timestamp())::float8,
                coalesce((SELECT array_agg(extract(epoch FROM at)::float8 ORDER BY at)
                          FROM rate_ledger WHERE at > clock_timestamp() - make_interval(secs => $1)),
                         '{}')",
    )
    .bind(rule.span().as_secs_f64())
    .fetch_one(&mut *conn)
    .await?;
    let sorted = departures
        .into_iter()
        .map(|t| Duration::from_secs_f64(t.max(0.0)))
        .collect();
    Ok((sorted, Duration::from_secs_f64(now.max(0.0))))
}

/// Takes the next departure in the rate budget the daemons share: under the budget row's
/// lock (so two claims never take one slot), by the database's clock (so the daemons'
/// clocks need not agree), by the same rule as a daemon's own limiter. Records it, and
/// forgets departures no window can hold any more.
pub(super) async fn take_slot(tx: &mut PgConnection, rule: Rule) -> Result<SharedSlot, StoreError> {
    retake_slot(tx, 0, rule).await
}

/// [`take_slot`], giving up the slot `missed` first (0: none).
async fn retake_slot(
    tx: &mut PgConnection,
    missed: i64,
    rule: Rule,
) -> Result<SharedSlot, StoreError> {
    sqlx::query("SELECT id FROM rate_budget WHERE id = 1 FOR UPDATE")
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM rate_ledger WHERE id = $1")
        .bind(missed)
        .execute(&mut *tx)
        .await?;
    let span = rule.span().as_secs_f64();
    let (sorted, now) = ledger(tx, rule).await?;
    let at = rule.next_departure(&sorted, None, now);
    let id: i64 =
        sqlx::query_scalar("INSERT INTO rate_ledger (at) VALUES (to_timestamp($1)) RETURNING id")
            .bind(at.as_secs_f64())
            .fetch_one(&mut *tx)
            .await?;
    sqlx::query("DELETE FROM rate_ledger WHERE at < to_timestamp($1)")
        .bind((now.as_secs_f64() - 2.0 * span).max(0.0))
        .execute(&mut *tx)
        .await?;
    Ok(SharedSlot {
        id,
        departs_in: at.saturating_sub(now),
    })
}
