//! The sending loop: pick a ready object type, wait for the rate limit, claim a batch,
//! send it on its own task (up to `max_in_flight` at once), reconcile the answer and settle
//! the rows; honour pauses (429, daily limit, 401, 403). [`Dispatcher::tick`] is one step;
//! [`Dispatcher::run`] repeats it and sleeps when there is nothing to do.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::hubspot::classify::RatePolicy;
use crate::hubspot::classify::{Answer, classify, transport_failure};
use crate::limiter::Limiter;
use crate::metrics::Metrics;
use crate::notify::Heartbeat;
use crate::reconciler::{BatchRow, Pause, Plan, RowUpdate, reconcile};
use crate::scheduler::{Due, Readiness, choose_rows, day_key, next_daily_reset, ready_types};
use crate::sender::{Sender, Sent};
use crate::store::dispatch::{BatchLogEntry, ClaimedRow};
use crate::store::{Store, StoreError};

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// A batch of this many rows was claimed and is being sent.
    Sent(usize),
    /// Nothing to send now; look again after at most this long (or when woken).
    Idle(Duration),
}

/// Pauses this process keeps in memory; the `pauses` table mirrors them for operators.
#[derive(Default)]
struct Paused {
    /// The kind of the pause recorded for scope `all`, to clear it once sending works.
    recorded_all: Option<&'static str>,
    /// 401: next time a single probe request may go.
    unauthorized: Option<DateTime<Utc>>,
    /// 403 per object type: next probe time.
    forbidden: HashMap<String, DateTime<Utc>>,
    /// The daily limit is used up until then.
    daily_until: Option<DateTime<Utc>>,
}

/// What the loop and its sending tasks share.
struct Shared {
    store: Store,
    config: Arc<Config>,
    limiter: Limiter,
    sender: Sender,
    /// Woken by new rows (committer, intake) and by finished requests.
    wake: Arc<Notify>,
    paused: Mutex<Paused>,
    /// Counted here, rendered by the socket API's `/metrics`.
    metrics: Arc<Metrics>,
}

pub struct Dispatcher {
    shared: Arc<Shared>,
    /// One permit per request in flight; a sending task holds one until it has settled.
    permits: Arc<Semaphore>,
    /// The object type served last, for round robin.
    last_type: Mutex<Option<String>>,
    /// Requests counted today, cached from the database: (day, count).
    daily: Mutex<(String, u64)>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        config: Arc<Config>,
        sender: Sender,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let rl = &config.rate_limit;
        Self {
            permits: Arc::new(Semaphore::new(rl.max_in_flight)),
            last_type: Mutex::new(None),
            daily: Mutex::new((String::new(), 0)),
            shared: Arc::new(Shared {
                limiter: Limiter::new(rl.requests_per_interval, rl.interval),
                store,
                sender,
                wake,
                paused: Mutex::new(Paused::default()),
                metrics,
                config,
            }),
        }
    }

    /// Rows a crash left `in_flight` are ambiguous: HubSpot may have created them. They
    /// follow the same rules as a timeout (resend with a unique property or
    /// `on_ambiguous = "resend"`, else hold), and the error history says why.
    pub async fn recover(&self) -> Result<usize, StoreError> {
        let shared = &self.shared;
        let rows = shared.store.in_flight_rows().await?;
        let mut batches: HashMap<(String, String), Vec<ClaimedRow>> = HashMap::new();
        for r in rows {
            batches
                .entry((r.batch_id, r.object_type))
                .or_default()
                .push(r.row);
        }
        let mut recovered = 0;
        for ((batch, object_type), rows) in batches {
            let answer =
                transport_failure("interrupted: the daemon stopped while this write was in flight");
            let plan = plan_for(&shared.config, &object_type, &rows, &answer);
            let log = BatchLogEntry {
                batch_id: batch.clone(),
                object_type: object_type.clone(),
                size: rows.len(),
                http_status: 0,
                outcome: "interrupted".into(),
                duration: Duration::ZERO,
                correlation_id: None,
                sent_at: Utc::now(),
            };
            shared.store.settle_batch(&batch, &plan, &log).await?;
            warn!(%object_type, batch_id = %batch, rows = rows.len(), "recovered writes left in flight by an earlier run");
            recovered += rows.len();
        }
        Ok(recovered)
    }

    /// Repeats [`Dispatcher::tick`] until `shutdown`, then waits up to `drain` for requests
    /// in flight to settle.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        drain: Duration,
        heartbeat: Arc<Heartbeat>,
    ) {
        if let Err(e) = self.shared.store.clear_pauses().await {
            error!(error = %e, "clearing pauses recorded by an earlier run failed; `status` may show stale ones");
        }
        if let Err(e) = self.recover().await {
            error!(error = %e, "recovering in-flight writes failed; they stay in flight until the next start");
        }
        let poll = self.shared.config.database.poll_interval;
        loop {
            heartbeat.beat();
            // Register for the wake-up before looking for work, so none is missed.
            let notified = self.shared.wake.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if shutdown.is_cancelled() {
                break;
            }
            // A tick runs to its end, never cancelled halfway: a claim whose commit was cut
            // off would leave rows in flight that no task sends.
            let wait = match self.tick().await {
                Ok(Tick::Sent(_)) => continue,
                Ok(Tick::Idle(wait)) => wait.min(poll),
                Err(e) => {
                    error!(error = %e, "dispatching failed; will retry");
                    poll
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut notified => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        let all = self.shared.config.rate_limit.max_in_flight as u32;
        if tokio::time::timeout(drain, self.permits.acquire_many(all))
            .await
            .is_err()
        {
            warn!(
                "requests still in flight at shutdown; the next start treats them as interrupted"
            );
        }
    }

    /// One step: claim and launch at most one batch.
    pub async fn tick(&self) -> Result<Tick, StoreError> {
        let shared = &self.shared;
        let now = Utc::now();
        if let Some(wait) = shared.global_pause(now) {
            return Ok(Tick::Idle(wait));
        }
        if let Some(wait) = self.daily_exhausted(now).await? {
            return Ok(Tick::Idle(wait));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Every slot is busy; a finishing request wakes the loop.
            return Ok(Tick::Idle(shared.config.database.poll_interval));
        };
        let due: Vec<Due> = shared
            .store
            .due_types(now)
            .await?
            .into_iter()
            .filter(|d| shared.may_send_type(&d.object_type, now))
            .filter_map(|d| {
                Some(Due {
                    oldest_due_at: d.oldest_due_at.parse().ok()?,
                    count: d.count.max(0) as usize,
                    object_type: d.object_type,
                })
            })
            .collect();
        let batching = &shared.config.batching;
        let last = self.last_type.lock().expect("lock").clone();
        let order = match ready_types(
            &due,
            batching.max_size,
            batching.linger,
            now,
            last.as_deref(),
        ) {
            Readiness::Ready(order) => order,
            Readiness::WaitFor(wait) => return Ok(Tick::Idle(wait)),
            Readiness::Nothing => return Ok(Tick::Idle(self.until_next_due(now).await?)),
        };
        shared.limiter.acquire().await;
        for object_type in order {
            let probe = shared.is_probe(&object_type, Utc::now());
            let max = if probe { 1 } else { batching.max_size };
            let unique = shared.config.policy(&object_type).unique_property;
            let batch_id = uuid::Uuid::now_v7().to_string();
            let day = day_key(Utc::now(), &shared.config.rate_limit.timezone);
            let rows = shared
                .store
                .claim_batch(&object_type, max * 2, Utc::now(), &batch_id, &day, |c| {
                    choose_rows(c, max, unique.as_deref())
                })
                .await?;
            if rows.is_empty() {
                continue;
            }
            self.count_request(&day);
            if probe {
                // One probe at a time: the next waits for this one's answer or the interval.
                shared.postpone_probe(&object_type);
            }
            *self.last_type.lock().expect("lock") = Some(object_type.clone());
            let n = rows.len();
            let task = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = task.send_and_settle(&object_type, &batch_id, &rows).await {
                    error!(error = %e, %object_type, %batch_id,
                           "settling a batch failed; its rows stay in flight until the next start");
                }
                drop(permit);
                task.wake.notify_one();
            });
            return Ok(Tick::Sent(n));
        }
        Ok(Tick::Idle(shared.config.database.poll_interval))
    }

    async fn daily_exhausted(&self, now: DateTime<Utc>) -> Result<Option<Duration>, StoreError> {
        let shared = &self.shared;
        let limits = &shared.config.rate_limit;
        if let Some(until) = shared.paused.lock().expect("lock").daily_until
            && until > now
        {
            return Ok(Some((until - now).to_std().unwrap_or_default()));
        }
        if limits.daily_limit == 0 {
            return Ok(None);
        }
        let day = day_key(now, &limits.timezone);
        let cached = self.daily.lock().expect("lock").clone();
        let used = if cached.0 == day {
            cached.1
        } else {
            let used = shared.store.daily_requests(&day).await?;
            *self.daily.lock().expect("lock") = (day.clone(), used);
            used
        };
        if used < limits.daily_limit {
            return Ok(None);
        }
        let reason = format!(
            "the daily limit of {} requests is used up",
            limits.daily_limit
        );
        shared.pause_daily(now, &reason).await?;
        let until = next_daily_reset(now, &limits.timezone);
        Ok(Some((until - now).to_std().unwrap_or_default()))
    }

    fn count_request(&self, day: &str) {
        let mut daily = self.daily.lock().expect("lock");
        if daily.0 == day {
            daily.1 += 1;
        } else {
            *daily = (day.to_owned(), 1);
        }
    }

    async fn until_next_due(&self, now: DateTime<Utc>) -> Result<Duration, StoreError> {
        let poll = self.shared.config.database.poll_interval;
        Ok(match self.shared.store.next_due_at().await? {
            Some(t) => t
                .parse::<DateTime<Utc>>()
                .ok()
                .and_then(|t| (t - now).to_std().ok())
                .unwrap_or(poll),
            None => poll,
        })
    }
}

impl Shared {
    /// Sends one claimed batch, reconciles the answer, settles the rows, applies pauses.
    async fn send_and_settle(
        &self,
        object_type: &str,
        batch_id: &str,
        rows: &[ClaimedRow],
    ) -> Result<(), StoreError> {
        let sent_at = Utc::now();
        let (answer, status, duration) = match Sender::body(rows) {
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
            Ok(body) => match self.sender.send(object_type, body).await {
                Sent::Answered {
                    status,
                    retry_after,
                    rate,
                    body,
                    duration,
                } => {
                    self.limiter.observe(&rate);
                    self.metrics.request(status, duration, rate.remaining);
                    if rate.daily_remaining == Some(0) {
                        self.pause_daily(Utc::now(), "HubSpot reports no daily requests remaining")
                            .await?;
                    }
                    (classify(status, retry_after, &body), status, duration)
                }
                Sent::NoAnswer { error, duration } => {
                    self.metrics.request(0, duration, None);
                    (transport_failure(error), 0, duration)
                }
            },
        };
        let plan = plan_for(&self.config, object_type, rows, &answer);
        self.count(object_type, &answer, &plan);
        let (outcome, correlation_id) = describe(&answer);
        info!(
            object_type,
            batch_id,
            size = rows.len(),
            status,
            duration_ms = duration.as_millis() as u64,
            correlation_id = correlation_id.as_deref().unwrap_or(""),
            outcome,
            "batch sent"
        );
        let log = BatchLogEntry {
            batch_id: batch_id.to_owned(),
            object_type: object_type.to_owned(),
            size: rows.len(),
            http_status: status,
            outcome: outcome.to_owned(),
            duration,
            correlation_id,
            sent_at,
        };
        let skipped = self.store.settle_batch(batch_id, &plan, &log).await?;
        if skipped > 0 {
            warn!(
                batch_id,
                skipped, "rows changed by someone else while in flight were left as they are"
            );
        }
        self.apply_pause(object_type, &answer, plan.pause).await
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

    /// Records the pause an answer calls for, or lifts the pauses an answer disproves.
    async fn apply_pause(
        &self,
        object_type: &str,
        answer: &Answer,
        pause: Option<Pause>,
    ) -> Result<(), StoreError> {
        let now = Utc::now();
        let probe_at = now
            + chrono::Duration::from_std(self.config.hubspot.auth_retry_interval)
                .unwrap_or_default();
        match pause {
            Some(Pause::All { wait, reason }) => {
                self.limiter.pause_for(wait);
                let until = now + chrono::Duration::from_std(wait).unwrap_or_default();
                warn!(%reason, wait_ms = wait.as_millis() as u64, "rate limited by HubSpot; all sending paused");
                self.paused.lock().expect("lock").recorded_all = Some("rate_limited");
                self.store
                    .set_pause("all", "rate_limited", &reason, Some(until))
                    .await?;
            }
            Some(Pause::UntilDailyReset { reason }) => self.pause_daily(now, &reason).await?,
            Some(Pause::Unauthorized { reason }) => {
                error!(%reason, "HubSpot refused the access token; nothing is sent until it works (probing every {:?})",
                       self.config.hubspot.auth_retry_interval);
                {
                    let mut paused = self.paused.lock().expect("lock");
                    paused.unauthorized = Some(probe_at);
                    paused.recorded_all = Some("unauthorized");
                }
                self.store
                    .set_pause("all", "unauthorized", &reason, None)
                    .await?;
            }
            Some(Pause::ObjectType { reason }) => {
                error!(object_type, %reason, "HubSpot refused writes of this object type; its writes stay queued");
                self.paused
                    .lock()
                    .expect("lock")
                    .forbidden
                    .insert(object_type.to_owned(), probe_at);
                self.store
                    .set_pause(&format!("object:{object_type}"), "forbidden", &reason, None)
                    .await?;
            }
            Some(Pause::FailObjectType { error }) => {
                let failed = self.store.fail_object_type(object_type, &error).await?;
                error!(object_type, %error, failed, "HubSpot does not know this object type; its queued writes failed");
            }
            None => {}
        }
        // An answer other than 401 proves the token works; other than 403, the scope.
        let (lift_all, lift_type) = {
            let mut paused = self.paused.lock().expect("lock");
            let mut lift_all = false;
            if !matches!(answer, Answer::Unauthorized(_)) && paused.unauthorized.take().is_some() {
                info!("HubSpot accepts the access token again; sending resumes");
                lift_all = true;
            }
            if matches!(answer, Answer::Created(_)) && paused.recorded_all == Some("rate_limited") {
                lift_all = true;
            }
            if lift_all {
                paused.recorded_all = None;
            }
            let lift_type = !matches!(answer, Answer::Forbidden(_))
                && paused.forbidden.remove(object_type).is_some();
            (lift_all, lift_type)
        };
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

    async fn pause_daily(&self, now: DateTime<Utc>, reason: &str) -> Result<(), StoreError> {
        let until = next_daily_reset(now, &self.config.rate_limit.timezone);
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
            .set_pause("all", "daily_limit", reason, Some(until))
            .await
    }

    fn global_pause(&self, now: DateTime<Utc>) -> Option<Duration> {
        if let Some(until) = self.limiter.paused_until() {
            return Some(until.saturating_duration_since(tokio::time::Instant::now()));
        }
        let paused = self.paused.lock().expect("lock");
        match paused.unauthorized {
            Some(probe_at) if probe_at > now => Some((probe_at - now).to_std().unwrap_or_default()),
            _ => None,
        }
    }

    fn may_send_type(&self, object_type: &str, now: DateTime<Utc>) -> bool {
        let paused = self.paused.lock().expect("lock");
        paused
            .forbidden
            .get(object_type)
            .is_none_or(|probe_at| *probe_at <= now)
    }

    /// Moves the next probe time one retry interval ahead.
    fn postpone_probe(&self, object_type: &str) {
        let next = Utc::now()
            + chrono::Duration::from_std(self.config.hubspot.auth_retry_interval)
                .unwrap_or_default();
        let mut paused = self.paused.lock().expect("lock");
        if paused.unauthorized.is_some() {
            paused.unauthorized = Some(next);
        } else if let Some(t) = paused.forbidden.get_mut(object_type) {
            *t = next;
        }
    }

    /// While the token or a type's scope is refused, a probe (a one-row request) goes at
    /// each retry interval.
    fn is_probe(&self, object_type: &str, now: DateTime<Utc>) -> bool {
        let paused = self.paused.lock().expect("lock");
        paused.unauthorized.is_some_and(|t| t <= now)
            || paused.forbidden.get(object_type).is_some_and(|t| *t <= now)
    }
}

/// The reconciler's plan for a batch of `object_type` under the configured rules.
fn plan_for(config: &Config, object_type: &str, rows: &[ClaimedRow], answer: &Answer) -> Plan {
    let batch: Vec<BatchRow> = rows
        .iter()
        .map(|r| BatchRow {
            id: r.id,
            trace_id: r.trace_id.clone(),
            attempts: r.attempts.max(0) as u32,
            properties: serde_json::from_str(&r.properties).unwrap_or_default(),
        })
        .collect();
    let policy = config.policy(object_type);
    reconcile(
        &batch,
        answer,
        &policy,
        config.rate_limit.interval,
        rand::random::<f64>(),
    )
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
        Answer::Transient { detail, .. } if detail.status == 0 => ("no_answer", None),
        Answer::Transient { detail, .. } => ("transient", detail.correlation_id.clone()),
    }
}
