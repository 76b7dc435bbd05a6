//! Export and import on SQLite (see [`crate::store::transfer`]). The export is one read
//! transaction (WAL: it sees the database as of its first statement however long it
//! pages); the import is one `BEGIN IMMEDIATE` transaction, its rows marked as the
//! daemon's own like a socket ingest's.

use async_trait::async_trait;
use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::transfer::{
    BatchLogRow, ExportTx, HistoryRow, ImportTx, PurgedRow, TransferStore, UsageRow, WaitRow,
    WriteRow, page_json, unfinished,
};

struct SqliteExport {
    tx: Transaction<'static, Sqlite>,
}

struct SqliteImport {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl TransferStore for SqliteStore {
    async fn begin_export(&self) -> Result<Box<dyn ExportTx>, StoreError> {
        Ok(Box::new(SqliteExport {
            tx: self.pool.begin().await?,
        }))
    }

    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError> {
        let mut tx = self.begin_write().await?;
        // The daemon's own rows (migration 0007): the insert guard leaves their state
        // alone, the cap does not refuse them, the count is kept below.
        sqlx::query("INSERT INTO ingest_marker (id) VALUES (1)")
            .execute(&mut *tx)
            .await?;
        Ok(Box::new(SqliteImport { tx }))
    }
}

#[async_trait]
impl ExportTx for SqliteExport {
    async fn writes(&mut self, after_id: i64, limit: i64) -> Result<Vec<WriteRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, operation, id_property, record_key, order_key,
                    properties, associations, referenced_associations, associations_done,
                    state, step, hubspot_id, new_record, attempts, last_error, validated,
                    next_attempt_at, batch_id, split_to, note, first_failed_at, sent_with,
                    read_by, created_at, updated_at
             FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn waits(&mut self) -> Result<Vec<WaitRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT w.trace_id, o.trace_id AS write_trace_id, w.missing_since
             FROM waits_for AS w JOIN outbox AS o ON o.id = w.write_id
             ORDER BY w.write_id, w.trace_id",
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn history(&mut self, after_id: i64, limit: i64) -> Result<Vec<HistoryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, attempt, batch_id, at, http_status, category, message,
                    correlation_id, raw
             FROM error_history WHERE id > ?1 ORDER BY id LIMIT ?2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn batches(&mut self, after: &str, limit: i64) -> Result<Vec<BatchLogRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT batch_id, object_type, size, http_status, outcome, duration_ms,
                    correlation_id, sent_at, finished_at
             FROM batch_log WHERE batch_id > ?1 ORDER BY batch_id LIMIT ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn purged(&mut self, after: &str, limit: i64) -> Result<Vec<PurgedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT trace_id, purged_at FROM purged_traces
             WHERE trace_id > ?1 ORDER BY trace_id LIMIT ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn usage(&mut self) -> Result<Vec<UsageRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT day, requests FROM daily_usage ORDER BY day")
                .fetch_all(&mut *self.tx)
                .await?,
        )
    }
}

#[async_trait]
impl ImportTx for SqliteImport {
    async fn record_import(
        &mut self,
        export_id: &str,
        exported_at: &str,
        source: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO imports (export_id, exported_at, source) VALUES (?1, ?2, ?3)
             ON CONFLICT (export_id) DO NOTHING",
        )
        .bind(export_id)
        .bind(exported_at)
        .bind(source)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn add_writes(&mut self, rows: &[WriteRow]) -> Result<Vec<String>, StoreError> {
        let page = page_json(rows);
        let taken: Vec<String> = sqlx::query_scalar(
            "SELECT trace_id FROM outbox
             WHERE trace_id IN (SELECT value ->> 'trace_id' FROM json_each(?1))
             UNION ALL
             SELECT trace_id FROM purged_traces
             WHERE trace_id IN (SELECT value ->> 'trace_id' FROM json_each(?1))",
        )
        .bind(&page)
        .fetch_all(&mut *self.tx)
        .await?;
        if !taken.is_empty() {
            return Ok(taken);
        }
        sqlx::query(
            "INSERT INTO outbox (trace_id, object_type, operation, id_property, record_key,
                                 order_key, properties, associations, referenced_associations,
                                 associations_done, state, step, hubspot_id, new_record,
                                 attempts, last_error, validated, next_attempt_at, batch_id,
                                 split_to, note, first_failed_at, sent_with, read_by,
                                 created_at, updated_at)
             SELECT value ->> 'trace_id', value ->> 'object_type', value ->> 'operation',
                    value ->> 'id_property', value ->> 'record_key', value ->> 'order_key',
                    value ->> 'properties', value ->> 'associations',
                    value ->> 'referenced_associations', value ->> 'associations_done',
                    value ->> 'state', value ->> 'step', value ->> 'hubspot_id',
                    value ->> 'new_record', value ->> 'attempts', value ->> 'last_error',
                    value ->> 'validated', value ->> 'next_attempt_at', value ->> 'batch_id',
                    value ->> 'split_to', value ->> 'note', value ->> 'first_failed_at',
                    value ->> 'sent_with', value ->> 'read_by', value ->> 'created_at',
                    value ->> 'updated_at'
             FROM json_each(?1) ORDER BY key",
        )
        .bind(&page)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE queue_state SET queued = queued + ?1")
            .bind(unfinished(rows))
            .execute(&mut *self.tx)
            .await?;
        Ok(Vec::new())
    }

    async fn add_waits(&mut self, rows: &[WaitRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO waits_for (trace_id, write_id, missing_since)
             SELECT value ->> 'trace_id',
                    (SELECT id FROM outbox WHERE trace_id = value ->> 'write_trace_id'),
                    value ->> 'missing_since'
             FROM json_each(?1)",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn add_history(&mut self, rows: &[HistoryRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO error_history (trace_id, attempt, batch_id, at, http_status, category,
                                        message, correlation_id, raw)
             SELECT value ->> 'trace_id', value ->> 'attempt', value ->> 'batch_id',
                    value ->> 'at', value ->> 'http_status', value ->> 'category',
                    value ->> 'message', value ->> 'correlation_id', value ->> 'raw'
             FROM json_each(?1) ORDER BY key",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn add_batches(&mut self, rows: &[BatchLogRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome,
                                    duration_ms, correlation_id, sent_at, finished_at)
             SELECT value ->> 'batch_id', value ->> 'object_type', value ->> 'size',
                    value ->> 'http_status', value ->> 'outcome', value ->> 'duration_ms',
                    value ->> 'correlation_id', value ->> 'sent_at', value ->> 'finished_at'
             FROM json_each(?1) WHERE true
             ON CONFLICT (batch_id) DO NOTHING",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn add_purged(&mut self, rows: &[PurgedRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO purged_traces (trace_id, purged_at)
             SELECT value ->> 'trace_id', value ->> 'purged_at' FROM json_each(?1) WHERE true
             ON CONFLICT (trace_id) DO NOTHING",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn add_usage(&mut self, rows: &[UsageRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO daily_usage (day, requests)
             SELECT value ->> 'day', value ->> 'requests' FROM json_each(?1) WHERE true
             ON CONFLICT (day) DO UPDATE SET requests = requests + excluded.requests",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM ingest_marker")
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
