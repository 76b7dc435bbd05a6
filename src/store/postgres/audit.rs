//! The audit log on PostgreSQL (see [`crate::store::audit`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PgStore;
use crate::store::audit::{Actor, AuditLine, AuditStore, Change};
use crate::store::{StoreError, timestamp};

#[async_trait]
impl AuditStore for PgStore {
    async fn audit_log(
        &self,
        before_id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditLine>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT id, outbox_ts(at) AS at, who, via, action, target, writes, detail
             FROM audit_log WHERE ($1::bigint IS NULL OR id < $1) ORDER BY id DESC LIMIT $2",
        )
        .bind(before_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }
}

/// Records `change` of `writes` writes by `by` at `at`, in the change's own transaction.
pub(super) async fn record(
    conn: &mut sqlx::PgConnection,
    by: &Actor,
    change: &Change<'_>,
    writes: u64,
    at: DateTime<Utc>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_log (at, who, via, action, target, writes, detail)
         VALUES ($1::timestamptz, $2, $3, $4, $5, $6, $7)",
    )
    .bind(timestamp(at))
    .bind(&by.who)
    .bind(by.via)
    .bind(change.action)
    .bind(change.target)
    .bind(writes as i64)
    .bind(change.detail)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
