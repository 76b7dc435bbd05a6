//! The trace property, per object type: before the first batch of a type is sent, check
//! that the property exists with unique values, create it where it is missing (when
//! allowed), and remember the outcome. Ready: every create of that type carries its
//! write's trace id in it, and results are matched by it. Unavailable (no scope, HubSpot's
//! limit of unique properties, creating turned off): the type is sent without it, and the
//! reason with its fix is recorded for `status` and `/metrics`, and the check is repeated
//! hourly ([`RECHECK_UNAVAILABLE`]). Not known yet (no answer, a 5xx): the type waits and
//! the check is tried again.

use tracing::{info, warn};

use super::reconciler::pause_for;
use super::sender::{BatchSender, Request, Sent};
use super::shared::{Shared, TraceState};
use crate::hubspot::classify::{classify, not_sent, transport_failure};
use crate::hubspot::properties::{PropertyAnswer, create_body, pick_group, property_answer};
use crate::model::rate::Rule;
use crate::model::{Pause, day_key, later};
use crate::store::StoreError;

/// How long a type whose trace property could not be had is sent without it before the
/// property is checked again.
pub const RECHECK_UNAVAILABLE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It exists with unique values.
    Ready,
    /// It was missing and has been created in this group.
    Created(String),
    /// It is missing and would be created in this group (a dry run).
    WouldCreate(String),
    /// It cannot be had: why, and the fix.
    Unavailable(String),
    /// Ask again later: a refused token (after the auth retry interval).
    Later,
    /// Ask again at the next chance: no answer or a 5xx (the circuit breaker spaces the
    /// checks once HubSpot has been unreachable for a few in a row).
    Again,
}

impl<S: BatchSender> Shared<S> {
    /// The trace property to send `object_type` with: `Ok(Some(name))` when it is ready,
    /// `Ok(None)` when it is off or cannot be had, `Err(())` while it is not known yet
    /// (the type waits). The first call for a type checks HubSpot (and may create the
    /// property); that takes a few requests, once per type and run.
    pub async fn trace_for(
        &self,
        object_type: &str,
    ) -> Result<Result<Option<String>, ()>, StoreError> {
        let Some(name) = self.config.trace_property(object_type) else {
            return Ok(Ok(None));
        };
        let now = self.clock.now();
        let known = self.trace.lock().expect("lock").get(object_type).cloned();
        match known {
            Some(TraceState::Ready(name)) => return Ok(Ok(Some(name))),
            Some(TraceState::Unavailable(until)) if until > now => return Ok(Ok(None)),
            Some(TraceState::RetryAt(at)) if at > now => return Ok(Err(())),
            _ => {}
        }
        let found = self.check_trace_property(object_type, &name, true).await;
        let now = self.clock.now();
        let (state, result) = match found {
            Found::Ready | Found::Created(_) | Found::WouldCreate(_) => {
                info!(object_type, property = %name, "trace property ready: creates carry each write's trace id");
                self.store
                    .set_trace_state(object_type, &name, None, now)
                    .await?;
                (TraceState::Ready(name.clone()), Ok(Some(name)))
            }
            Found::Unavailable(reason) => {
                warn!(object_type, property = %name, %reason,
                      "trace property unavailable: this type is sent without it");
                self.store
                    .set_trace_state(object_type, &name, Some(&reason), now)
                    .await?;
                (
                    TraceState::Unavailable(later(now, RECHECK_UNAVAILABLE)),
                    Ok(None),
                )
            }
            Found::Later => {
                let at = now
                    + chrono::Duration::from_std(self.config.hubspot.auth_retry_interval)
                        .unwrap_or_default();
                (TraceState::RetryAt(at), Err(()))
            }
            // At most one check a second per type, whatever the answer; the circuit
            // breaker spaces them further while HubSpot is unreachable.
            Found::Again => (
                TraceState::RetryAt(later(now, std::time::Duration::from_secs(1))),
                Err(()),
            ),
        };
        self.trace
            .lock()
            .expect("lock")
            .insert(object_type.to_owned(), state);
        Ok(result)
    }

    /// `hubspot-outbox setup`: checks `object_type`'s trace property now, creating it when
    /// it is missing and allowed (unless `dry_run`), records what was found (unless
    /// `dry_run`), and returns it with the property's name; `None` when the type has the
    /// trace property turned off.
    pub async fn setup_trace(
        &self,
        object_type: &str,
        dry_run: bool,
    ) -> Result<Option<(String, Found)>, StoreError> {
        let Some(name) = self.config.trace_property(object_type) else {
            return Ok(None);
        };
        let found = self
            .check_trace_property(object_type, &name, !dry_run)
            .await;
        if !dry_run {
            let now = self.clock.now();
            match &found {
                Found::Ready | Found::Created(_) => {
                    self.store
                        .set_trace_state(object_type, &name, None, now)
                        .await?
                }
                Found::Unavailable(reason) => {
                    self.store
                        .set_trace_state(object_type, &name, Some(reason), now)
                        .await?
                }
                _ => {}
            }
        }
        Ok(Some((name, found)))
    }

    /// Reads the property; when it is missing and creating is allowed, creates it (or,
    /// when `!create`, finds the group it would go in).
    async fn check_trace_property(&self, object_type: &str, name: &str, create: bool) -> Found {
        let hubspot = &self.config.hubspot;
        let read = self
            .call(Request::get(hubspot.property_url(object_type, name)))
            .await;
        match self.answer(object_type, read).await {
            PropertyAnswer::Exists { unique: true } => Found::Ready,
            PropertyAnswer::Exists { unique: false } => Found::Unavailable(format!(
                "property `{name}` exists on {object_type} without unique values; make it unique \
                 in HubSpot or name another (objects.{object_type}.trace_property)"
            )),
            PropertyAnswer::Missing if !hubspot.create_trace_property => {
                Found::Unavailable(format!(
                    "property `{name}` is missing on {object_type} and hubspot.create_trace_property \
                     is false; create it (text, unique values) or set it to true"
                ))
            }
            PropertyAnswer::Missing => self.create_trace_property(object_type, name, create).await,
            PropertyAnswer::Forbidden(m) => Found::Unavailable(format!(
                "the token may not read {object_type}'s properties (scope crm.schemas.{object_type}.read): {m}"
            )),
            PropertyAnswer::Refused(m) => Found::Unavailable(format!(
                "HubSpot refused to read property `{name}` of {object_type}: {m}"
            )),
            PropertyAnswer::Unauthorized => Found::Later,
            PropertyAnswer::Transient(_) => Found::Again,
        }
    }

    async fn create_trace_property(&self, object_type: &str, name: &str, create: bool) -> Found {
        let hubspot = &self.config.hubspot;
        let groups = self
            .call(Request::get(hubspot.groups_url(object_type)))
            .await;
        let group = match groups {
            Sent::Answered {
                status: 200, body, ..
            } => pick_group(object_type, &body),
            other => {
                return match self.answer(object_type, other).await {
                    PropertyAnswer::Forbidden(m) | PropertyAnswer::Refused(m) => {
                        Found::Unavailable(format!(
                            "cannot list {object_type}'s property groups to create `{name}` in: {m}"
                        ))
                    }
                    PropertyAnswer::Unauthorized => Found::Later,
                    PropertyAnswer::Transient(_) => Found::Again,
                    // A 404 (no such object type) or an odd 2xx: asking again at once
                    // would repeat it forever; checked again within the hour.
                    other => Found::Unavailable(format!(
                        "cannot list {object_type}'s property groups to create `{name}` in \
                         ({other:?})"
                    )),
                };
            }
        };
        let Some(group) = group else {
            return Found::Unavailable(format!(
                "{object_type} has no property group to create `{name}` in"
            ));
        };
        if !create {
            return Found::WouldCreate(group);
        }
        let created = self
            .call(Request::post(
                hubspot.properties_url(object_type),
                create_body(name, &group),
            ))
            .await;
        match self.answer(object_type, created).await {
            PropertyAnswer::Exists { .. } => {
                info!(
                    object_type,
                    property = name,
                    group,
                    "created the trace property"
                );
                Found::Created(group)
            }
            PropertyAnswer::Forbidden(m) => Found::Unavailable(format!(
                "creating `{name}` on {object_type} needs the crm.schemas.{object_type}.write scope \
                 (custom objects: crm.schemas.custom.write): {m}; grant it, or create the property \
                 (text, unique values) in HubSpot"
            )),
            PropertyAnswer::Refused(m) => Found::Unavailable(format!(
                "HubSpot refused to create `{name}` on {object_type}: {m} (an object type holds at \
                 most 10 unique properties; free one, or set objects.{object_type}.trace_property)"
            )),
            PropertyAnswer::Missing => Found::Unavailable(format!(
                "HubSpot answered 404 to creating `{name}` on {object_type}"
            )),
            PropertyAnswer::Unauthorized => Found::Later,
            PropertyAnswer::Transient(_) => Found::Again,
        }
    }

    /// One properties-API call under the rate limit, counted against the day. Its reach
    /// is reported to the circuit breaker like a batch's: a check that finds HubSpot
    /// unreachable opens it, and while it is open the check is its probe.
    async fn call(&self, request: Request) -> Sent {
        // Counted before its slot (a write that may wait for an fsync), and the slot moved
        // to the moment it really leaves: the limiter must know when HubSpot will count it.
        let day = day_key(self.clock.now(), &self.config.rate_limit.timezone);
        let (n, interval) = self.limiter.limit();
        let shared_slot = match self.store.count_request(&day, Rule { n, interval }).await {
            Ok(slot) => slot,
            Err(e) => {
                warn!(error = %e, "counting a properties request against the day failed");
                None
            }
        };
        self.counted(&day);
        let slot = self
            .limiter
            .reserve_after(shared_slot.map(|s| s.departs_in));
        let slot = self.wait_for_slot(slot, shared_slot).await;
        let departed = self.clock.elapsed();
        if departed != slot {
            self.limiter.moved(slot, departed);
        }
        let probe = {
            let mut breaker = self.breaker.lock().expect("lock");
            let due = breaker.probe_due(self.clock.now());
            if due {
                breaker.probe_sent();
            }
            due
        };
        let sent = self.sender.send(request).await;
        let reach = match &sent {
            Sent::Answered {
                status, rate, body, ..
            } => {
                self.limiter.observe(rate, departed);
                classify(*status, None, body)
            }
            Sent::NoAnswer { error, .. } => transport_failure(error.clone()),
            Sent::NotSent { error, .. } => not_sent(error.clone()),
        };
        self.report_reach(&reach, probe).await;
        sent
    }

    /// What a properties-API answer means; a 401 also pauses sending as a batch's would.
    async fn answer(&self, object_type: &str, sent: Sent) -> PropertyAnswer {
        match sent {
            Sent::Answered {
                status,
                retry_after,
                body,
                ..
            } => {
                let answer = property_answer(status, &body);
                let classified = classify(status, retry_after, &body);
                // A refused token or a 429 holds sending as a batch's would.
                let pause = match &answer {
                    PropertyAnswer::Unauthorized => Some(Pause::Unauthorized {
                        reason: "HubSpot refused the access token (reading properties)".into(),
                    }),
                    _ if status == 429 => pause_for(&classified, self.config.rate_limit.interval),
                    _ => None,
                };
                if pause.is_some()
                    && let Err(e) = self
                        .apply_pause(object_type, "create", &classified, pause)
                        .await
                {
                    warn!(error = %e, "recording a pause failed");
                }
                answer
            }
            Sent::NoAnswer { error, .. } | Sent::NotSent { error, .. } => {
                PropertyAnswer::Transient(error)
            }
        }
    }
}
