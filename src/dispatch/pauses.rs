//! Pauses of sending: taken when an answer calls for one (429, daily limit, 401, 403,
//! unknown object type), lifted when an answer proves the cause gone, and checked by the
//! tick before it claims. Kept in memory for the loop and mirrored in the `pauses` table
//! for operators.

use std::time::Duration;

use chrono::{DateTime, Utc};
use tracing::{error, info, warn};

use super::breaker::{Change, Reach};
use super::shared::Shared;
use crate::hubspot::classify::{Answer, Detail};
use crate::model::{Pause, next_daily_reset};
use crate::store::StoreError;

/// Whether HubSpot's answer shows that it accepted the access token: every answer it
/// gives after authenticating the request. A 401 says the opposite; no answer at all, or
/// a 5xx (which a proxy in front of HubSpot may give), proves nothing.
pub fn proves_token(answer: &Answer) -> bool {
    match answer {
        Answer::Unauthorized(_)
        | Answer::Transient { .. }
        | Answer::Unreachable(_)
        | Answer::Rejected(_) => false,
        Answer::Created(_)
        | Answer::MalformedSuccess(_)
        | Answer::Invalid(_)
        | Answer::UnknownObjectType(_)
        | Answer::Conflict { .. }
        | Answer::Forbidden(_)
        | Answer::RateLimited { .. } => true,
    }
}

/// Whether HubSpot's answer shows that the token may write this object type: it looked
/// at the inputs (created them, or refused them one by one).
pub fn proves_scope(answer: &Answer) -> bool {
    matches!(
        answer,
        Answer::Created(_)
            | Answer::MalformedSuccess(_)
            | Answer::Invalid(_)
            | Answer::Conflict { .. }
    )
}

/// How often a request tries again while HubSpot says the day's requests are used up.
pub const DAILY_PROBE: Duration = Duration::from_secs(3600);

fn after(now: DateTime<Utc>, wait: Duration) -> DateTime<Utc> {
    crate::model::later(now, wait)
}

/// `HTTP 503: message` or the transport error, for "unreachable since ...".
fn describe_failure(d: &Detail) -> String {
    if d.status == 0 {
        d.message.clone()
    } else {
        format!("HTTP {}: {}", d.status, d.message)
    }
}

fn unreachable(since: DateTime<Utc>, error: &str) -> String {
    format!(
        "HubSpot unreachable since {}; last error: {error}",
        since.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

impl<S> Shared<S> {
    /// Records the pause an answer calls for, or lifts the pauses an answer disproves.
    pub async fn apply_pause(
        &self,
        object_type: &str,
        lane: &str,
        answer: &Answer,
        pause: Option<Pause>,
    ) -> Result<(), StoreError> {
        let lane_key = super::dispatcher::lane_key(object_type, lane);
        let now = self.clock.now();
        let probe_at = after(now, self.config.hubspot.auth_retry_interval);
        match pause {
            Some(Pause::All { wait, reason }) => {
                self.limiter.pause_for(wait);
                warn!(%reason, wait_ms = wait.as_millis() as u64, "rate limited by HubSpot; all sending paused");
                self.paused.lock().expect("lock").recorded_all = Some("rate_limited");
                self.store
                    .set_pause("all", "rate_limited", &reason, Some(after(now, wait)), now)
                    .await?;
            }
            Some(Pause::UntilDailyReset { reason }) => {
                self.pause_daily(now, &reason, self.hubspot_daily_until(now))
                    .await?
            }
            Some(Pause::Unauthorized { reason }) => {
                error!(%reason, "HubSpot refused the access token; nothing is sent until it works (probing every {:?})",
                       self.config.hubspot.auth_retry_interval);
                {
                    let mut paused = self.paused.lock().expect("lock");
                    paused.unauthorized = Some(probe_at);
                    paused.recorded_all = Some("unauthorized");
                }
                self.store
                    .set_pause("all", "unauthorized", &reason, None, now)
                    .await?;
            }
            Some(Pause::ObjectType { kind, reason }) => {
                error!(object_type, kind, %reason, "HubSpot refused writes of this object type; its writes stay queued");
                self.paused
                    .lock()
                    .expect("lock")
                    .forbidden
                    .insert(object_type.to_owned(), probe_at);
                self.store
                    .set_pause(&format!("object:{object_type}"), kind, &reason, None, now)
                    .await?;
            }
            Some(Pause::FailObjectType { error }) => {
                let failed = self
                    .store
                    .fail_object_type(object_type, &error, now)
                    .await?;
                error!(object_type, %error, failed, "HubSpot does not know this object type; its queued writes failed");
            }
            Some(Pause::Lane { reason }) => {
                error!(object_type, lane, %reason, "HubSpot refused this lane's writes as configured; they stay queued, other lanes go on");
                self.paused
                    .lock()
                    .expect("lock")
                    .forbidden
                    .insert(lane_key.clone(), probe_at);
                self.store
                    .set_pause(&format!("lane:{lane_key}"), "rejected", &reason, None, now)
                    .await?;
            }
            None => {}
        }
        let (lift_all, lift_type, lift_lane) = {
            let mut paused = self.paused.lock().expect("lock");
            let mut lift_all = false;
            if proves_token(answer) && paused.unauthorized.take().is_some() {
                info!("HubSpot accepts the access token again; sending resumes");
                lift_all = true;
            }
            if matches!(answer, Answer::Created(_)) && paused.recorded_all == Some("rate_limited") {
                lift_all = true;
            }
            if lift_all {
                paused.recorded_all = None;
            }
            let lift_type = proves_scope(answer) && paused.forbidden.remove(object_type).is_some();
            let lift_lane = matches!(answer, Answer::Created(_))
                && paused.forbidden.remove(&lane_key).is_some();
            (lift_all, lift_type, lift_lane)
        };
        if lift_lane {
            info!(
                object_type,
                lane, "HubSpot accepts this lane's writes again"
            );
            self.store.clear_pause(&format!("lane:{lane_key}")).await?;
        }
        if lift_all {
            self.store.clear_pause("all").await?;
        }
        if lift_type {
            info!(
                object_type,
                "HubSpot accepts writes of this object type again"
            );
            self.store
                .clear_pause(&format!("object:{object_type}"))
                .await?;
        }
        Ok(())
    }

    /// When HubSpot says the day is used up (a `DAILY` 429 without `Retry-After`, or
    /// `Daily-Remaining: 0`): at the configured midnight, or within the hour if that is
    /// sooner, so a wrong `timezone` costs at most an hour's probe, not a day.
    pub fn hubspot_daily_until(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        next_daily_reset(now, &self.config.rate_limit.timezone).min(after(now, DAILY_PROBE))
    }

    /// Holds all sending until `until` (the daily reset, or the next hourly probe).
    pub async fn pause_daily(
        &self,
        now: DateTime<Utc>,
        reason: &str,
        until: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        {
            let mut paused = self.paused.lock().expect("lock");
            if paused.daily_until == Some(until) {
                return Ok(());
            }
            paused.daily_until = Some(until);
            paused.recorded_all = Some("daily_limit");
        }
        warn!(reason, %until, "daily limit reached; sending paused until the reset");
        self.store
            .set_pause("all", "daily_limit", reason, Some(until), now)
            .await
    }

    /// Feeds what became of a request to the circuit breaker, and records or lifts the
    /// "unreachable" pause operators see. A failure of the store here is logged: the
    /// breaker itself lives in memory and already holds sending.
    pub async fn report_reach(&self, answer: &Answer, probe: bool) {
        // No connection, no answer or a 5xx; a 423 or 477 is HubSpot answering.
        let reach = match answer {
            Answer::Transient { detail, .. } if detail.status == 0 || detail.status >= 500 => {
                Reach::Failed(describe_failure(detail))
            }
            Answer::Unreachable(detail) => Reach::Failed(describe_failure(detail)),
            _ => Reach::Answered,
        };
        let now = self.clock.now();
        let change = self.breaker.lock().expect("lock").report(reach, probe, now);
        let opened = matches!(change, Change::Opened { .. });
        let stored = match change {
            Change::None => return,
            Change::Opened { since, error } | Change::StillOpen { since, error } => {
                if opened {
                    warn!(%since, %error, "HubSpot is unreachable; sending stopped, probing with single writes");
                }
                let reason = unreachable(since, &error);
                self.store
                    .set_pause("hubspot", "unreachable", &reason, None, now)
                    .await
            }
            Change::Closed { since } => {
                info!(%since, "HubSpot answers again; sending resumes");
                self.store.clear_pause("hubspot").await
            }
        };
        if let Err(e) = stored {
            warn!(error = %e, "recording HubSpot's reachability for operators failed");
        }
    }

    /// How long every type must wait: a rate-limit pause, or a refused token until its
    /// next probe.
    pub fn global_pause(&self, now: DateTime<Utc>) -> Option<Duration> {
        if let Some(wait) = self.limiter.paused_for() {
            return Some(wait);
        }
        let paused = self.paused.lock().expect("lock");
        match paused.unauthorized {
            Some(probe_at) if probe_at > now => Some((probe_at - now).to_std().unwrap_or_default()),
            _ => None,
        }
    }

    /// The daily pause in force, if any: how long until the reset.
    pub fn daily_pause(&self, now: DateTime<Utc>) -> Option<Duration> {
        let until = self.paused.lock().expect("lock").daily_until?;
        (until > now).then(|| (until - now).to_std().unwrap_or_default())
    }

    /// Whether `object_type` may send now: not refused (403), or due for its probe.
    pub fn may_send_type(&self, object_type: &str, now: DateTime<Utc>) -> bool {
        let paused = self.paused.lock().expect("lock");
        paused
            .forbidden
            .get(object_type)
            .is_none_or(|probe_at| *probe_at <= now)
    }

    /// Moves the next probe time one retry interval ahead.
    pub fn postpone_probe(&self, object_type: &str) {
        let next = after(self.clock.now(), self.config.hubspot.auth_retry_interval);
        let mut paused = self.paused.lock().expect("lock");
        if paused.unauthorized.is_some() {
            paused.unauthorized = Some(next);
        } else if let Some(t) = paused.forbidden.get_mut(object_type) {
            *t = next;
        }
    }

    /// While the token or a type's scope is refused, a probe (a one-row request) goes at
    /// each retry interval.
    pub fn is_probe(&self, object_type: &str, now: DateTime<Utc>) -> bool {
        let paused = self.paused.lock().expect("lock");
        paused.unauthorized.is_some_and(|t| t <= now)
            || paused.forbidden.get(object_type).is_some_and(|t| *t <= now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hubspot::classify::{classify, transport_failure};

    #[test]
    fn only_an_answer_from_behind_authentication_proves_the_token() {
        let created = classify(201, None, br#"{"status":"COMPLETE","results":[]}"#);
        assert!(proves_token(&created));
        assert!(proves_token(&classify(
            403,
            None,
            br#"{"category":"MISSING_SCOPES","message":"no"}"#
        )));
        assert!(!proves_token(&classify(
            401,
            None,
            br#"{"category":"INVALID_AUTHENTICATION","message":"no"}"#
        )));
        assert!(!proves_token(&classify(503, None, b"upstream down")));
        assert!(!proves_token(&transport_failure("could not connect")));
    }

    #[test]
    fn only_an_answer_about_the_inputs_proves_the_scope() {
        assert!(proves_scope(&classify(
            201,
            None,
            br#"{"status":"COMPLETE","results":[]}"#
        )));
        assert!(!proves_scope(&classify(
            403,
            None,
            br#"{"category":"MISSING_SCOPES","message":"no"}"#
        )));
        assert!(!proves_scope(&classify(
            429,
            None,
            br#"{"policyName":"TEN_SECONDLY_ROLLING","message":"slow"}"#
        )));
        assert!(!proves_scope(&transport_failure("timed out")));
    }
}
