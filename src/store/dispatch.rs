//! The dispatcher's state changes: claim a batch, settle it from a reconciler plan, fail
//! an unknown object type, recover rows a crash left in flight, count the day's requests,
//! and record pauses. Claims and settlements are short `BEGIN IMMEDIATE` transactions;
//! none is held across an HTTP call.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, timestamp};
use crate::reconciler::{ErrorRecord, Plan, RowUpdate};

/// A row claimed into a batch, as it will be sent.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClaimedRow {
    pub id: i64,
    pub trace_id: String,
    pub properties: String,
    pub associations: String,
    pub attempts: i64,
    pub split_to: Option<i64>,
}

/// A row left `in_flight`, with the batch that claimed it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct InFlightRow {
    pub batch_id: String,
    pub object_type: String,
    #[sqlx(flatten)]
    pub row: ClaimedRow,
}

/// An object type with due rows: how many, and since when the oldest has been due.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DueType {
    pub object_type: String,
    pub count: i64,
    pub oldest_due_at: String,
}

/// One line of the batch log.
#[derive(Debug, Clone)]
pub struct BatchLogEntry {
    pub batch_id: String,
    pub object_type: String,
    pub size: usize,
    pub http_status: u16,
    pub outcome: String,
    pub duration: Duration,
    pub correlation_id: Option<String>,
    pub sent_at: DateTime<Utc>,
}

/// A pause as stored.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct PauseRow {
    pub scope: String,
    pub kind: String,
    pub reason: String,
    pub until: Option<String>,
}

impl Store {
    /// Object types with rows due at `now`, each with its oldest due time.
    pub async fn due_types(&self, now: DateTime<Utc>) -> Result<Vec<DueType>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT object_type, count(*) AS count, min(next_attempt_at) AS oldest_due_at FROM outbox
             WHERE state = 'pending' AND validated = 1 AND next_attempt_at <= ?1
             GROUP BY object_type ORDER BY object_type",
        )
        .bind(timestamp(now))
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

    /// Claims a batch of `object_type`: reads up to `look_ahead` due rows oldest first,
    /// lets `choose` pick which go (unique values, split caps), marks those `in_flight`
    /// under `batch_id` and counts one request against `day`. Returns the claimed rows in
    /// the order chosen; empty when nothing was chosen (and nothing is changed).
    pub async fn claim_batch(
        &self,
        object_type: &str,
        look_ahead: usize,
        now: DateTime<Utc>,
        batch_id: &str,
        day: &str,
        choose: impl FnOnce(&[ClaimedRow]) -> Vec<usize>,
    ) -> Result<Vec<ClaimedRow>, StoreError> {
        let now_text = timestamp(now);
        let mut tx = self.begin_write().await?;
        let candidates: Vec<ClaimedRow> = sqlx::query_as(
            "SELECT id, trace_id, properties, associations, attempts, split_to FROM outbox
             WHERE state = 'pending' AND validated = 1 AND object_type = ?1 AND next_attempt_at <= ?2
             ORDER BY next_attempt_at, id LIMIT ?3",
        )
        .bind(object_type)
        .bind(&now_text)
        .bind(look_ahead as i64)
        .fetch_all(&mut *tx)
        .await?;
        let chosen: Vec<ClaimedRow> = choose(&candidates)
            .into_iter()
            .map(|i| candidates[i].clone())
            .collect();
        if chosen.is_empty() {
            return Ok(chosen);
        }
        let ids = serde_json::to_string(&chosen.iter().map(|r| r.id).collect::<Vec<_>>())
            .expect("ids serialize");
        let done = sqlx::query(
            "UPDATE outbox SET state = 'in_flight', batch_id = ?1, updated_at = ?2
             WHERE id IN (SELECT value FROM json_each(?3)) AND state = 'pending'",
        )
        .bind(batch_id)
        .bind(&now_text)
        .bind(ids)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() != chosen.len() as u64 {
            return Err(StoreError::Sqlx(sqlx::Error::Protocol(format!(
                "claimed {} of {} rows",
                done.rows_affected(),
                chosen.len()
            ))));
        }
        sqlx::query(
            "INSERT INTO daily_usage (day, requests) VALUES (?1, 1)
             ON CONFLICT (day) DO UPDATE SET requests = requests + 1",
        )
        .bind(day)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(chosen)
    }

    /// Requests counted for `day` so far.
    pub async fn daily_requests(&self, day: &str) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT requests FROM daily_usage WHERE day = ?1")
            .bind(day)
            .fetch_optional(&self.pool)
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    /// Applies a reconciler plan for `batch_id` in one transaction, with its error history
    /// and its batch-log line. A row no longer `in_flight` in this batch (an operator
    /// changed it meanwhile) is left alone; the count of such rows is returned.
    pub async fn settle_batch(
        &self,
        batch_id: &str,
        plan: &Plan,
        log: &BatchLogEntry,
    ) -> Result<u64, StoreError> {
        let now = Utc::now();
        let now_text = timestamp(now);
        let mut tx = self.begin_write().await?;
        // Successes, the common case, in one statement; the rest row by row.
        let succeeded: Vec<(i64, &str, Option<&str>)> = plan
            .updates
            .iter()
            .filter_map(|u| match u {
                RowUpdate::Succeeded {
                    id,
                    hubspot_id,
                    note,
                } => Some((*id, hubspot_id.as_str(), note.as_deref())),
                _ => None,
            })
            .collect();
        let mut skipped = 0;
        if !succeeded.is_empty() {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'succeeded', hubspot_id = s.value ->> 1, note = s.value ->> 2,
                        attempts = attempts + 1, batch_id = NULL, split_to = NULL, updated_at = ?3
                 FROM json_each(?2) AS s
                 WHERE outbox.id = s.value ->> 0 AND outbox.batch_id = ?1 AND outbox.state = 'in_flight'",
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
                RowUpdate::Failed { id, error, count_attempt } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'failed', last_error = ?3, attempts = attempts + ?4,
                                batch_id = NULL, updated_at = ?5
                         WHERE id = ?1 AND batch_id = ?2 AND state = 'in_flight'",
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
                    let due = now + chrono::Duration::from_std(*after).unwrap_or(chrono::Duration::MAX);
                    sqlx::query(
                        "UPDATE outbox SET state = 'pending', next_attempt_at = ?3, attempts = attempts + ?4,
                                last_error = coalesce(?5, last_error), split_to = ?6, batch_id = NULL,
                                updated_at = ?7
                         WHERE id = ?1 AND batch_id = ?2 AND state = 'in_flight'",
                    )
                    .bind(id)
                    .bind(batch_id)
                    .bind(timestamp(due))
                    .bind(i64::from(*count_attempt))
                    .bind(error)
                    .bind(split_to.map(|n| n as i64))
                    .bind(&now_text)
                    .execute(&mut *tx)
                    .await?
                }
                RowUpdate::Hold { id, error } => {
                    sqlx::query(
                        "UPDATE outbox SET state = 'unconfirmed', last_error = ?3, attempts = attempts + 1,
                                batch_id = NULL, updated_at = ?4
                         WHERE id = ?1 AND batch_id = ?2 AND state = 'in_flight'",
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
        insert_errors(&mut tx, Some(batch_id), &plan.errors).await?;
        sqlx::query(
            "INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome, duration_ms,
                                    correlation_id, sent_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        tx.commit().await?;
        Ok(skipped)
    }

    /// The object type does not exist in HubSpot: every queued row of it fails.
    pub async fn fail_object_type(
        &self,
        object_type: &str,
        error: &str,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE outbox SET state = 'failed', last_error = ?2, updated_at = ?3
             WHERE object_type = ?1 AND state = 'pending'",
        )
        .bind(object_type)
        .bind(error)
        .bind(timestamp(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// Rows a crash or kill left `in_flight`, with their batch and object type, for the
    /// ambiguity rules.
    pub async fn in_flight_rows(&self) -> Result<Vec<InFlightRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT coalesce(batch_id, '') AS batch_id, object_type, id, trace_id, properties,
                    associations, attempts, split_to
             FROM outbox WHERE state = 'in_flight' ORDER BY batch_id, id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Records a pause (replacing any for the same scope).
    pub async fn set_pause(
        &self,
        scope: &str,
        kind: &str,
        reason: &str,
        until: Option<DateTime<Utc>>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, kind, reason, until, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope) DO UPDATE SET kind = ?2, reason = ?3, until = ?4, updated_at = ?5",
        )
        .bind(scope)
        .bind(kind)
        .bind(reason)
        .bind(until.map(timestamp))
        .bind(timestamp(Utc::now()))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes the pause of `scope`, if any.
    pub async fn clear_pause(&self, scope: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pauses WHERE scope = ?1")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets every recorded pause: at start the dispatcher knows of none, and meets again
    /// whatever still holds (a refused token, a used-up day).
    pub async fn clear_pauses(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pauses").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every recorded pause.
    pub async fn pauses(&self) -> Result<Vec<PauseRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT scope, kind, reason, until FROM pauses ORDER BY scope")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The error history of one write, oldest first.
    pub async fn error_history(&self, trace_id: &str) -> Result<Vec<ErrorRecord>, StoreError> {
        let rows: Vec<ErrorRow> = sqlx::query_as(
            "SELECT trace_id, attempt, http_status, category, message, correlation_id, raw
             FROM error_history WHERE trace_id = ?1 ORDER BY id",
        )
        .bind(trace_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ErrorRecord {
                trace_id: r.trace_id,
                attempt: r.attempt.max(0) as u32,
                status: r.http_status.clamp(0, 999) as u16,
                category: r.category,
                message: r.message,
                correlation_id: r.correlation_id,
                raw: r.raw.unwrap_or_default(),
            })
            .collect())
    }
}

/// A row of `error_history` as stored.
#[derive(sqlx::FromRow)]
struct ErrorRow {
    trace_id: String,
    attempt: i64,
    http_status: i64,
    category: Option<String>,
    message: String,
    correlation_id: Option<String>,
    raw: Option<String>,
}

async fn insert_errors(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    batch_id: Option<&str>,
    errors: &[ErrorRecord],
) -> Result<(), StoreError> {
    for e in errors {
        sqlx::query(
            "INSERT INTO error_history (trace_id, attempt, batch_id, http_status, category, message, correlation_id, raw)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
