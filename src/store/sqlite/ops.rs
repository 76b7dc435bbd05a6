//! What operators ask of the outbox and do to it: counts, failed writes, putting writes
//! back in the queue, giving them up, and retention. Every change is one short
//! `BEGIN IMMEDIATE` transaction, safe while the daemon runs.

use super::SqliteStore;
use crate::store::audit::{Actor, Change};
use crate::store::ops::{
    Bucket, DepthRow, FailedRow, Filter, OpsStore, Purgeable, Selection, Sent, SentIn,
};
use crate::store::{StoreError, timestamp};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

// The two ways of selecting writes. Parameters: ?1 the trace ids as a JSON array, or ?1..?4
// object type, category, since, limit with ?5 the state; ?6 is the time of the change.
macro_rules! by_ids {
    () => {
        " WHERE state IN ('failed', 'unconfirmed') AND trace_id IN (SELECT value FROM json_each(?1))"
    };
}

macro_rules! by_ids_or_waiting {
    () => {
        " WHERE state IN ('failed', 'unconfirmed', 'waiting') AND trace_id IN (SELECT value FROM json_each(?1))"
    };
}

macro_rules! by_filter {
    () => {
        " WHERE state = ?5 AND trace_id IN (
            SELECT o.trace_id FROM outbox AS o LEFT JOIN failed_writes AS f ON f.trace_id = o.trace_id
            WHERE o.state = ?5 AND (?1 IS NULL OR o.object_type = ?1) AND (?2 IS NULL OR f.category = ?2)
              AND (?3 IS NULL OR o.updated_at >= ?3)
            ORDER BY o.updated_at DESC LIMIT coalesce(CAST(?4 AS INTEGER), -1))"
    };
}

macro_rules! count_head {
    () => {
        "SELECT count(*) FROM outbox"
    };
}

macro_rules! retry_head {
    () => {
        "UPDATE outbox SET state = 'pending', attempts = 0, validated = 0, next_attempt_at = ?6,
                split_to = NULL, batch_id = NULL, first_failed_at = NULL, updated_at = ?6"
    };
}

macro_rules! discard_head {
    () => {
        "UPDATE outbox SET state = 'discarded', updated_at = ?6"
    };
}

#[async_trait]
impl OpsStore for SqliteStore {
    async fn queue_depth(&self) -> Result<Vec<DepthRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT object_type, state, sum(writes) AS writes FROM queue_depth
             GROUP BY object_type, state ORDER BY object_type, state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn oldest_pending(&self) -> Result<Option<String>, StoreError> {
        // The pending write stored first (lowest id) of each type that has any, from the
        // (state, object_type) index: a few index look-ups, where min(created_at) read
        // every pending row (30 ms with 20,000 pending). Ids follow the order writes were
        // stored in; only an import's writes are newer by id than their age says.
        Ok(sqlx::query_scalar(
            "SELECT created_at FROM outbox WHERE id =
               (SELECT min((SELECT min(o.id) FROM outbox AS o
                            WHERE o.state = 'pending' AND o.object_type = c.object_type))
                FROM (SELECT DISTINCT object_type FROM write_counts
                      WHERE state = 'pending' AND writes > 0) AS c)",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sent_since(&self, since: DateTime<Utc>) -> Result<Sent, StoreError> {
        Ok(sqlx::query_as(
            "SELECT count(*) AS requests, coalesce(sum(size), 0) AS writes FROM batch_log WHERE sent_at >= ?1",
        )
        .bind(timestamp(since))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn sent_by(
        &self,
        since: DateTime<Utc>,
        bucket: Bucket,
    ) -> Result<Vec<SentIn>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT substr(sent_at, 1, ?2) AS bucket, count(*) AS requests, coalesce(sum(size), 0) AS writes
             FROM batch_log WHERE sent_at >= ?1 GROUP BY bucket ORDER BY bucket",
        )
        .bind(timestamp(since))
        .bind(bucket.prefix_len())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn failed_writes(&self, filter: &Filter) -> Result<Vec<FailedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT trace_id, object_type, operation, id_property, record_key, attempts, category,
                    message, correlation_id, failed_at
             FROM failed_writes
             WHERE (?1 IS NULL OR object_type = ?1) AND (?2 IS NULL OR category = ?2)
               AND (?3 IS NULL OR failed_at >= ?3)
             ORDER BY failed_at DESC LIMIT coalesce(?4, -1)",
        )
        .bind(&filter.object_type)
        .bind(&filter.category)
        .bind(filter.since.map(timestamp))
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn count_selection(&self, selection: &Selection) -> Result<u64, StoreError> {
        self.count(Op::Count, selection).await
    }

    async fn count_discard(&self, selection: &Selection) -> Result<u64, StoreError> {
        self.count(Op::CountDiscard, selection).await
    }

    async fn retry_writes(&self, selection: &Selection, by: &Actor) -> Result<u64, StoreError> {
        self.change_selection(Op::Retry, selection, by).await
    }

    async fn discard_writes(&self, selection: &Selection, by: &Actor) -> Result<u64, StoreError> {
        self.change_selection(Op::Discard, selection, by).await
    }

    async fn edit_and_retry(
        &self,
        trace_id: &str,
        properties: &str,
        record_key: Option<&str>,
        seen_at: &str,
        by: &Actor,
        what: &str,
    ) -> Result<bool, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(
            "UPDATE outbox SET properties = ?2, record_key = ?4, state = 'pending', attempts = 0,
                    validated = 0, next_attempt_at = ?3, split_to = NULL, batch_id = NULL,
                    first_failed_at = NULL, step = 'record', associations_done = NULL,
                    new_record = NULL, hubspot_id = CASE WHEN operation = 'create' THEN hubspot_id END,
                    updated_at = ?3
             WHERE trace_id = ?1 AND state IN ('failed', 'unconfirmed') AND updated_at = ?5",
        )
        .bind(trace_id)
        .bind(properties)
        .bind(timestamp(now))
        .bind(record_key)
        .bind(seen_at)
        .execute(&mut *tx)
        .await?;
        let changed = done.rows_affected() == 1;
        if changed {
            let change = Change {
                action: "edit",
                target: trace_id,
                detail: Some(what),
            };
            super::audit::record(&mut tx, by, &change, 1, now).await?;
        }
        tx.commit().await?;
        Ok(changed)
    }

    async fn count_purgeable(
        &self,
        state: Purgeable,
        before: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let n: i64 =
            sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = ?1 AND updated_at < ?2")
                .bind(state.as_str())
                .bind(timestamp(before))
                .fetch_one(&self.pool)
                .await?;
        Ok(n.max(0) as u64)
    }

    async fn purge_batch(
        &self,
        state: Purgeable,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let now = timestamp(Utc::now());
        let mut tx = self.begin_write().await?;
        let doomed: Vec<(i64, String)> = sqlx::query_as(
            "SELECT id, trace_id FROM outbox WHERE state = ?1 AND updated_at < ?2 ORDER BY updated_at LIMIT ?3",
        )
        .bind(state.as_str())
        .bind(timestamp(before))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        if doomed.is_empty() {
            // Ended here, not left to the drop: the write lock goes at once.
            tx.rollback().await?;
            return Ok(0);
        }
        let ids = serde_json::to_string(&doomed.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .expect("ids serialize");
        let traces = serde_json::to_string(&doomed.iter().map(|(_, t)| t).collect::<Vec<_>>())
            .expect("trace ids serialize");
        sqlx::query(
            "INSERT OR IGNORE INTO purged_traces (trace_id, purged_at)
             SELECT value, ?2 FROM json_each(?1)",
        )
        .bind(&traces)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "DELETE FROM error_history WHERE trace_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&traces)
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query("DELETE FROM outbox WHERE id IN (SELECT value FROM json_each(?1))")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn purge_batch_log(
        &self,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        self.delete_older(
            "DELETE FROM batch_log WHERE rowid IN
               (SELECT rowid FROM batch_log WHERE sent_at < ?1 ORDER BY sent_at LIMIT ?2)",
            before,
            limit,
        )
        .await
    }

    async fn forget_traces(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.delete_older(
            "DELETE FROM purged_traces WHERE trace_id IN
               (SELECT trace_id FROM purged_traces WHERE purged_at < ?1 ORDER BY purged_at LIMIT ?2)",
            before,
            limit,
        )
        .await
    }
}

impl SqliteStore {
    async fn count(&self, op: Op, selection: &Selection) -> Result<u64, StoreError> {
        if let Selection::Matching(q) = selection {
            // Every write in a state: the counts have it (reading 10,000 failed writes one
            // by one took 0.2 s at a million writes).
            if q.only_state() {
                let n: i64 = sqlx::query_scalar(
                    "SELECT coalesce(sum(writes), 0) FROM write_counts
                     WHERE state = ?1 AND state IN ('failed', 'unconfirmed')",
                )
                .bind(q.state.as_deref())
                .fetch_one(&self.pool)
                .await?;
                return Ok(n.max(0) as u64);
            }
            let mut conn = self.pool.acquire().await?;
            return Ok(super::browse::matching_ids(&mut conn, q).await?.len() as u64);
        }
        let (sql, args) = selection_sql(op, selection);
        let mut query = sqlx::query_scalar::<_, i64>(sql);
        for a in args {
            query = query.bind(a);
        }
        Ok(query.fetch_one(&self.pool).await?.max(0) as u64)
    }

    async fn change_selection(
        &self,
        op: Op,
        selection: &Selection,
        by: &Actor,
    ) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        // Everything the dashboard's filter matches is read in this transaction, then
        // changed by trace id: nothing can enter or leave the selection in between.
        let matched = match selection {
            Selection::Matching(q) => Some(Selection::TraceIds(
                super::browse::matching_ids(&mut tx, q).await?,
            )),
            _ => None,
        };
        let (sql, args) = selection_sql(op, matched.as_ref().unwrap_or(selection));
        let mut query = sqlx::query(sql);
        for a in args {
            query = query.bind(a);
        }
        let done = query.bind(timestamp(now)).execute(&mut *tx).await?;
        if matches!(op, Op::Discard) {
            // Writes waiting for a discarded write fail, naming it.
            super::references::settled_anywhere(&mut tx, now).await?;
        }
        let change = Change {
            action: op.action(),
            target: &selection.describe(),
            detail: None,
        };
        super::audit::record(&mut tx, by, &change, done.rows_affected(), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One short transaction of a bounded delete: `sql` takes the cut-off time (?1) and
    /// the most rows (?2).
    async fn delete_older(
        &self,
        sql: &'static str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(sql)
            .bind(timestamp(before))
            .bind(limit as i64)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}

/// The operation a selection is used for.
#[derive(Clone, Copy)]
enum Op {
    Count,
    CountDiscard,
    Retry,
    Discard,
}

impl Op {
    /// The audit log's name for a change.
    fn action(self) -> &'static str {
        match self {
            Self::Discard | Self::CountDiscard => "discard",
            Self::Retry | Self::Count => "retry",
        }
    }
}

/// The constant statement for an operation on a selection, and its parameters ?1..?5. A
/// [`Selection::Matching`] is read into trace ids by the caller first; passed here, it
/// selects nothing.
fn selection_sql(op: Op, selection: &Selection) -> (&'static str, Vec<Option<String>>) {
    let by_id = matches!(selection, Selection::TraceIds(_) | Selection::Matching(_));
    let sql = match (op, by_id) {
        (Op::Count, true) => concat!(count_head!(), by_ids!()),
        (Op::CountDiscard, true) => concat!(count_head!(), by_ids_or_waiting!()),
        (Op::Count | Op::CountDiscard, false) => concat!(count_head!(), by_filter!()),
        (Op::Retry, true) => concat!(retry_head!(), by_ids!()),
        (Op::Retry, false) => concat!(retry_head!(), by_filter!()),
        (Op::Discard, true) => concat!(discard_head!(), by_ids_or_waiting!()),
        (Op::Discard, false) => concat!(discard_head!(), by_filter!()),
    };
    let (filter, state) = match selection {
        Selection::TraceIds(ids) => {
            let ids = serde_json::to_string(ids).expect("strings serialize");
            return (sql, vec![Some(ids), None, None, None, None]);
        }
        Selection::Matching(_) => return (sql, vec![Some("[]".into()), None, None, None, None]),
        Selection::Failed(f) => (f, "failed"),
        Selection::Unconfirmed(f) => (f, "unconfirmed"),
    };
    let args = vec![
        filter.object_type.clone(),
        filter.category.clone(),
        filter.since.map(timestamp),
        filter.limit.map(|l| l.to_string()),
        Some(state.to_owned()),
    ];
    (sql, args)
}
