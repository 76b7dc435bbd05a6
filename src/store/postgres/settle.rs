//! Settling a batch on PostgreSQL, as on SQLite: a reconciler plan applied to its rows in
//! one short transaction, with the error history and the batch-log line; and failing every
//! queued write of an object type HubSpot does not know. Both settle writes, so both take
//! the reference bookkeeping's lock first (see `lock_references`).

use crate::model::{BatchLogEntry, ErrorRecord, Plan, RowUpdate};
use crate::store::{StoreError, timestamp};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::settle::SettleStore;

#[async_trait]
impl SettleStore for PgStore {
    async fn settle_batch(
        &self,
        batch_id: &str,
        plan: &Plan,
        log: Option<&BatchLogEntry>,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let now_text = timestamp(now);
        let mut tx = self.begin_write().await?;
        super::lock_references(&mut tx).await?;
        // Successes, the common case, in one statement; the rest row by row.
        let succeeded: Vec<(i64, &str, Option<&str>, Option<bool>)> = plan
            .updates
            .iter()
            .filter_map(|u| match u {
                RowUpdate::Succeeded {
                    id,
                    hubspot_id,
                    note,
                    new_record,
                } => Some((*id, hubspot_id.as_str(), note.as_deref(), *new_record)),
                _ => None,
            })
            .collect();
        let mut skipped = 0;
        if !succeeded.is_empty() {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'succeeded', hubspot_id = s.value ->> 1, note = s.value ->> 2,
                        new_record = coalesce((s.value ->> 3)::boolean, new_record),
                        attempts = attempts + 1, batch_id = NULL, split_to = NULL, read_by = NULL,
                        updated_at = $3::timestamptz
                 FROM jsonb_array_elements($2::text::jsonb) AS s(value)
                 WHERE outbox.id = (s.value ->> 0)::bigint AND outbox.batch_id = $1
                   AND outbox.state = 'in_flight'",
            )
            .bind(batch_id)
            .bind(serde_json::to_string(&succeeded).expect("tuples serialize"))
            .bind(&now_text)
            .execute(&mut *tx)
            .await?;
            skipped += succeeded.len() as u64 - done.rows_affected().min(succeeded.len() as u64);
        }
        for update in &plan.updates {
            let done = match update {
                RowUpdate::Succeeded { .. } => continue,
                RowUpdate::Recorded {
                    id,
                    hubspot_id,
                    new_record,
                } => {
                    // The record is done: its associations are next, due at once.
                    sqlx::query(
                        "UPDATE outbox SET state = 'pending', step = 'associations', hubspot_id = $3,
                                new_record = $4, attempts = attempts + 1, batch_id = NULL,
                                split_to = NULL, first_failed_at = NULL,
                                next_attempt_at = $5::timestamptz, updated_at = $5::timestamptz
                         WHERE id = $1 AND batch_id = $2 AND state = 'in_flight'",
                    )
                    .bind(id)
                    .bind(batch_id)
                    .bind(hubspot_id)
                    .bind(*new_record)
                    .bind(&now_text)
                    .execute(&mut *tx)
                    .await?
                }
                RowUpdate::Associated { id, done } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'pending', associations_done = $3::text::jsonb,
                                batch_id = NULL, split_to = NULL, next_attempt_at = $4::timestamptz,
                                updated_at = $4::timestamptz
                         WHERE id = $1 AND batch_id = $2 AND state = 'in_flight'",
                    )
                    .bind(id)
                    .bind(batch_id)
                    .bind(serde_json::to_string(done).expect("strings serialize"))
                    .bind(&now_text)
                    .execute(&mut *tx)
                    .await?
                }
                RowUpdate::Failed { id, error, count_attempt } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'failed', last_error = $3, attempts = attempts + $4,
                                batch_id = NULL, read_by = NULL, updated_at = $5::timestamptz
                         WHERE id = $1 AND batch_id = $2 AND state = 'in_flight'",
                    )
                    .bind(id)
                    .bind(batch_id)
                    .bind(error)
                    .bind(i64::from(*count_attempt))
                    .bind(&now_text)
                    .execute(&mut *tx)
                    .await?
                }
                RowUpdate::Retry {
                    id,
                    after,
                    count_attempt,
                    error,
                    split_to,
                } => {
                    requeue(&mut tx, batch_id, *id, None, *after, *count_attempt, error.as_deref(), *split_to, now)
                        .await?
                }
                RowUpdate::Verify {
                    id,
                    read_by,
                    after,
                    count_attempt,
                    error,
                    split_to,
                } => {
                    requeue(&mut tx, batch_id, *id, Some(read_by), *after, *count_attempt, error.as_deref(), *split_to, now)
                        .await?
                }
                RowUpdate::Hold { id, error } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'unconfirmed', last_error = $3, attempts = attempts + 1,
                                batch_id = NULL, read_by = NULL, updated_at = $4::timestamptz
                         WHERE id = $1 AND batch_id = $2 AND state = 'in_flight'",
                    )
                    .bind(id)
                    .bind(batch_id)
                    .bind(error)
                    .bind(&now_text)
                    .execute(&mut *tx)
                    .await?
                }
            };
            skipped += 1 - done.rows_affected().min(1);
        }
        // Writes waiting for the ones that succeeded or failed here are decided with them.
        let settled: Vec<i64> = plan
            .updates
            .iter()
            .filter_map(|u| match u {
                RowUpdate::Succeeded { id, .. } | RowUpdate::Failed { id, .. } => Some(*id),
                _ => None,
            })
            .collect();
        super::references::settled(&mut tx, &settled, now).await?;
        insert_errors(&mut tx, Some(batch_id), &plan.errors).await?;
        if let Some(log) = log {
            sqlx::query(
                "INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome, duration_ms,
                                        correlation_id, sent_at, finished_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8::timestamptz, $9::timestamptz)",
            )
            .bind(&log.batch_id)
            .bind(&log.object_type)
            .bind(log.size as i64)
            .bind(i64::from(log.http_status))
            .bind(&log.outcome)
            .bind(log.duration.as_millis() as i64)
            .bind(&log.correlation_id)
            .bind(timestamp(log.sent_at))
            .bind(&now_text)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(skipped)
    }

    async fn fail_object_type(
        &self,
        object_type: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        super::lock_references(&mut tx).await?;
        let done = sqlx::query(
            "UPDATE outbox SET state = 'failed', last_error = $2, updated_at = $3::timestamptz
             WHERE object_type = $1 AND state = 'pending'",
        )
        .bind(object_type)
        .bind(error)
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await?;
        super::references::settled_anywhere(&mut tx, now).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// A row back to `pending`, due `after` from `now`: to be sent, or first read back by
/// `read_by`.
#[allow(clippy::too_many_arguments)]
async fn requeue(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    batch_id: &str,
    id: i64,
    read_by: Option<&str>,
    after: std::time::Duration,
    count_attempt: bool,
    error: Option<&str>,
    split_to: Option<usize>,
    now: DateTime<Utc>,
) -> Result<sqlx::postgres::PgQueryResult, StoreError> {
    let due = crate::model::later(now, after);
    Ok(sqlx::query(
        "UPDATE outbox SET state = 'pending', next_attempt_at = $3::timestamptz,
                attempts = attempts + $4, last_error = coalesce($5, last_error), split_to = $6,
                batch_id = NULL, read_by = $8,
                first_failed_at = CASE WHEN $4 = 1 THEN coalesce(first_failed_at, $7::timestamptz)
                                       ELSE first_failed_at END,
                updated_at = $7::timestamptz
         WHERE id = $1 AND batch_id = $2 AND state = 'in_flight'",
    )
    .bind(id)
    .bind(batch_id)
    .bind(timestamp(due))
    .bind(i64::from(count_attempt))
    .bind(error)
    .bind(split_to.map(|n| n as i64))
    .bind(timestamp(now))
    .bind(read_by)
    .execute(&mut **tx)
    .await?)
}

async fn insert_errors(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    batch_id: Option<&str>,
    errors: &[ErrorRecord],
) -> Result<(), StoreError> {
    for e in errors {
        sqlx::query(
            "INSERT INTO error_history (trace_id, attempt, batch_id, http_status, category, message, correlation_id, raw)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&e.trace_id)
        .bind(i64::from(e.attempt))
        .bind(batch_id)
        .bind(i64::from(e.status))
        .bind(&e.category)
        .bind(&e.message)
        .bind(&e.correlation_id)
        .bind(&e.raw)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
