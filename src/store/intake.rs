//! Rows that producers inserted with plain SQL arrive with `validated = 0`: the daemon
//! checks them once, then either stores the canonical form or marks them `failed`.

use super::{Store, StoreError, timestamp};

/// A row that no one has validated yet.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct UnvalidatedRow {
    pub id: i64,
    pub trace_id: String,
    pub object_type: String,
    pub operation: String,
    pub id_property: Option<String>,
    pub record_key: Option<String>,
    pub properties: String,
    pub associations: String,
}

/// What validation decided for one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Validation {
    /// Valid: store the canonical JSON texts (values as strings, HubSpot's shape).
    Accept {
        id: i64,
        properties: String,
        associations: String,
        /// What orders the writes to its record (see `NewWrite::order_key`).
        order_key: Option<String>,
        /// Some association points at a write by trace id: the write waits for it.
        references: bool,
    },
    /// Invalid: the row becomes `failed` with this `last_error`.
    Reject { id: i64, error: String },
}

impl Store {
    /// Up to `limit` unvalidated rows, oldest first.
    pub async fn unvalidated_rows(&self, limit: i64) -> Result<Vec<UnvalidatedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, operation, id_property, record_key, properties,
                    associations FROM outbox
             WHERE validated = 0 ORDER BY id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Applies validation outcomes in one transaction. A row that someone else changed
    /// meanwhile (no longer `validated = 0`) is left alone. Accepted rows that point at
    /// writes wait for them, and writes waiting for a rejected row fail (see
    /// [`super::references`]). Returns the rows changed.
    pub async fn settle_validation(&self, outcomes: &[Validation]) -> Result<u64, StoreError> {
        let when = chrono::Utc::now();
        let now = timestamp(when);
        let mut tx = self.begin_write().await?;
        let mut changed = 0;
        let (mut traces, mut with_refs, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        for outcome in outcomes {
            let done = match outcome {
                Validation::Accept {
                    id,
                    properties,
                    associations,
                    order_key,
                    references,
                } => {
                    let trace: Option<String> = sqlx::query_scalar(
                        "UPDATE outbox SET properties = ?2, associations = ?3, order_key = ?5,
                                validated = 1, updated_at = ?4
                         WHERE id = ?1 AND validated = 0 RETURNING trace_id",
                    )
                    .bind(id)
                    .bind(properties)
                    .bind(associations)
                    .bind(&now)
                    .bind(order_key)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if let Some(trace) = trace {
                        traces.push(trace);
                        if *references {
                            with_refs.push(*id);
                        }
                        changed += 1;
                    }
                    continue;
                }
                Validation::Reject { id, error } => {
                    let done = sqlx::query(
                        "UPDATE outbox SET state = 'failed', last_error = ?2, validated = 1,
                                updated_at = ?3
                         WHERE id = ?1 AND validated = 0",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    // The history says why, like any other failure (attempt 0: never sent).
                    sqlx::query(
                        "INSERT INTO error_history (trace_id, attempt, http_status, category, message)
                         SELECT trace_id, 0, 0, 'INVALID_WRITE', ?2 FROM outbox
                         WHERE id = ?1 AND ?3 > 0",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(done.rows_affected() as i64)
                    .execute(&mut *tx)
                    .await?;
                    rejected.push(*id);
                    done
                }
            };
            changed += done.rows_affected();
        }
        let traces: Vec<&str> = traces.iter().map(String::as_str).collect();
        super::references::accepted(&mut tx, &traces, &with_refs, when).await?;
        super::references::settled(&mut tx, &rejected, when).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
