//! Writes that wait for writes (issue 11): the waiting set and its changes. A write whose
//! associations point at queued writes by trace id is `waiting`, with one `waits_for` row
//! per write it points at. Whenever writes settle (succeed, fail, are discarded), the
//! writes waiting for them are looked up by trace id (never by scanning the waiting set)
//! and decided by [`crate::model::references::resolve`], in the same transaction as the change that settled them:
//! a crash leaves either both or neither.
//!
//! Every function here runs inside its caller's write transaction, and works on sets:
//! a handful of statements for a group of writes, whatever its size, so 10,000 contacts
//! pointing at one company cost no more round trips than one. Where a statement picks
//! writes by id, `+state` keeps SQLite from scanning the index of every write in that
//! state instead (the waiting or succeeded set may hold millions).

mod cycle;

use crate::store::{StoreError, timestamp};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;
use std::collections::HashSet;

use super::SqliteStore;
use crate::store::references::{REFERENCE_CATEGORY, ReferenceStore, TargetRow, judge};
use cycle::{find_cycle, on_cycles};

#[async_trait]
impl ReferenceStore for SqliteStore {
    async fn expire_missing_references(
        &self,
        cutoff: DateTime<Utc>,
        waited: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        // A cheap look first: most polls have nothing to do and take no write lock.
        let any: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM waits_for INDEXED BY waits_for_missing
                            WHERE missing_since IS NOT NULL AND missing_since <= ?1)",
        )
        .bind(timestamp(cutoff))
        .fetch_one(&self.pool)
        .await?;
        if !any {
            return Ok(0);
        }
        let mut tx = self.begin_write().await?;
        // Read again under the write lock: a write may have arrived since.
        let overdue: Vec<(i64, String, bool)> = sqlx::query_as(
            "SELECT w.write_id, w.trace_id,
                    EXISTS (SELECT 1 FROM outbox AS o WHERE o.trace_id = w.trace_id)
                    OR EXISTS (SELECT 1 FROM purged_traces AS p WHERE p.trace_id = w.trace_id)
             FROM waits_for AS w INDEXED BY waits_for_missing
             JOIN outbox AS x ON x.id = w.write_id AND +x.state = 'waiting'
             WHERE w.missing_since IS NOT NULL AND w.missing_since <= ?1",
        )
        .bind(timestamp(cutoff))
        .fetch_all(&mut *tx)
        .await?;
        let now_text = timestamp(now);
        let mut failures: Vec<(i64, String)> = Vec::new();
        let mut failing: HashSet<i64> = HashSet::new();
        let mut arrived: Vec<(i64, String)> = Vec::new();
        for (write_id, trace_id, exists) in overdue {
            if exists {
                arrived.push((write_id, trace_id));
            } else if failing.insert(write_id) {
                failures.push((
                    write_id,
                    format!(
                        "associations: no write `{trace_id}` was enqueued within references.wait_for_missing ({waited})"
                    ),
                ));
            }
        }
        let failed = failures.len() as u64;
        // Arrived by a path that did not say so: no longer missing.
        let traces: Vec<&str> = arrived.iter().map(|(_, t)| t.as_str()).collect();
        sqlx::query(
            "UPDATE waits_for SET missing_since = NULL WHERE trace_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(serde_json::to_string(&traces).expect("strings serialize"))
        .execute(&mut *tx)
        .await?;
        decide(
            &mut tx,
            arrived.iter().map(|(id, _)| *id).collect(),
            &now_text,
        )
        .await?;
        fail_and_cascade(&mut tx, failures, &now_text).await?;
        tx.commit().await?;
        Ok(failed)
    }

    async fn resolve_waiting(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        // A write pointed at that was deleted (by hand) is missing from now on, so the
        // writes waiting for it fail after `references.wait_for_missing`, not never.
        sqlx::query(
            "UPDATE waits_for SET missing_since = ?1
             WHERE missing_since IS NULL
               AND NOT EXISTS (SELECT 1 FROM outbox AS o WHERE o.trace_id = waits_for.trace_id)
               AND NOT EXISTS (SELECT 1 FROM purged_traces AS p WHERE p.trace_id = waits_for.trace_id)",
        )
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await?;
        let due = settled_anywhere(&mut tx, now).await?;
        tx.commit().await?;
        Ok(due)
    }
}

/// Writes just stored (by the socket's ingest or the intake, a retry included): `traces`
/// all of them, `with_refs` (ids) those whose associations point at writes. These wait
/// for what they point at, or are decided at once; a write that closes a reference cycle
/// fails naming it.
pub(super) async fn accepted(
    conn: &mut SqliteConnection,
    traces: &[&str],
    with_refs: &[i64],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    let now_text = timestamp(now);
    if !with_refs.is_empty() {
        let ids = serde_json::to_string(with_refs).expect("ids serialize");
        wait(conn, &ids, &now_text).await?;
        // Only a write that something waits for (a reference to it, or a later write to
        // its record) can be on a cycle: the walk is skipped for all others.
        let suspects: Vec<i64> = sqlx::query_scalar(
            "SELECT o.id FROM outbox AS o
             WHERE o.id IN (SELECT value FROM json_each(?1)) AND +o.state = 'waiting'
               AND (EXISTS (SELECT 1 FROM waits_for AS w WHERE w.trace_id = o.trace_id)
                    OR (o.order_key IS NOT NULL AND EXISTS (
                        SELECT 1 FROM outbox AS l INDEXED BY outbox_order
                        WHERE l.object_type = o.object_type AND l.order_key = o.order_key
                          AND l.id > o.id AND l.state IN ('pending', 'waiting', 'in_flight'))))
             ORDER BY o.id",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        fail_cycles(conn, &suspects, &now_text, |cycle| {
            format!(
                "associations: closes a reference cycle ({cycle}): none of these writes could ever be sent"
            )
        })
        .await?;
        // Those pointing at a write already settled (or purged) are decided now; the rest
        // wait for a change.
        let settled: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT w.write_id FROM waits_for AS w
             LEFT JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE w.write_id IN (SELECT value FROM json_each(?1))
               AND (o.state IN ('succeeded', 'failed', 'discarded')
                    OR (o.id IS NULL AND EXISTS (SELECT 1 FROM purged_traces AS p
                                                 WHERE p.trace_id = w.trace_id)))",
        )
        .bind(&ids)
        .fetch_all(&mut *conn)
        .await?;
        decide(conn, settled, &now_text).await?;
    }
    let all = serde_json::to_string(traces).expect("strings serialize");
    // The common case, nothing waits for a newcomer, costs this one look-up.
    let awaited: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM json_each(?1) AS j JOIN waits_for AS w ON w.trace_id = j.value)",
    )
    .bind(&all)
    .fetch_one(&mut *conn)
    .await?;
    if !awaited {
        return Ok(());
    }
    // A newcomer that waiting writes point at may close a cycle through its record's
    // order: it waits behind an earlier write to the same record that waits for it.
    let pointed_at: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT o.id FROM json_each(?1) AS j
         JOIN waits_for AS w ON w.trace_id = j.value
         JOIN outbox AS o ON o.trace_id = j.value
         WHERE o.order_key IS NOT NULL AND +o.state = 'pending'",
    )
    .bind(&all)
    .fetch_all(&mut *conn)
    .await?;
    fail_cycles(conn, &pointed_at, &now_text, |cycle| {
        format!(
            "closes a reference cycle ({cycle}): it waits behind an earlier write to the \
             same record, which waits for it"
        )
    })
    .await?;
    // Writes that waited for a newcomer no longer wait for a missing one.
    sqlx::query(
        "UPDATE waits_for SET missing_since = NULL
         WHERE missing_since IS NOT NULL AND trace_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&all)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes among `ids` have just settled (succeeded, failed, discarded): the writes that
/// wait for them are decided.
pub(super) async fn settled(
    conn: &mut SqliteConnection,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<(), StoreError> {
    if ids.is_empty() {
        return Ok(());
    }
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT w.write_id FROM outbox AS o JOIN waits_for AS w ON w.trace_id = o.trace_id
         WHERE o.id IN (SELECT value FROM json_each(?1))
           AND +o.state IN ('succeeded', 'failed', 'discarded')",
    )
    .bind(serde_json::to_string(ids).expect("ids serialize"))
    .fetch_all(&mut *conn)
    .await?;
    decide(conn, waiting, &timestamp(now)).await?;
    Ok(())
}

/// Every waiting write that a settled write unblocks, found by a scan of the waiting set:
/// for changes made by a selection (an operator's discard) and once at start, after
/// anything done to the table while the daemon was stopped.
pub(super) async fn settled_anywhere(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    // What a write no longer waiting (a discarded one) or gone waited for is forgotten.
    sqlx::query(
        "DELETE FROM waits_for WHERE write_id IN (
             SELECT w.write_id FROM waits_for AS w LEFT JOIN outbox AS o ON o.id = w.write_id
             WHERE o.id IS NULL OR +o.state != 'waiting')",
    )
    .execute(&mut *conn)
    .await?;
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT w.write_id FROM waits_for AS w
         JOIN outbox AS o ON o.trace_id = w.trace_id
         WHERE +o.state IN ('succeeded', 'failed', 'discarded')",
    )
    .fetch_all(&mut *conn)
    .await?;
    decide(conn, waiting, &timestamp(now)).await
}

/// Makes pending writes (`ids`, a JSON array) wait for the writes their associations
/// point at: their associations as written are kept, and one `waits_for` row per trace
/// id, `missing_since` set for the ones not in the outbox. SQLite reads the references
/// out of the stored JSON itself.
async fn wait(conn: &mut SqliteConnection, ids: &str, now: &str) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE outbox SET state = 'waiting', referenced_associations = associations, updated_at = ?2
         WHERE id IN (SELECT value FROM json_each(?1)) AND +state = 'pending'",
    )
    .bind(ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    // A retried write waits afresh.
    sqlx::query("DELETE FROM waits_for WHERE write_id IN (SELECT value FROM json_each(?1))")
        .bind(ids)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT OR IGNORE INTO waits_for (trace_id, write_id, missing_since)
         SELECT r.trace_id, r.write_id,
                CASE WHEN EXISTS (SELECT 1 FROM outbox AS t WHERE t.trace_id = r.trace_id)
                       OR EXISTS (SELECT 1 FROM purged_traces AS p WHERE p.trace_id = r.trace_id)
                     THEN NULL ELSE ?2 END
         FROM (SELECT a.value ->> '$.to.objectWriteTraceId' AS trace_id, o.id AS write_id
               FROM outbox AS o, json_each(o.associations) AS a
               WHERE o.id IN (SELECT value FROM json_each(?1)) AND +o.state = 'waiting') AS r
         WHERE r.trace_id IS NOT NULL",
    )
    .bind(ids)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Decides waiting writes (`ids`) by [`crate::model::references::resolve`]: ready ones get their associations with
/// HubSpot ids and are due now; failing ones fail, and the writes waiting for them are
/// decided in turn (a chain fails level by level, in this one transaction). A few
/// statements per level, however many writes. Returns the writes that became due.
async fn decide(
    conn: &mut SqliteConnection,
    mut ids: Vec<i64>,
    now: &str,
) -> Result<u64, StoreError> {
    let mut due = 0;
    while !ids.is_empty() {
        let set = serde_json::to_string(&ids).expect("ids serialize");
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT id, object_type, associations FROM outbox
             WHERE id IN (SELECT value FROM json_each(?1)) AND +state = 'waiting'",
        )
        .bind(&set)
        .fetch_all(&mut *conn)
        .await?;
        let targets: Vec<TargetRow> = sqlx::query_as(
            "SELECT w.write_id, w.trace_id, o.state, o.object_type, o.hubspot_id, o.last_error,
                    EXISTS (SELECT 1 FROM purged_traces AS p WHERE p.trace_id = w.trace_id) AS purged
             FROM waits_for AS w LEFT JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE w.write_id IN (SELECT value FROM json_each(?1))",
        )
        .bind(&set)
        .fetch_all(&mut *conn)
        .await?;
        let (ready, failures) = judge(rows, targets);
        due += make_due(conn, &ready, now).await?;
        let failed = fail(conn, &failures, now).await?;
        ids = dependents(conn, &failed).await?;
    }
    Ok(due)
}

/// Ready writes get their resolved associations and are due `now`.
async fn make_due(
    conn: &mut SqliteConnection,
    ready: &[(i64, String)],
    now: &str,
) -> Result<u64, StoreError> {
    if ready.is_empty() {
        return Ok(0);
    }
    let payload = serde_json::to_string(ready).expect("pairs serialize");
    let done = sqlx::query(
        "UPDATE outbox SET state = 'pending', associations = r.value ->> 1, next_attempt_at = ?2,
                updated_at = ?2
         FROM json_each(?1) AS r
         WHERE outbox.id = r.value ->> 0 AND +outbox.state = 'waiting'",
    )
    .bind(&payload)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM waits_for WHERE write_id IN (SELECT value ->> 0 FROM json_each(?1))")
        .bind(&payload)
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected())
}

/// Of the writes `ids`, fails each that is on a reference cycle, with `why(cycle)` (the
/// cycle in words), and decides the writes waiting for it.
async fn fail_cycles(
    conn: &mut SqliteConnection,
    ids: &[i64],
    now: &str,
    why: impl Fn(&str) -> String,
) -> Result<(), StoreError> {
    let ids = serde_json::to_string(ids).expect("ids serialize");
    for id in on_cycles(conn, &ids).await? {
        // Named again one at a time: failing one write may have broken the next cycle.
        if let Some(cycle) = find_cycle(conn, id).await? {
            fail_and_cascade(conn, vec![(id, why(&cycle))], now).await?;
        }
    }
    Ok(())
}

/// Fails writes (each with its error) and decides the writes waiting for them.
async fn fail_and_cascade(
    conn: &mut SqliteConnection,
    failures: Vec<(i64, String)>,
    now: &str,
) -> Result<(), StoreError> {
    let failed = fail(conn, &failures, now).await?;
    let waiting = dependents(conn, &failed).await?;
    decide(conn, waiting, now).await?;
    Ok(())
}

/// Marks waiting (or newly pending) writes failed, each with its error recorded in its
/// history (attempt 0: it was never sent for this), and drops what they waited for.
/// Returns the trace ids of the writes it failed (a write no longer waiting or pending
/// is left alone).
async fn fail(
    conn: &mut SqliteConnection,
    failures: &[(i64, String)],
    now: &str,
) -> Result<Vec<String>, StoreError> {
    if failures.is_empty() {
        return Ok(Vec::new());
    }
    let payload = serde_json::to_string(failures).expect("pairs serialize");
    let failed: Vec<(i64, String, String)> = sqlx::query_as(
        "UPDATE outbox SET state = 'failed', last_error = f.value ->> 1, updated_at = ?2
         FROM json_each(?1) AS f
         WHERE outbox.id = f.value ->> 0 AND +outbox.state IN ('waiting', 'pending')
         RETURNING outbox.id, outbox.trace_id, outbox.last_error",
    )
    .bind(&payload)
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let history: Vec<(&str, &str)> = failed
        .iter()
        .map(|(_, trace, error)| (trace.as_str(), error.as_str()))
        .collect();
    sqlx::query(
        "INSERT INTO error_history (trace_id, attempt, http_status, category, message)
         SELECT h.value ->> 0, 0, 0, ?2, h.value ->> 1 FROM json_each(?1) AS h",
    )
    .bind(serde_json::to_string(&history).expect("pairs serialize"))
    .bind(REFERENCE_CATEGORY)
    .execute(&mut *conn)
    .await?;
    let ids: Vec<i64> = failed.iter().map(|(id, _, _)| *id).collect();
    sqlx::query("DELETE FROM waits_for WHERE write_id IN (SELECT value FROM json_each(?1))")
        .bind(serde_json::to_string(&ids).expect("ids serialize"))
        .execute(&mut *conn)
        .await?;
    Ok(failed.into_iter().map(|(_, trace, _)| trace).collect())
}

/// The writes waiting for any of the writes `traces`.
async fn dependents(
    conn: &mut SqliteConnection,
    traces: &[String],
) -> Result<Vec<i64>, StoreError> {
    if traces.is_empty() {
        return Ok(Vec::new());
    }
    Ok(sqlx::query_scalar(
        "SELECT DISTINCT write_id FROM waits_for WHERE trace_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(serde_json::to_string(traces).expect("strings serialize"))
    .fetch_all(&mut *conn)
    .await?)
}
