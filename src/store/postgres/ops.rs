//! What operators ask of the outbox and do to it, on PostgreSQL. Every change is one
//! short transaction, safe while daemons run. A selection (by trace id or by filter) is
//! read first, its rows locked, then changed by trace id in the same transaction: each
//! statement then has only the parameters it uses, as PostgreSQL requires.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::audit::{Actor, Change};
use crate::store::ops::{
    Bucket, DepthRow, FailedRow, Filter, OpsStore, Purgeable, Selection, Sent, SentIn,
};
use crate::store::{StoreError, timestamp};

/// The writes of one state matching a filter, newest change first: $1..$4 object type,
/// category, since, limit; $5 the state.
macro_rules! by_filter {
    () => {
        "SELECT o.trace_id FROM outbox AS o
         LEFT JOIN failed_writes AS f ON f.trace_id = o.trace_id
         WHERE o.state = $5 AND ($1::text IS NULL OR o.object_type = $1)
           AND ($2::text IS NULL OR f.category = $2)
           AND ($3::timestamptz IS NULL OR o.updated_at >= $3::timestamptz)
         ORDER BY o.updated_at DESC LIMIT $4"
    };
}

#[async_trait]
impl OpsStore for PgStore {
    async fn queue_depth(&self) -> Result<Vec<DepthRow>, StoreError> {
        // A daemon folds what the triggers appended (see `counts`); a command only reads
        // (its role may only read), and the view sums the same.
        if self.owner.is_some() {
            self.fold_write_counts().await?;
        }
        Ok(sqlx::query_as(
            "SELECT object_type, state, sum(writes)::bigint AS writes FROM queue_depth
             GROUP BY object_type, state ORDER BY object_type, state",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn oldest_pending(&self) -> Result<Option<String>, StoreError> {
        // As on SQLite: the pending write stored first (lowest id) of each type that has
        // any, from the pending writes' (object type, id) index, where min(created_at)
        // read every pending row (80 ms with 20,000 pending at a million writes).
        Ok(sqlx::query_scalar(
            "SELECT outbox_ts(created_at) FROM outbox WHERE id =
               (SELECT min((SELECT min(o.id) FROM outbox AS o
                            WHERE o.state = 'pending' AND o.object_type = c.object_type))
                FROM (SELECT DISTINCT object_type FROM queue_depth WHERE state = 'pending') AS c)",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn sent_since(&self, since: DateTime<Utc>) -> Result<Sent, StoreError> {
        Ok(sqlx::query_as(
            "SELECT count(*) AS requests, coalesce(sum(size), 0)::bigint AS writes FROM batch_log WHERE sent_at >= $1::timestamptz",
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
            "SELECT substr(outbox_ts(sent_at), 1, $2::int) AS bucket, count(*) AS requests,
                    coalesce(sum(size), 0)::bigint AS writes
             FROM batch_log WHERE sent_at >= $1::timestamptz GROUP BY 1 ORDER BY 1",
        )
        .bind(timestamp(since))
        .bind(bucket.prefix_len())
        .fetch_all(&self.pool)
        .await?)
    }

    async fn failed_writes(&self, filter: &Filter) -> Result<Vec<FailedRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT trace_id, object_type, operation, id_property, record_key, attempts, category,
                    message, correlation_id, outbox_ts(failed_at) AS failed_at
             FROM failed_writes
             WHERE ($1::text IS NULL OR object_type = $1) AND ($2::text IS NULL OR category = $2)
               AND ($3::timestamptz IS NULL OR failed_at >= $3::timestamptz)
             ORDER BY failed_at DESC LIMIT $4",
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
            "UPDATE outbox SET properties = $2::text::jsonb, record_key = $4, state = 'pending', attempts = 0,
                    validated = false, next_attempt_at = $3::timestamptz, split_to = NULL, batch_id = NULL,
                    first_failed_at = NULL, step = 'record', associations_done = NULL,
                    new_record = NULL, hubspot_id = CASE WHEN operation = 'create' THEN hubspot_id END,
                    updated_at = $3::timestamptz
             WHERE trace_id = $1 AND state IN ('failed', 'unconfirmed')
               AND outbox_ts(updated_at) = $5",
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
        let n: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE state = $1 AND updated_at < $2::timestamptz",
        )
        .bind(state.as_str())
        .bind(timestamp(before))
        .fetch_one(&self.pool)
        .await?;
        Ok(n.max(0) as u64)
    }

    async fn fold_counts(&self) -> Result<(), StoreError> {
        self.fold_write_counts().await?;
        // The queue's count changes too (reading the queue's state folds them), which
        // otherwise are folded only when a producer enqueues over the socket or an
        // operator asks for the status.
        crate::store::queue::QueueStore::queue_state(self).await?;
        Ok(())
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
            "SELECT id, trace_id FROM outbox WHERE state = $1 AND updated_at < $2::timestamptz
             ORDER BY updated_at LIMIT $3 FOR UPDATE SKIP LOCKED",
        )
        .bind(state.as_str())
        .bind(timestamp(before))
        .bind(limit as i64)
        .fetch_all(&mut *tx)
        .await?;
        if doomed.is_empty() {
            // Ended here, not left to the drop: the locks go at once.
            tx.rollback().await?;
            return Ok(0);
        }
        let (ids, traces): (Vec<i64>, Vec<String>) = doomed.into_iter().unzip();
        sqlx::query(
            "INSERT INTO purged_traces (trace_id, purged_at)
             SELECT t, $2::timestamptz FROM unnest($1::text[]) AS t
             ON CONFLICT (trace_id) DO NOTHING",
        )
        .bind(&traces)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM error_history WHERE trace_id = ANY($1)")
            .bind(&traces)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM outbox WHERE id = ANY($1)")
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
            "DELETE FROM batch_log WHERE batch_id IN
               (SELECT batch_id FROM batch_log WHERE sent_at < $1::timestamptz ORDER BY sent_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }

    async fn forget_traces(&self, before: DateTime<Utc>, limit: usize) -> Result<u64, StoreError> {
        self.delete_older(
            "DELETE FROM purged_traces WHERE trace_id IN
               (SELECT trace_id FROM purged_traces WHERE purged_at < $1::timestamptz
                ORDER BY purged_at LIMIT $2)",
            before,
            limit,
        )
        .await
    }
}

impl PgStore {
    async fn count(&self, op: Op, selection: &Selection) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let n = selected(&mut tx, op, selection, false).await?.len();
        tx.rollback().await?;
        Ok(n as u64)
    }

    async fn change_selection(
        &self,
        op: Op,
        selection: &Selection,
        by: &Actor,
    ) -> Result<u64, StoreError> {
        let now = Utc::now();
        let mut tx = self.begin_write().await?;
        if matches!(op, Op::Discard) {
            // Discarding settles writes: ordered with the other settling transactions.
            super::lock_references(&mut tx).await?;
        }
        let traces = selected(&mut tx, op, selection, true).await?;
        let sql = match op {
            Op::Retry => {
                "UPDATE outbox SET state = 'pending', attempts = 0, validated = false,
                        next_attempt_at = $2::timestamptz, split_to = NULL, batch_id = NULL,
                        first_failed_at = NULL, updated_at = $2::timestamptz
                 WHERE trace_id = ANY($1) AND state IN ('failed', 'unconfirmed')"
            }
            _ => {
                "UPDATE outbox SET state = 'discarded', updated_at = $2::timestamptz
                 WHERE trace_id = ANY($1) AND state IN ('failed', 'unconfirmed', 'waiting')"
            }
        };
        let done = sqlx::query(sql)
            .bind(&traces)
            .bind(timestamp(now))
            .execute(&mut *tx)
            .await?;
        if matches!(op, Op::Discard) {
            // Writes waiting for a discarded write fail, naming it.
            super::references::settled_anywhere(&mut tx, now).await?;
        }
        let change = Change {
            action: match op {
                Op::Discard | Op::CountDiscard => "discard",
                Op::Retry | Op::Count => "retry",
            },
            target: &selection.describe(),
            detail: None,
        };
        super::audit::record(&mut tx, by, &change, done.rows_affected(), now).await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    /// One short transaction of a bounded delete: `sql` takes the cut-off time ($1) and
    /// the most rows ($2).
    async fn delete_older(
        &self,
        sql: &'static str,
        before: DateTime<Utc>,
        limit: usize,
    ) -> Result<u64, StoreError> {
        let done = sqlx::query(sql)
            .bind(timestamp(before))
            .bind(limit as i64)
            .execute(&self.pool)
            .await?;
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

/// The trace ids of the writes `selection` holds for `op`, locked for the change when
/// `lock`: by trace id, the named writes that are failed or unconfirmed (or waiting, to
/// discard); by filter, the writes in the filter's state, newest change first, up to its
/// limit.
async fn selected(
    tx: &mut sqlx::PgConnection,
    op: Op,
    selection: &Selection,
    lock: bool,
) -> Result<Vec<String>, StoreError> {
    let discard = matches!(op, Op::CountDiscard | Op::Discard);
    let (filter, state): (&Filter, &str) = match selection {
        Selection::TraceIds(ids) => {
            let sql = match lock {
                true => {
                    "SELECT trace_id FROM outbox WHERE trace_id = ANY($1)
                       AND (state IN ('failed', 'unconfirmed') OR ($2 AND state = 'waiting'))
                     ORDER BY id FOR UPDATE"
                }
                false => {
                    "SELECT trace_id FROM outbox WHERE trace_id = ANY($1)
                       AND (state IN ('failed', 'unconfirmed') OR ($2 AND state = 'waiting'))"
                }
            };
            return Ok(sqlx::query_scalar(sql)
                .bind(ids)
                .bind(discard)
                .fetch_all(&mut *tx)
                .await?);
        }
        Selection::Failed(f) => (f, "failed"),
        Selection::Unconfirmed(f) => (f, "unconfirmed"),
        Selection::Matching(q) => return super::browse::matching_ids(tx, q, lock).await,
    };
    let sql = match lock {
        true => concat!(by_filter!(), " FOR UPDATE OF o"),
        false => by_filter!(),
    };
    Ok(sqlx::query_scalar(sql)
        .bind(&filter.object_type)
        .bind(&filter.category)
        .bind(filter.since.map(timestamp))
        .bind(filter.limit)
        .bind(state)
        .fetch_all(&mut *tx)
        .await?)
}
