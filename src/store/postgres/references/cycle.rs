//! Reference cycles: a write that waits, through the writes it points at and the earlier
//! writes to its record, for itself could never be sent.

use sqlx::PgConnection;

use crate::store::StoreError;
use crate::store::references::{Edge, Walk};

/// Which of the writes `ids` wait, through other unfinished writes, for themselves: all
/// of them walked at once, in one recursive statement over the same edges as
/// [`find_cycle`] (which then names each cycle found). PostgreSQL allows one recursive
/// reference, so the three kinds of edge are one lateral subquery.
pub(super) async fn on_cycles(
    conn: &mut PgConnection,
    ids: &[i64],
) -> Result<Vec<i64>, StoreError> {
    Ok(sqlx::query_scalar(
        "WITH RECURSIVE reach(origin, node, stepped) AS (
             SELECT id, id, false FROM unnest($1::bigint[]) AS id
             UNION
             SELECT r.origin, n.next, true FROM reach AS r
             CROSS JOIN LATERAL (
                 SELECT o.id AS next FROM outbox AS x
                 JOIN waits_for AS w ON w.write_id = x.id
                 JOIN outbox AS o ON o.trace_id = w.trace_id
                 WHERE x.id = r.node AND x.state = 'waiting'
                   AND o.state IN ('pending', 'waiting', 'in_flight')
                 UNION ALL
                 SELECT c.id FROM outbox AS x
                 JOIN outbox AS c ON c.trace_id = x.record_key
                 WHERE x.id = r.node AND x.id_property IS NOT NULL AND c.operation = 'create'
                   AND c.id < x.id AND c.state IN ('pending', 'waiting', 'in_flight')
                 UNION ALL
                 SELECT (SELECT max(e.id) FROM outbox AS e
                         WHERE e.object_type = x.object_type AND e.order_key = x.order_key
                           AND e.id < x.id AND e.state IN ('pending', 'waiting', 'in_flight'))
                 FROM outbox AS x WHERE x.id = r.node AND x.order_key IS NOT NULL
             ) AS n
             WHERE n.next IS NOT NULL
         )
         SELECT DISTINCT origin FROM reach WHERE stepped AND node = origin",
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
    conn: &mut PgConnection,
    start: i64,
) -> Result<Option<String>, StoreError> {
    let mut walk = Walk::new(start);
    while let Some(here) = walk.next_write() {
        let edges: Vec<Edge> = sqlx::query_as(
            "SELECT x.trace_id, o.id, o.trace_id, false FROM outbox AS x
             JOIN waits_for AS w ON w.write_id = x.id
             JOIN outbox AS o ON o.trace_id = w.trace_id
             WHERE x.id = $1 AND x.state = 'waiting' AND o.state IN ('pending', 'waiting', 'in_flight')
             UNION ALL
             SELECT x.trace_id, c.id, c.trace_id, true FROM outbox AS x
             JOIN outbox AS c ON c.trace_id = x.record_key
             WHERE x.id = $1 AND x.id_property IS NOT NULL AND c.operation = 'create'
               AND c.id < x.id AND c.state IN ('pending', 'waiting', 'in_flight')
             UNION ALL
             SELECT * FROM (
                 SELECT x.trace_id, e.id, e.trace_id, true FROM outbox AS x
                 JOIN outbox AS e
                   ON e.object_type = x.object_type AND e.order_key = x.order_key AND e.id < x.id
                 WHERE x.id = $1 AND x.order_key IS NOT NULL
                   AND e.state IN ('pending', 'waiting', 'in_flight')
                 ORDER BY e.id DESC LIMIT 1) AS previous",        )
        .bind(here)
        .fetch_all(&mut *conn)
        .await?;
        if let Some(cycle) = walk.visit(here, edges) {
            return Ok(Some(cycle));
        }
    }
    Ok(None)
}
