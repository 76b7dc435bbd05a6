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
use crate::model::rate::Rule;
use crate::store::StoreError;
use crate::store::claim::SharedSlot;

/// How often a daemon on a shared outbox looks for rows in flight of daemons that died.
pub const RECOVER_EVERY: Duration = Duration::from_secs(1);

/// How much later than its shared slot a request may still leave (a timer is never quite
/// on time); later than that, it takes another slot.
pub const SLOT_TOLERANCE: Duration = Duration::from_millis(20);

impl<S> Shared<S> {
    /// Waits for the departure `slot` (the limiter's reservation) and, where the budget
    /// is shared, for the request's `shared` slot: a request woken later than
    /// [`SLOT_TOLERANCE`] (a busy host) gives that slot up and waits for a new one, since
    /// the other daemons placed theirs around the moment it was due. Returns the
    /// reservation as it now stands.
    pub async fn wait_for_slot(&self, slot: Duration, shared: Option<SharedSlot>) -> Duration {
        let (mut slot, mut shared) = (slot, shared);
        loop {
            self.clock.sleep_until(slot).await;
            let now = self.clock.elapsed();
            let Some(taken) = shared else {
                return slot;
            };
            if now <= slot + SLOT_TOLERANCE {
                return slot;
            }
            let (n, interval) = self.limiter.limit();
            match self
                .store
                .retake_departure(taken.id, Rule { n, interval })
                .await
            {
                Ok(Some(next)) => {
                    let at = self.clock.elapsed() + next.departs_in;
                    self.limiter.moved(slot, at);
                    slot = at;
                    shared = Some(next);
                }
                Ok(None) => return slot,
                Err(e) => {
                    warn!(error = %e, "taking another slot in the shared rate budget failed; leaving late");
                    return slot;
                }
            }
        }
    }

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
            let until = pause
                .until
                .as_deref()
                .and_then(|t| t.parse::<DateTime<Utc>>().ok());
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
