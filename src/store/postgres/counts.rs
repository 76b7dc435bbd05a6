//! Writes per object type, operation and state, on PostgreSQL (migration 0004): the
//! statement triggers append each statement's changes to `write_count_changes`, and a
//! daemon folds them into `write_counts`, so the overview, `status` and `/metrics` read a
//! few rows instead of counting every write, and no producer's transaction waits on a
//! counter row. The `queue_depth` view sums both, so a reader that folds nothing (a
//! command) sees the same figures.

use super::PgStore;
use crate::store::StoreError;

impl PgStore {
    /// Folds the changes appended since the last fold into `write_counts`, in one
    /// statement (one snapshot: the changes deleted are exactly the ones added). Folds by
    /// several daemons at once add up; the rows are taken in key order, so two never wait
    /// on each other crosswise.
    pub(super) async fn fold_write_counts(&self) -> Result<(), StoreError> {
        sqlx::query(
            "WITH folded AS (DELETE FROM write_count_changes
                             RETURNING object_type, operation, state, delta)
             INSERT INTO write_counts (object_type, operation, state, writes)
             SELECT object_type, operation, state, sum(delta) FROM folded
             GROUP BY object_type, operation, state ORDER BY object_type, operation, state
             ON CONFLICT (object_type, operation, state)
             DO UPDATE SET writes = write_counts.writes + excluded.writes",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Counts every write afresh and drops the changes that count already holds (at every
    /// daemon start: counts that drifted, say after rows were changed with the triggers
    /// off, heal). The table lock keeps folds and other recounts out until the new counts
    /// are committed; the one statement's snapshot decides which changes it holds.
    pub(super) async fn recount_writes(&self) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("LOCK TABLE write_counts IN EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "WITH folded AS (DELETE FROM write_count_changes RETURNING id),
                  fresh AS (SELECT object_type, operation, state, count(*) AS writes
                            FROM outbox GROUP BY object_type, operation, state),
                  gone AS (UPDATE write_counts AS w SET writes = 0
                           WHERE w.writes != 0 AND NOT EXISTS
                             (SELECT 1 FROM fresh AS f WHERE f.object_type = w.object_type
                                AND f.operation = w.operation AND f.state = w.state)
                           RETURNING 1)
             INSERT INTO write_counts (object_type, operation, state, writes)
             SELECT object_type, operation, state, writes FROM fresh
             ON CONFLICT (object_type, operation, state) DO UPDATE SET writes = excluded.writes",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
