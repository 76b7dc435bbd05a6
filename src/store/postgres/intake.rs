//! Rows that producers inserted with plain SQL arrive with `NOT validated`: the daemon
//! checks them once, then either stores the canonical form or marks them `failed`.

use crate::store::{StoreError, timestamp};
use async_trait::async_trait;

use super::PgStore;
use crate::store::intake::{IntakeStore, UnvalidatedRow, Validation};

#[async_trait]
impl IntakeStore for PgStore {
    async fn unvalidated_rows(&self, limit: i64) -> Result<Vec<UnvalidatedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, operation, id_property, record_key,
                    properties::text AS properties, associations::text AS associations FROM outbox
             WHERE NOT validated ORDER BY id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn settle_validation(&self, outcomes: &[Validation]) -> Result<u64, StoreError> {
        let when = chrono::Utc::now();
        let now = timestamp(when);
        let mut tx = self.begin_write().await?;
        // Two daemons may validate the same row: the first change wins (`NOT validated`),
        // the other changes nothing.
        super::lock_references(&mut tx).await?;
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
                        "UPDATE outbox SET properties = $2::text::jsonb, associations = $3::text::jsonb,
                                order_key = $5, validated = true, updated_at = $4::timestamptz
                         WHERE id = $1 AND NOT validated RETURNING trace_id",
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
                        "UPDATE outbox SET state = 'failed', last_error = $2, validated = true,
                                updated_at = $3::timestamptz
                         WHERE id = $1 AND NOT validated",
                    )
                    .bind(id)
                    .bind(error)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    // The history says why, like any other failure (attempt 0: never sent).
                    sqlx::query(
                        "INSERT INTO error_history (trace_id, attempt, http_status, category, message)
                         SELECT trace_id, 0, 0, 'INVALID_WRITE', $2 FROM outbox
                         WHERE id = $1 AND $3 > 0",
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
