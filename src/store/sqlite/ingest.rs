//! Storing accepted writes. One transaction holds a whole group of socket requests (group
//! commit): look up the trace ids that may already exist, insert the new rows in one
//! statement, commit once. The committer then fsyncs once for every group committed
//! meanwhile ([`super::SqliteStore::sync_wal`]) before acknowledging any of them.

use crate::store::StoreError;
use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::store::ingest::{ExistingWrite, IngestStore, IngestTx, RowToStore, rows_as_json};

#[async_trait]
impl IngestStore for SqliteStore {
    async fn begin_ingest(&self) -> Result<Box<dyn IngestTx>, StoreError> {
        Ok(Box::new(SqliteIngestTx {
            tx: self.ingest.begin_with("BEGIN IMMEDIATE").await?,
        }))
    }

    async fn make_durable(&self) -> Result<(), StoreError> {
        self.sync_wal().await
    }
}

#[async_trait]
impl IngestTx for SqliteIngestTx {
    async fn find_existing(
        &mut self,
        trace_ids: &[&str],
    ) -> Result<Vec<ExistingWrite>, StoreError> {
        if trace_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = serde_json::to_string(trace_ids).expect("strings serialize");
        let rows = sqlx::query_as(
            "SELECT trace_id, object_type, operation, id_property, record_key, properties,
                    coalesce(referenced_associations, associations) AS associations, 0 AS purged
             FROM outbox
             WHERE trace_id IN (SELECT value FROM json_each(?1))
             UNION ALL
             SELECT trace_id, '', 'create', NULL, NULL, '{}', '[]', 1 FROM purged_traces
             WHERE trace_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows)
    }

    async fn insert_validated(&mut self, rows: &[RowToStore]) -> Result<(), StoreError> {
        if rows.is_empty() {
            return Ok(());
        }
        let payload = rows_as_json(rows);
        // Marks these inserts as the daemon's own, validated on the way in (migration 0007:
        // any other insert is made an unvalidated pending write); gone before the commit.
        sqlx::query("INSERT INTO ingest_marker (id) VALUES (1)")
            .execute(&mut *self.tx)
            .await?;
        let done = sqlx::query(
            "INSERT INTO outbox (trace_id, object_type, properties, associations, operation,
                                 id_property, record_key, order_key, validated)
             SELECT value ->> 0, value ->> 1, value -> 2, value -> 3, value ->> 4, value ->> 5,
                    value ->> 6, value ->> 7, 1
             FROM json_each(?1) ORDER BY key",
        )
        .bind(payload)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("DELETE FROM ingest_marker")
            .execute(&mut *self.tx)
            .await?;
        // The queue's count (migration 0008), once for the group rather than per row.
        sqlx::query("UPDATE queue_state SET queued = queued + ?1")
            .bind(done.rows_affected() as i64)
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
            sqlx::query_scalar(
                "SELECT o.id FROM json_each(?1) AS j JOIN outbox AS o ON o.trace_id = j.value
                 ORDER BY o.id",
            )
            .bind(serde_json::to_string(&referring).expect("strings serialize"))
            .fetch_all(&mut *self.tx)
            .await?
        };
        super::references::accepted(&mut self.tx, &traces, &with_refs, chrono::Utc::now()).await?;
        Ok(())
    }

    async fn rollback(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.rollback().await?)
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        Ok(self.tx.commit().await?)
    }
}

/// An open ingest transaction (holding SQLite's write lock). Dropping it without
/// [`IngestTx::commit`] rolls back.
pub struct SqliteIngestTx {
    tx: Transaction<'static, Sqlite>,
}
