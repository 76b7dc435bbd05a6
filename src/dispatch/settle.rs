//! One batch's round trip after it is claimed: wait for its slot in the rate-limit
//! window, build the body, send it, read the answer, let the reconciler decide, settle
//! the rows in one store call, apply the pause the answer calls for. Runs on its own task,
//! one per request in flight.

use std::time::Duration;

use tracing::{info, warn};

use super::dispatcher::CLAIM_AHEAD;
use super::reconciler::{
    Moment, reconcile, reconcile_associations, reconcile_read, reconcile_record, unsent,
};
use super::scheduler::association_target;
use super::sender::{
    BatchSender, Request, Sent, associate_body, batch_body, read_body, record_body,
};
use super::shared::{Departure, Shared};
use crate::config::Config;
use crate::hubspot::classify::{Answer, RatePolicy, classify, not_sent, transport_failure};
use crate::model::{BatchLogEntry, BatchRow, ClaimedRow, Lane, Plan, RowUpdate};
use crate::store::StoreError;

/// The longest pause a claimed batch waits out before it leaves; past this it goes back
/// to the queue unsent.
pub const HOLD_THROUGH: Duration = Duration::from_secs(1);

impl<S: BatchSender> Shared<S> {
    /// Waits for the departure `slot` the limiter reserved (the batch was claimed a little
    /// ahead of it, so the claim's own time is not lost between sends), then sends and
    /// settles the batch. A pause that began meanwhile is waited out when it is short
    /// ([`HOLD_THROUGH`]); a longer one (a 429 to another request) sends the batch back to
    /// the queue unsent, due when the pause ends, rather than holding its rows in flight
    /// through it.
    pub async fn depart(
        &self,
        object_type: &str,
        batch_id: &str,
        rows: &[ClaimedRow],
        departure: Departure,
        probe: bool,
        trace: Option<String>,
    ) -> Result<(), StoreError> {
        let Departure { slot, shared_slot } = departure;
        // A slot far ahead means a pause began while the batch was being claimed: rather
        // than hold its rows in flight until then, send it back at once.
        let now = self.clock.elapsed();
        if slot > now + CLAIM_AHEAD + HOLD_THROUGH {
            return self
                .send_back_unsent(object_type, batch_id, rows, slot, slot - now, probe)
                .await;
        }
        let slot = self.wait_for_slot(slot, shared_slot).await;
        // A short pause (HubSpot's `Remaining: 0` until a slot frees) is waited out; a
        // long one (a 429's window) is not worth holding rows in flight for.
        if let Some(wait) = self.limiter.paused_for().filter(|w| *w <= HOLD_THROUGH) {
            self.clock.sleep_until(self.clock.elapsed() + wait).await;
        }
        if let Some(wait) = self.limiter.paused_for() {
            return self
                .send_back_unsent(object_type, batch_id, rows, slot, wait, probe)
                .await;
        }
        let departed = self.clock.elapsed();
        if departed != slot {
            self.limiter.moved(slot, departed);
        }
        self.send_and_settle(object_type, batch_id, rows, departed, probe, trace)
            .await
    }

    /// A claimed batch that will not leave at its slot goes back to the queue, due in
    /// `wait`, with no attempt counted; its slot is freed.
    async fn send_back_unsent(
        &self,
        object_type: &str,
        batch_id: &str,
        rows: &[ClaimedRow],
        slot: Duration,
        wait: Duration,
        probe: bool,
    ) -> Result<(), StoreError> {
        self.limiter.cancel(slot);
        if probe {
            self.breaker.lock().expect("lock").probe_returned();
        }
        let plan = unsent(rows, wait);
        self.settle_until_stored(batch_id, &plan, None).await;
        info!(
            object_type,
            batch_id,
            size = rows.len(),
            "a pause began before the batch's slot; it went back to the queue unsent"
        );
        Ok(())
    }

    /// Sends one claimed batch, reconciles the answer, settles the rows, applies pauses.
    /// `departed` is the clock's monotonic reading as it leaves, which the limiter weighs
    /// HubSpot's rate-limit headers against.
    async fn send_and_settle(
        &self,
        object_type: &str,
        batch_id: &str,
        rows: &[ClaimedRow],
        departed: Duration,
        probe: bool,
        trace: Option<String>,
    ) -> Result<(), StoreError> {
        let sent_at = self.clock.now();
        let read_by = rows.first().and_then(|r| r.read_by.clone());
        let lane = rows[0].lane();
        let target = association_target(rows);
        let request = match (&read_by, &lane) {
            (Some(read_by), _) => {
                // The property read by, and the trace properties the writes' creates carried
                // (whose values tell a write's own record from someone else's).
                let mut wanted = vec![read_by.as_str()];
                let policy = self.config.policy(object_type);
                let sent: Vec<&str> = rows.iter().filter_map(|r| r.sent_with.as_deref()).collect();
                for p in [trace.as_deref(), policy.unique_property.as_deref()]
                    .into_iter()
                    .flatten()
                    .chain(sent)
                {
                    if !wanted.contains(&p) {
                        wanted.push(p);
                    }
                }
                Ok(read_body(rows, read_by, &wanted))
            }
            (None, Lane::Create) => batch_body(rows, trace.as_deref()),
            (None, Lane::Upsert(_) | Lane::Update(_)) => record_body(rows),
            (None, Lane::Associations) => match &target {
                Some(target) => associate_body(rows, target),
                None => Ok(Vec::new()),
            },
        };
        let hubspot = &self.config.hubspot;
        let url = match (&read_by, &lane, &target) {
            (Some(_), _, _) => hubspot.batch_read_url(object_type),
            (None, Lane::Create, _) => hubspot.batch_create_url(object_type),
            (None, Lane::Upsert(_), _) => hubspot.batch_url(object_type, "upsert"),
            (None, Lane::Update(_), _) => hubspot.batch_url(object_type, "update"),
            (None, Lane::Associations, Some(to)) => hubspot.associations_url(object_type, to),
            (None, Lane::Associations, None) => String::new(),
        };
        let (answer, status, duration) = match request {
            // Nothing left to associate (never left so by the reconciler): no request.
            Ok(_) if url.is_empty() => (Answer::Created(Default::default()), 0, Duration::ZERO),
            // A row whose stored JSON cannot be embedded: treat like a whole-batch 400, so
            // splitting isolates and fails it.
            Err(e) => (
                classify(
                    400,
                    None,
                    serde_json::json!({"message": e.to_string(), "category": "VALIDATION_ERROR"})
                        .to_string()
                        .as_bytes(),
                ),
                400,
                Duration::ZERO,
            ),
            Ok(body) => match self.sender.send(Request::post(url, body)).await {
                Sent::Answered {
                    status,
                    retry_after,
                    rate,
                    body,
                    duration,
                } => {
                    self.limiter.observe(&rate, departed);
                    self.metrics.request(status, duration, rate.remaining);
                    if rate.daily_remaining == Some(0) {
                        let now = self.clock.now();
                        // The answer is settled whatever becomes of recording the pause.
                        if let Err(e) = self
                            .pause_daily(
                                now,
                                "HubSpot reports no daily requests remaining",
                                self.hubspot_daily_until(now),
                            )
                            .await
                        {
                            warn!(error = %e, "recording the daily pause failed");
                        }
                    }
                    (classify(status, retry_after, &body), status, duration)
                }
                Sent::NoAnswer { error, duration } => {
                    self.metrics.request(0, duration, None);
                    (transport_failure(error), 0, duration)
                }
                Sent::NotSent { error, duration } => {
                    self.metrics.request(0, duration, None);
                    (not_sent(error), 0, duration)
                }
            },
        };
        self.report_reach(&answer, probe).await;
        let moment = Moment {
            now: self.clock.now(),
            jitter: (self.jitter)(),
        };
        let plan = plan_for(&self.config, object_type, trace, rows, &answer, moment);
        self.count(object_type, &answer, &plan);
        let (outcome, correlation_id) = describe(&answer);
        let outcome = match (&rows[0].read_by, &lane) {
            (Some(_), _) => format!("read_{outcome}"),
            (None, Lane::Create) => outcome.to_owned(),
            (None, Lane::Upsert(_)) => format!("upsert_{outcome}"),
            (None, Lane::Update(_)) => format!("update_{outcome}"),
            (None, Lane::Associations) => format!("associate_{outcome}"),
        };
        info!(
            object_type,
            batch_id,
            size = rows.len(),
            status,
            duration_ms = duration.as_millis() as u64,
            correlation_id = correlation_id.as_deref().unwrap_or(""),
            %outcome,
            "batch sent"
        );
        let log = BatchLogEntry {
            batch_id: batch_id.to_owned(),
            object_type: object_type.to_owned(),
            size: rows.len(),
            http_status: status,
            outcome,
            duration,
            correlation_id,
            sent_at,
        };
        let skipped = self.settle_until_stored(batch_id, &plan, Some(&log)).await;
        if skipped > 0 {
            warn!(
                batch_id,
                skipped, "rows changed by someone else while in flight were left as they are"
            );
        }
        self.apply_pause(object_type, &lane.as_text(), &answer, plan.pause)
            .await
    }

    /// Applies a plan, retrying until the store takes it: HubSpot's answer, once in hand,
    /// is never dropped because the database was busy (a producer holding SQLite's write
    /// lock past the busy timeout) or briefly unwritable. Returns the rows left alone
    /// because someone changed them meanwhile.
    async fn settle_until_stored(
        &self,
        batch_id: &str,
        plan: &Plan,
        log: Option<&BatchLogEntry>,
    ) -> u64 {
        let mut wait = Duration::from_millis(100);
        loop {
            match self
                .store
                .settle_batch(batch_id, plan, log, self.clock.now())
                .await
            {
                Ok(skipped) => return skipped,
                Err(e) => {
                    warn!(batch_id, error = %e, retry_in_ms = wait.as_millis() as u64,
                          "recording a batch's outcome failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    fn count(&self, object_type: &str, answer: &Answer, plan: &Plan) {
        if let Answer::RateLimited { policy, .. } = answer {
            self.metrics.rate_limited(match policy {
                RatePolicy::Interval => "TEN_SECONDLY_ROLLING",
                RatePolicy::Secondly => "SECONDLY",
                RatePolicy::Daily => "DAILY",
                RatePolicy::Unknown => "UNKNOWN",
            });
        }
        let succeeded = plan
            .updates
            .iter()
            .filter(|u| matches!(u, RowUpdate::Succeeded { .. }))
            .count();
        let failed = plan
            .updates
            .iter()
            .filter(|u| matches!(u, RowUpdate::Failed { .. }))
            .count();
        self.metrics
            .writes(object_type, succeeded as u64, failed as u64);
    }
}

/// The reconciler's plan for a batch of `object_type` under the configured rules: a
/// read-back when its rows carry `read_by`, else a create; `trace` is the trace property
/// the batch was sent with (a create), or the type's trace property (a read).
pub fn plan_for(
    config: &Config,
    object_type: &str,
    trace: Option<String>,
    rows: &[ClaimedRow],
    answer: &Answer,
    at: Moment,
) -> Plan {
    let batch: Vec<BatchRow> = rows.iter().map(BatchRow::from_claimed).collect();
    let mut policy = config.policy(object_type);
    policy.trace_property = trace;
    let interval = config.rate_limit.interval;
    let Some(first) = rows.first() else {
        return Plan::default();
    };
    if let Some(read_by) = first.read_by.as_deref() {
        return reconcile_read(&batch, read_by, answer, &policy, interval, at);
    }
    match first.lane() {
        Lane::Create => reconcile(&batch, answer, &policy, interval, at),
        Lane::Upsert(_) | Lane::Update(_) => {
            reconcile_record(&batch, answer, &policy, interval, at)
        }
        Lane::Associations => {
            let target = association_target(rows);
            reconcile_associations(&batch, target.as_deref(), answer, &policy, interval, at)
        }
    }
}

/// A short name for the batch log and the correlation id, if HubSpot gave one.
fn describe(answer: &Answer) -> (&'static str, Option<String>) {
    match answer {
        Answer::Created(r) if r.errors.is_empty() => ("created", None),
        Answer::Created(_) => ("partly_created", None),
        Answer::MalformedSuccess(d) => ("malformed_success", d.correlation_id.clone()),
        Answer::Invalid(d) => ("invalid", d.correlation_id.clone()),
        Answer::UnknownObjectType(d) => ("unknown_object_type", d.correlation_id.clone()),
        Answer::Conflict { detail, .. } => ("conflict", detail.correlation_id.clone()),
        Answer::Unauthorized(d) => ("unauthorized", d.correlation_id.clone()),
        Answer::Forbidden(d) => ("forbidden", d.correlation_id.clone()),
        Answer::RateLimited { detail, .. } => ("rate_limited", detail.correlation_id.clone()),
        Answer::Rejected(d) => ("rejected", d.correlation_id.clone()),
        Answer::Unreachable(_) => ("unreachable", None),
        Answer::Transient { detail, .. } if detail.status == 0 => ("no_answer", None),
        Answer::Transient { detail, .. } => ("transient", detail.correlation_id.clone()),
    }
}
