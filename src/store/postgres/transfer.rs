//! Export and import on PostgreSQL (see [`crate::store::transfer`]). The export is one
//! `REPEATABLE READ` transaction (one snapshot however long it pages); the import is one
//! transaction whose rows are marked as the daemon's own (`ingest_marker`), so the insert
//! guard keeps their state. Times travel as text in SQLite's format, JSON
//! columns as their text.

use async_trait::async_trait;
use sqlx::{Postgres, Transaction};

use super::PgStore;
use crate::store::StoreError;
use crate::store::transfer::{
    BatchLogRow, ExportTx, HistoryRow, ImportTx, PurgedRow, TransferStore, UsageRow, WaitRow,
    WriteRow, page_json,
};

struct PgExport {
    tx: Transaction<'static, Postgres>,
}

struct PgImport {
    tx: Transaction<'static, Postgres>,
    /// What waits for what, inserted at the commit (see [`PgImport::commit`]).
    waits: Vec<WaitRow>,
}

#[async_trait]
impl TransferStore for PgStore {
    async fn begin_export(&self) -> Result<Box<dyn ExportTx>, StoreError> {
        let tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await?;
        Ok(Box::new(PgExport { tx }))
    }

    async fn begin_import(&self) -> Result<Box<dyn ImportTx>, StoreError> {
        let mut tx = self.begin_write().await?;
        super::mark_own_inserts(&mut tx).await?;
        // Times without a zone are UTC, as SQLite takes them (a producer may have written
        // one into `created_at`), whatever the server's or role's time zone.
        sqlx::query("SET LOCAL TimeZone = 'UTC'")
            .execute(&mut *tx)
            .await?;
        Ok(Box::new(PgImport {
            tx,
            waits: Vec::new(),
        }))
    }
}

#[async_trait]
impl ExportTx for PgExport {
    async fn writes(&mut self, after_id: i64, limit: i64) -> Result<Vec<WriteRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, object_type, operation, id_property, record_key, order_key,
                    properties::text AS properties, associations::text AS associations,
                    referenced_associations::text AS referenced_associations,
                    associations_done::text AS associations_done,
                    state, step, hubspot_id, new_record, attempts, last_error, validated,
                    outbox_ts(next_attempt_at) AS next_attempt_at, batch_id, split_to, note,
                    outbox_ts(first_failed_at) AS first_failed_at, sent_with, read_by,
                    outbox_ts(created_at) AS created_at, outbox_ts(updated_at) AS updated_at
             FROM outbox WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn waits(&mut self) -> Result<Vec<WaitRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT w.trace_id, o.trace_id AS write_trace_id,
                    outbox_ts(w.missing_since) AS missing_since
             FROM waits_for AS w JOIN outbox AS o ON o.id = w.write_id
             ORDER BY w.write_id, w.trace_id",
        )
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn history(&mut self, after_id: i64, limit: i64) -> Result<Vec<HistoryRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, trace_id, attempt, batch_id, outbox_ts(at) AS at, http_status,
                    category, message, correlation_id, raw
             FROM error_history WHERE id > $1 ORDER BY id LIMIT $2",
        )
        .bind(after_id)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn batches(&mut self, after: &str, limit: i64) -> Result<Vec<BatchLogRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT batch_id, object_type, size, http_status, outcome, duration_ms,
                    correlation_id, outbox_ts(sent_at) AS sent_at,
                    outbox_ts(finished_at) AS finished_at
             FROM batch_log WHERE batch_id > $1 ORDER BY batch_id LIMIT $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&mut *self.tx)
        .await?)
    }

    async fn purged(&mut self, after: &str, limit: i64) -> Result<Vec<PurgedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT trace_id, outbox_ts(purged_at) AS purged_at FROM purged_traces
             WHERE trace_id > $1 ORDER BY trace_id LIMIT $2",
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
impl ImportTx for PgImport {
    async fn record_import(
        &mut self,
        export_id: &str,
        exported_at: &str,
        source: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "INSERT INTO imports (export_id, exported_at, source) VALUES ($1, $2, $3)
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
             WHERE trace_id IN (SELECT r ->> 'trace_id' FROM jsonb_array_elements($1::text::jsonb) AS r)
             UNION ALL
             SELECT trace_id FROM purged_traces
             WHERE trace_id IN (SELECT r ->> 'trace_id' FROM jsonb_array_elements($1::text::jsonb) AS r)",
        )
        .bind(&page)
        .fetch_all(&mut *self.tx)
        .await?;
        if !taken.is_empty() {
            return Ok(taken);
        }
        // The statement trigger counts the unfinished rows in the queue.
        sqlx::query(
            "INSERT INTO outbox (trace_id, object_type, operation, id_property, record_key,
                                 order_key, properties, associations, referenced_associations,
                                 associations_done, state, step, hubspot_id, new_record,
                                 attempts, last_error, validated, next_attempt_at, batch_id,
                                 split_to, note, first_failed_at, sent_with, read_by,
                                 created_at, updated_at)
             SELECT r ->> 'trace_id', r ->> 'object_type', r ->> 'operation',
                    r ->> 'id_property', r ->> 'record_key', r ->> 'order_key',
                    (r ->> 'properties')::jsonb, (r ->> 'associations')::jsonb,
                    (r ->> 'referenced_associations')::jsonb, (r ->> 'associations_done')::jsonb,
                    r ->> 'state', r ->> 'step', r ->> 'hubspot_id',
                    (r ->> 'new_record')::boolean, (r ->> 'attempts')::bigint, r ->> 'last_error',
                    (r ->> 'validated')::boolean, (r ->> 'next_attempt_at')::timestamptz,
                    r ->> 'batch_id', (r ->> 'split_to')::bigint, r ->> 'note',
                    (r ->> 'first_failed_at')::timestamptz, r ->> 'sent_with', r ->> 'read_by',
                    (r ->> 'created_at')::timestamptz, (r ->> 'updated_at')::timestamptz
             FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n)
             ORDER BY e.n",
        )
        .bind(&page)
        .execute(&mut *self.tx)
        .await?;
        Ok(Vec::new())
    }

    /// Held until the commit: see [`PgImport::commit`].
    async fn add_waits(&mut self, rows: &[WaitRow]) -> Result<(), StoreError> {
        self.waits.extend_from_slice(rows);
        Ok(())
    }

    async fn add_history(&mut self, rows: &[HistoryRow]) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO error_history (trace_id, attempt, batch_id, at, http_status, category,
                                        message, correlation_id, raw)
             SELECT r ->> 'trace_id', (r ->> 'attempt')::bigint, r ->> 'batch_id',
                    (r ->> 'at')::timestamptz, (r ->> 'http_status')::bigint, r ->> 'category',
                    r ->> 'message', r ->> 'correlation_id', r ->> 'raw'
             FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS e(r, n)
             ORDER BY e.n",
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
             SELECT r ->> 'batch_id', r ->> 'object_type', (r ->> 'size')::bigint,
                    (r ->> 'http_status')::bigint, r ->> 'outcome',
                    (r ->> 'duration_ms')::bigint, r ->> 'correlation_id',
                    (r ->> 'sent_at')::timestamptz, (r ->> 'finished_at')::timestamptz
             FROM jsonb_array_elements($1::text::jsonb) AS r
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
             SELECT r ->> 'trace_id', (r ->> 'purged_at')::timestamptz
             FROM jsonb_array_elements($1::text::jsonb) AS r
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
             SELECT r ->> 'day', (r ->> 'requests')::bigint
             FROM jsonb_array_elements($1::text::jsonb) AS r
             ON CONFLICT (day) DO UPDATE SET requests = daily_usage.requests + excluded.requests",
        )
        .bind(page_json(rows))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Registers what waits for what under the reference bookkeeping's lock (see
    /// `lock_references`), taken only now: held for the whole import it would stop every
    /// daemon's settling for as long as the file takes to read. The waits are few (a row
    /// exists only while its write waits).
    async fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        super::lock_references(&mut self.tx).await?;
        for page in self.waits.chunks(500) {
            sqlx::query(
                "INSERT INTO waits_for (trace_id, write_id, missing_since)
                 SELECT r ->> 'trace_id',
                        (SELECT id FROM outbox WHERE trace_id = r ->> 'write_trace_id'),
                        (r ->> 'missing_since')::timestamptz
                 FROM jsonb_array_elements($1::text::jsonb) AS r",
            )
            .bind(page_json(page))
            .execute(&mut *self.tx)
            .await?;
        }
        super::unmark_own_inserts(&mut self.tx).await?;
        self.tx.commit().await?;
        Ok(())
    }
}
