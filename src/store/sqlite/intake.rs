//! Rows that producers inserted with plain SQL arrive with `validated = 0`: the daemon
//! checks them once, then either stores the canonical form or marks them `failed`.

use crate::store::{StoreError, timestamp};
use async_trait::async_trait;

use super::SqliteStore;
use crate::store::intake::{IntakeStore, UnvalidatedRow, Validation};

#[async_trait]
impl IntakeStore for SqliteStore {
    async fn unvalidated_rows(&self, limit: i64) -> Result<Vec<UnvalidatedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, operation, id_property, record_key, properties,
                    associations FROM outbox
             WHERE validated = 0 ORDER BY id LIMIT ?1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn settle_validation(&self, outcomes: &[Validation]) -> Result<u64, StoreError> {
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
