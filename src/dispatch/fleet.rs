//! Daemons sharing one outbox (PostgreSQL, issue 12). What one of them learns that all must
//! honour is in the database, and every tick reads it back before claiming:
//!
//! - a pause of all sending: a 429's wait (`rate_limited`, until its end), a refused
//!   token (`unauthorized`: each daemon then probes one retry interval after the last
//!   refusal recorded, so a daemon that died pausing does not pause the others for ever),
//!   the day's limit (`daily_limit`, until the reset);
//! - the day's request count, which every daemon's claims add to.
//!
//! The burst budget itself is taken in each claim's transaction (see
//! `store::postgres::claim`), and rows in flight of daemons that died are taken over by
//! [`super::recovery`] every [`RECOVER_EVERY`].

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::warn;

use super::shared::Shared;
use crate::model::day_key;
use crate::store::StoreError;

/// How often a daemon on a shared outbox looks for rows in flight of daemons that died.
pub const RECOVER_EVERY: Duration = Duration::from_secs(1);

impl<S> Shared<S> {
    /// Adopts the pauses other daemons recorded and the day's shared count; nothing on an
    /// outbox no other daemon shares.
    pub async fn sync_fleet(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        if !self.store.is_shared() {
            return Ok(());
        }
        for pause in self.store.pauses().await? {
            if pause.scope != "all" && pause.kind != "daily_limit" {
                continue;
            }
            let until = pause.until.as_deref().and_then(|t| t.parse::<DateTime<Utc>>().ok());
            match pause.kind.as_str() {
                "rate_limited" => {
                    if let Some(wait) = until.and_then(|u| (u - now).to_std().ok()) {
                        self.limiter.pause_for(wait);
                    }
                }
                "daily_limit" => {
                    if let Some(u) = until.filter(|u| *u > now) {
                        let mut paused = self.paused.lock().expect("lock");
                        paused.daily_until = Some(paused.daily_until.map_or(u, |d| d.max(u)));
                    }
                }
                "unauthorized" => {
                    let recorded = pause.updated_at.parse::<DateTime<Utc>>().unwrap_or(now);
                    let probe_at =
                        crate::model::later(recorded, self.config.hubspot.auth_retry_interval);
                    let mut paused = self.paused.lock().expect("lock");
                    if paused.unauthorized.is_none() {
                        warn!(reason = %pause.reason, "another daemon found the access token refused; sending paused here too");
                        paused.unauthorized = Some(probe_at);
                        paused.recorded_all = Some("unauthorized");
                    }
                }
                _ => {}
            }
        }
        let limits = &self.config.rate_limit;
        let day = day_key(now, &limits.timezone);
        let used = self.store.daily_requests(&day).await?;
        *self.daily.lock().expect("lock") = (day, used);
        Ok(())
    }
}
