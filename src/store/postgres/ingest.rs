//! Storing accepted writes on PostgreSQL: a whole group of socket requests in one
//! transaction, as on SQLite. A commit returns once PostgreSQL has made it durable
//! (`synchronous_commit` at its default, `on`), so there is nothing left to sync after.

use crate::store::StoreError;
use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::store::ingest::{ExistingWrite, IngestStore, IngestTx, RowToStore, rows_as_json};

#[async_trait]
impl IngestStore for PgStore {
    async fn begin_ingest(&self) -> Result<Box<dyn IngestTx>, StoreError> {
        let mut tx = self.begin_write().await?;
        // This transaction's inserts are the daemon's own, validated on the way in: the
        // insert guard makes any other insert an unvalidated pending write.
        super::mark_own_inserts(&mut tx).await?;
        // Before any change: registering writes that wait for writes is ordered with
        // the transactions that settle them (see `lock_references`).
        super::lock_references(&mut tx).await?;
        Ok(Box::new(PgIngestTx { tx }))
    }

    /// A commit is durable when it returns.
    async fn make_durable(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

#[async_trait]
impl IngestTx for PgIngestTx {
    async fn find_existing(
        &mut self,
        trace_ids: &[&str],
    ) -> Result<Vec<ExistingWrite>, StoreError> {
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query_as(
            "SELECT trace_id, object_type, operation, id_property, record_key,
                    properties::text AS properties,
                    coalesce(referenced_associations, associations)::text AS associations,
                    false AS purged
             FROM outbox WHERE trace_id = ANY($1)
             UNION ALL
             SELECT trace_id, '', 'create', NULL, NULL, '{}', '[]', true FROM purged_traces
             WHERE trace_id = ANY($1)",
        )
        .bind(trace_ids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows)
    }

    async fn insert_validated(&mut self, rows: &[RowToStore]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let payload = rows_as_json(rows);
        // The statement triggers count the rows in the queue and notify listeners.
        let done = sqlx::query(
            "INSERT INTO outbox (trace_id, object_type, properties, associations, operation,
                                 id_property, record_key, order_key, validated)
             SELECT r.value ->> 0, r.value ->> 1, r.value -> 2, r.value -> 3, r.value ->> 4,
                    r.value ->> 5, r.value ->> 6, r.value ->> 7, true
             FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(value, n)
             ORDER BY r.n",
        )
        .bind(payload)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != rows.len() as u64 {
            return Err(StoreError::Sqlx(sqlx::Error::Protocol(format!(
                "inserted {} rows, expected {}",
                done.rows_affected(),
                rows.len()
            ))));
        }
        Ok(())
    }

    async fn settle_references(&mut self, rows: &[RowToStore]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let traces: Vec<&str> = rows.iter().map(|r| r.trace_id.as_str()).collect();
        let referring: Vec<&str> = rows
            .iter()
            .filter(|r| r.references)
            .map(|r| r.trace_id.as_str())
            .collect();
        let with_refs: Vec<i64> = if referring.is_empty() {
            Vec::new()
        } else {
            sqlx::query_scalar("SELECT id FROM outbox WHERE trace_id = ANY($1) ORDER BY id")
                .bind(&referring)
                .fetch_all(&mut *self.tx)
                .await?
        };
        super::references::accepted(&mut self.tx, &traces, &with_refs, chrono::Utc::now()).await?;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.rollback().await?)
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        super::unmark_own_inserts(&mut self.tx).await?;
        Ok(self.tx.commit().await?)
    }
}

/// An open ingest transaction (holding the reference bookkeeping's lock). Dropping it
/// without [`IngestTx::commit`] rolls back.
pub struct PgIngestTx {
    tx: Transaction<'static, Postgres>,
}
