//! Writes that wait for writes (issue 11): the waiting set and its changes. A write whose
//! associations point at queued writes by trace id is `waiting`, with one `waits_for` row
//! per write it points at. Whenever writes settle (succeed, fail, are discarded), the
//! writes waiting for them are looked up by trace id (never by scanning the waiting set)
//! and decided by [`resolve`], in the same transaction as the change that settled them:
//! a crash leaves either both or neither.
//!
//! Every function here runs inside its caller's write transaction.

use std::collections::{HashMap, HashSet, VecDeque};

use chrono::{DateTime, Utc};
use sqlx::SqliteConnection;

use super::{Store, StoreError, timestamp};
use crate::model::Association;
use crate::model::references::{Found, Resolution, referenced, resolve};

/// The most writes a cycle check visits; past it, the write is taken to close no cycle
/// (a chain that long is far beyond any real use).
const MAX_CYCLE_WALK: usize = 10_000;

/// The category of the error history entry a failed reference leaves.
pub const REFERENCE_CATEGORY: &str = "REFERENCE";

/// Writes just stored (by the socket's ingest or the intake, a retry included): `traces`
/// all of them, `with_refs` (ids) those whose associations point at writes. These wait
/// for what they point at, or are decided at once; a write that closes a reference cycle
/// fails naming it. Returns the writes that became due.
pub(super) async fn accepted(
    conn: &mut SqliteConnection,
    traces: &[&str],
    with_refs: &[i64],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let now_text = timestamp(now);
    let mut due = 0;
    for &id in with_refs {
        wait(conn, id, &now_text).await?;
        match find_cycle(conn, id).await? {
            Some(cycle) => {
                let error = format!(
                    "associations: closes a reference cycle ({cycle}): none of these writes could ever be sent"
                );
                due += fail_and_cascade(conn, id, &error, &now_text).await?;
            }
            None => due += decide(conn, vec![id], &now_text).await?,
        }
    }
    // A newcomer that waiting writes point at may close a cycle through its record's
    // order: it waits behind an earlier write to the same record that waits for it.
    let all = serde_json::to_string(traces).expect("strings serialize");
    let pointed_at: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT o.id FROM json_each(?1) AS j
         JOIN waits_for AS w ON w.trace_id = j.value
         JOIN outbox AS o ON o.trace_id = j.value
         WHERE o.order_key IS NOT NULL AND o.state IN ('pending', 'waiting')",
    )
    .bind(&all)
    .fetch_all(&mut *conn)
    .await?;
    for id in pointed_at.into_iter().filter(|id| !with_refs.contains(id)) {
        if let Some(cycle) = find_cycle(conn, id).await? {
            let error = format!(
                "closes a reference cycle ({cycle}): it waits behind an earlier write to the \
                 same record, which waits for it"
            );
            due += fail_and_cascade(conn, id, &error, &now_text).await?;
        }
    }
    // Writes that waited for a newcomer no longer wait for a missing one.
    sqlx::query(
        "UPDATE waits_for SET missing_since = NULL
         WHERE missing_since IS NOT NULL AND trace_id IN (SELECT value FROM json_each(?1))",
    )
    .bind(&all)
    .execute(&mut *conn)
    .await?;
    Ok(due)
}

/// Writes among `ids` have just settled (succeeded, failed, discarded): the writes that
/// wait for them are decided. Returns the writes that became due.
pub(super) async fn settled(
    conn: &mut SqliteConnection,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT w.write_id FROM outbox AS o JOIN waits_for AS w ON w.trace_id = o.trace_id
         WHERE o.id IN (SELECT value FROM json_each(?1))
           AND o.state IN ('succeeded', 'failed', 'discarded')",
    )
    .bind(serde_json::to_string(ids).expect("ids serialize"))
    .fetch_all(&mut *conn)
    .await?;
    decide(conn, waiting, &timestamp(now)).await
}

/// Every waiting write that a settled write unblocks, found by a scan of the waiting set:
/// for changes made by a selection (an operator's discard) and once at start, after
/// anything done to the table while the daemon was stopped.
pub(super) async fn settled_anywhere(
    conn: &mut SqliteConnection,
    now: DateTime<Utc>,
) -> Result<u64, StoreError> {
    let waiting: Vec<i64> = sqlx::query_scalar(
        "SELECT DISTINCT w.write_id FROM waits_for AS w
         JOIN outbox AS o ON o.trace_id = w.trace_id
         WHERE o.state IN ('succeeded', 'failed', 'discarded')",
    )
    .fetch_all(&mut *conn)
    .await?;
    decide(conn, waiting, &timestamp(now)).await
}

impl Store {
    /// Fails the waiting writes that have pointed at a trace id not in the outbox since
    /// before `cutoff` (`references.wait_for_missing` ago, spelt `waited` in the error),
    /// and the writes that wait for them. Returns how many failed for want of one.
    pub async fn expire_missing_references(
        &self,
        cutoff: DateTime<Utc>,
        waited: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError> {
        let overdue: Vec<(i64, String)> = sqlx::query_as(
            "SELECT write_id, trace_id FROM waits_for INDEXED BY waits_for_missing
             WHERE missing_since IS NOT NULL AND missing_since <= ?1",
        )
        .bind(timestamp(cutoff))
        .fetch_all(&self.pool)
        .await?;
        if overdue.is_empty() {
            return Ok(0);
        }
        let now_text = timestamp(now);
        let mut tx = self.begin_write().await?;
        let mut failed = 0;
        for (write_id, trace_id) in overdue {
            let arrived: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE trace_id = ?1)
                     OR EXISTS (SELECT 1 FROM purged_traces WHERE trace_id = ?1)",
            )
            .bind(&trace_id)
            .fetch_one(&mut *tx)
            .await?;
            if arrived {
                sqlx::query("UPDATE waits_for SET missing_since = NULL WHERE trace_id = ?1")
                    .bind(&trace_id)
                    .execute(&mut *tx)
                    .await?;
                decide(&mut tx, vec![write_id], &now_text).await?;
                continue;
            }
            let error = format!(
                "associations: no write `{trace_id}` was enqueued within references.wait_for_missing ({waited})"
            );
            fail_and_cascade(&mut tx, write_id, &error, &now_text).await?;
            failed += 1;
        }
        tx.commit().await?;
        Ok(failed)
    }

    /// Decides every waiting write whose referenced writes have settled (see
    /// [`settled_anywhere`]). Returns the writes that became due.
    pub async fn resolve_waiting(&self, now: DateTime<Utc>) -> Result<u64, StoreError> {
        let mut tx = self.begin_write().await?;
        let due = settled_anywhere(&mut tx, now).await?;
        tx.commit().await?;
        Ok(due)
    }
}

/// Makes a write wait for the writes its associations point at: its associations as
/// written are kept, and one `waits_for` row per trace id, `missing_since` set for the
/// ones not in the outbox.
async fn wait(conn: &mut SqliteConnection, id: i64, now: &str) -> Result<(), StoreError> {
    let associations: Option<String> = sqlx::query_scalar(
        "UPDATE outbox SET state = 'waiting', referenced_associations = associations, updated_at = ?2
         WHERE id = ?1 AND state = 'pending' RETURNING associations",
    )
    .bind(id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(associations) = associations else {
        return Ok(());
    };
    let parsed: Vec<Association> = serde_json::from_str(&associations).unwrap_or_default();
    let traces: Vec<&str> = referenced(&parsed)
        .into_iter()
        .map(|t| t.as_str())
        .collect();
    sqlx::query("DELETE FROM waits_for WHERE write_id = ?1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    sqlx::query(
        "INSERT INTO waits_for (trace_id, write_id, missing_since)
         SELECT j.value, ?2,
                CASE WHEN EXISTS (SELECT 1 FROM outbox WHERE trace_id = j.value)
                       OR EXISTS (SELECT 1 FROM purged_traces WHERE trace_id = j.value)
                     THEN NULL ELSE ?3 END
         FROM json_each(?1) AS j",
    )
    .bind(serde_json::to_string(&traces).expect("strings serialize"))
    .bind(id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A referenced write as [`decide`] reads it.
#[derive(sqlx::FromRow)]
struct TargetRow {
    trace_id: String,
    state: Option<String>,
    object_type: Option<String>,
    hubspot_id: Option<String>,
    last_error: Option<String>,
    purged: bool,
}

/// Decides waiting writes (`ids`) by [`resolve`]: ready ones get their associations with
/// HubSpot ids and are due now; failing ones fail, and the writes waiting for them are
/// decided in turn (a chain fails level by level, in this one transaction). Returns the
/// writes that became due.
async fn decide(conn: &mut SqliteConnection, ids: Vec<i64>, now: &str) -> Result<u64, StoreError> {
    let mut queue: VecDeque<i64> = ids.into();
    let mut due = 0;
    while let Some(id) = queue.pop_front() {
        let row: Option<(String, String)> = sqlx::query_as(
            "SELECT object_type, associations FROM outbox WHERE id = ?1 AND state = 'waiting'",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
        let Some((object_type, associations)) = row else {
            continue;
        };
        let targets: Vec<TargetRow> = sqlx::query_as(
            "SELECT w.trace_id, o.state, o.object_type, o.hubspot_id, o.last_error,
                    EXISTS (SELECT 1 FROM purged_traces AS p WHERE p.trace_id = w.trace_id) AS purged
             FROM waits_for AS w LEFT JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE w.write_id = ?1",
        )
        .bind(id)
        .fetch_all(&mut *conn)
        .await?;
        let found: HashMap<String, Found> = targets
            .into_iter()
            .filter_map(|t| {
                let found = match (t.state, t.object_type) {
                    (Some(state), Some(object_type)) => Found::Row {
                        state,
                        object_type,
                        hubspot_id: t.hubspot_id,
                        last_error: t.last_error,
                    },
                    _ if t.purged => Found::Purged,
                    _ => return None,
                };
                Some((t.trace_id, found))
            })
            .collect();
        let parsed: Vec<Association> = serde_json::from_str(&associations).unwrap_or_default();
        match resolve(&object_type, &parsed, &found) {
            Resolution::Wait { .. } => {}
            Resolution::Ready(resolved) => {
                sqlx::query(
                    "UPDATE outbox SET state = 'pending', associations = ?2, next_attempt_at = ?3,
                            updated_at = ?3
                     WHERE id = ?1 AND state = 'waiting'",
                )
                .bind(id)
                .bind(resolved)
                .bind(now)
                .execute(&mut *conn)
                .await?;
                sqlx::query("DELETE FROM waits_for WHERE write_id = ?1")
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                due += 1;
            }
            Resolution::Fail(error) => {
                if let Some(trace) = fail(conn, id, &error, now).await? {
                    queue.extend(dependents(conn, &trace).await?);
                }
            }
        }
    }
    Ok(due)
}

/// Fails a waiting write and decides the writes waiting for it.
async fn fail_and_cascade(
    conn: &mut SqliteConnection,
    id: i64,
    error: &str,
    now: &str,
) -> Result<u64, StoreError> {
    match fail(conn, id, error, now).await? {
        Some(trace) => {
            let waiting = dependents(conn, &trace).await?;
            decide(conn, waiting, now).await
        }
        None => Ok(0),
    }
}

/// Marks a waiting (or newly pending) write failed with `error`, recorded in its history
/// (attempt 0: it was never sent for this), and drops what it waited for. Returns its
/// trace id, or `None` when it was in neither state.
async fn fail(
    conn: &mut SqliteConnection,
    id: i64,
    error: &str,
    now: &str,
) -> Result<Option<String>, StoreError> {
    let trace: Option<String> = sqlx::query_scalar(
        "UPDATE outbox SET state = 'failed', last_error = ?2, updated_at = ?3
         WHERE id = ?1 AND state IN ('waiting', 'pending') RETURNING trace_id",
    )
    .bind(id)
    .bind(error)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(trace) = trace else {
        return Ok(None);
    };
    sqlx::query(
        "INSERT INTO error_history (trace_id, attempt, http_status, category, message)
         VALUES (?1, 0, 0, ?2, ?3)",
    )
    .bind(&trace)
    .bind(REFERENCE_CATEGORY)
    .bind(error)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM waits_for WHERE write_id = ?1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    Ok(Some(trace))
}

/// The writes waiting for the write `trace`.
async fn dependents(conn: &mut SqliteConnection, trace: &str) -> Result<Vec<i64>, StoreError> {
    Ok(
        sqlx::query_scalar("SELECT write_id FROM waits_for WHERE trace_id = ?1")
            .bind(trace)
            .fetch_all(&mut *conn)
            .await?,
    )
}

/// Whether the write `start` waits, through other unfinished writes, for itself: each
/// write waits for the writes it points at and for the write before it to the same record
/// (see the claim's per-record order). Returns the cycle in words (`a → b → a`).
async fn find_cycle(conn: &mut SqliteConnection, start: i64) -> Result<Option<String>, StoreError> {
    let mut parent: HashMap<i64, (i64, String, bool)> = HashMap::new();
    let mut seen: HashSet<i64> = HashSet::from([start]);
    let mut queue = VecDeque::from([start]);
    let mut names: HashMap<i64, String> = HashMap::new();
    while let Some(here) = queue.pop_front() {
        if seen.len() > MAX_CYCLE_WALK {
            break;
        }
        // (its own trace id, a write it waits for: id, trace id, by its record's order)
        let next: Vec<(String, i64, String, bool)> = sqlx::query_as(
            "SELECT x.trace_id, o.id, o.trace_id, 0 FROM outbox AS x
             JOIN waits_for AS w ON w.write_id = x.id
             JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE x.id = ?1 AND x.state = 'waiting' AND o.state IN ('pending', 'waiting', 'in_flight')
             UNION ALL
             SELECT * FROM (
                 SELECT x.trace_id, e.id, e.trace_id, 1 FROM outbox AS x
                 JOIN outbox AS e INDEXED BY outbox_order
                   ON e.object_type = x.object_type AND e.order_key = x.order_key AND e.id < x.id
                 WHERE x.id = ?1 AND x.order_key IS NOT NULL
                   AND e.state IN ('pending', 'waiting', 'in_flight')
                 ORDER BY e.id DESC LIMIT 1)",
        )
        .bind(here)
        .fetch_all(&mut *conn)
        .await?;
        for (own, id, trace, order) in next {
            names.entry(here).or_insert(own);
            if id == start {
                parent.insert(start, (here, trace, order));
                return Ok(Some(describe_cycle(start, &parent, &names)));
            }
            if seen.insert(id) {
                parent.insert(id, (here, trace, order));
                queue.push_back(id);
            }
        }
    }
    Ok(None)
}

/// `a → b → c (an earlier write to the same record) → a`, from the walk's parents.
fn describe_cycle(
    start: i64,
    parent: &HashMap<i64, (i64, String, bool)>,
    names: &HashMap<i64, String>,
) -> String {
    let mut steps = Vec::new();
    let mut at = start;
    loop {
        let (from, name, order) = &parent[&at];
        steps.push(if *order {
            format!("{name} (an earlier write to the same record)")
        } else {
            name.clone()
        });
        at = *from;
        if at == start {
            break;
        }
    }
    steps.push(names.get(&start).cloned().unwrap_or_default());
    steps.reverse();
    steps.join(" → ")
}
