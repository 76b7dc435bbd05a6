//! Reference cycles: a write that waits, through the writes it points at and the earlier
//! writes to its record, for itself could never be sent.

use sqlx::SqliteConnection;

use crate::store::StoreError;
use crate::store::references::{Edge, Walk};

/// Which of the writes `ids` (a JSON array) wait, through other unfinished writes, for
/// themselves: all of them walked at once, in one recursive statement over the same edges
/// as [`find_cycle`] (which then names each cycle found). A reference to a write, an
/// update named by a queued create's trace id, the write before it to the same record.
pub(super) async fn on_cycles(
    conn: &mut SqliteConnection,
    ids: &str,
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE reach(origin, node, stepped) AS (
             SELECT value, value, 0 FROM json_each(?1)
             UNION
             SELECT r.origin, o.id, 1 FROM reach AS r
             JOIN outbox AS x ON x.id = r.node
             JOIN waits_for AS w ON w.write_id = x.id
             JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE +x.state = 'waiting' AND +o.state IN ('pending', 'waiting', 'in_flight')
             UNION
             SELECT r.origin, c.id, 1 FROM reach AS r
             JOIN outbox AS x ON x.id = r.node
             JOIN outbox AS c ON c.trace_id = x.record_key
             WHERE x.id_property IS NOT NULL AND c.operation = 'create' AND c.id < x.id
               AND +c.state IN ('pending', 'waiting', 'in_flight')
             UNION
             SELECT r.origin,
                    (SELECT max(e.id) FROM outbox AS e INDEXED BY outbox_order
                     WHERE e.object_type = x.object_type AND e.order_key = x.order_key
                       AND e.id < x.id AND e.state IN ('pending', 'waiting', 'in_flight')),
                    1
             FROM reach AS r JOIN outbox AS x ON x.id = r.node
             WHERE x.order_key IS NOT NULL
         )
         SELECT DISTINCT origin FROM reach WHERE stepped = 1 AND node = origin",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?)
}

/// Whether the write `start` waits, through other unfinished writes, for itself (see
/// `store::references::Walk`). The store does not know which property is a type's trace
/// property, so any upsert or update whose `id` is an earlier queued create's trace id is
/// taken to wait for it: at worst a cycle is reported where the claim would not have
/// waited (that needs an `id` equal to another write's trace id).
pub(super) async fn find_cycle(
    conn: &mut SqliteConnection,
    start: i64,
) -> Result<Option<String>, StoreError> {
    let mut walk = Walk::new(start);
    while let Some(here) = walk.next_write() {
        let edges: Vec<Edge> = sqlx::query_as(
            "SELECT x.trace_id, o.id, o.trace_id, 0 FROM outbox AS x
             JOIN waits_for AS w ON w.write_id = x.id
             JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE x.id = ?1 AND +x.state = 'waiting' AND +o.state IN ('pending', 'waiting', 'in_flight')
             UNION ALL
             SELECT x.trace_id, c.id, c.trace_id, 1 FROM outbox AS x
             JOIN outbox AS c ON c.trace_id = x.record_key
             WHERE x.id = ?1 AND x.id_property IS NOT NULL AND c.operation = 'create'
               AND c.id < x.id AND +c.state IN ('pending', 'waiting', 'in_flight')
             UNION ALL
             SELECT * FROM (
                 SELECT x.trace_id, e.id, e.trace_id, 1 FROM outbox AS x
                 JOIN outbox AS e INDEXED BY outbox_order
                   ON e.object_type = x.object_type AND e.order_key = x.order_key AND e.id < x.id
                 WHERE x.id = ?1 AND x.order_key IS NOT NULL
                   AND e.state IN ('pending', 'waiting', 'in_flight')
                 ORDER BY e.id DESC LIMIT 1)",        )
        .bind(here)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(cycle) = walk.visit(here, edges) {
            return Ok(Some(cycle));
        }
    }
    Ok(None)
}
