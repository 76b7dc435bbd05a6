//! Pauses of sending and the day's request count: what the dispatcher records so that
//! operators (`status`, `/v1/status`, `/metrics`) see why nothing is sent, and so that the
//! daily limit survives a restart. Claims count requests (`claim_batch`); this reads them.

use crate::store::{StoreError, timestamp};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::pauses::{PauseRow, PauseStore};

#[async_trait]
impl PauseStore for SqliteStore {
    async fn daily_requests(&self, day: &str) -> Result<u64, StoreError> {
        let n: Option<i64> = sqlx::query_scalar("SELECT requests FROM daily_usage WHERE day = ?1")
            .bind(day)
            .fetch_optional(&self.pool)
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn set_pause(
        &self,
        scope: &str,
        kind: &str,
        reason: &str,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "INSERT INTO pauses (scope, kind, reason, until, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (scope) DO UPDATE SET kind = ?2, reason = ?3, until = ?4, updated_at = ?5",
        )
        .bind(scope)
        .bind(kind)
        .bind(reason)
        .bind(until.map(timestamp))
        .bind(timestamp(now))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_pause(&self, scope: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pauses WHERE scope = ?1")
            .bind(scope)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn clear_pauses(&self) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM pauses").execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn pauses(&self) -> Result<Vec<PauseRow>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT scope, kind, reason, until, updated_at FROM pauses ORDER BY scope",
        )
        .fetch_all(&self.pool)
        .await?)
    }
}

/// One more request counted against `day`, inside the caller's transaction (a claim
/// counts its batch in the same step, a properties call on its own).
pub(super) async fn count_request_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Sqlite>,
    day: &str,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO daily_usage (day, requests) VALUES (?1, 1)
         ON CONFLICT (day) DO UPDATE SET requests = requests + 1",
    )
    .bind(day)
    .execute(&mut **tx)
    .await?;
    Ok(())
}
