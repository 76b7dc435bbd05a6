//! The sending loop: pick a ready object type, claim a batch shortly before the rate
//! limit frees a slot for it, send it on its own task at that slot (up to
//! `max_in_flight` at once), and let that task reconcile the answer and settle the rows;
//! honour pauses (429, daily limit, 401, 403, refused requests) and the circuit breaker
//! (HubSpot unreachable).
//! [`Dispatcher::tick`] is one step; [`Dispatcher::run`] repeats it and sleeps when there
//! is nothing to do.
//!
//! The outside world comes in through seams: the sender ([`BatchSender`]), the clock
//! ([`Clock`]) and the jitter of retries, so the tick's tests script HubSpot's answers
//! and move time by hand.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::breaker::Breaker;
use super::clock::{Clock, SystemClock};
use super::fleet::RECOVER_EVERY;
use super::limiter::Limiter;
use super::scheduler::{Due, Readiness, choose_rows, ready_types};
use super::sender::{BatchSender, HttpSender};

use super::shared::{Departure, Paused, Shared};
use crate::config::Config;
use crate::model::rate::Rule;
use crate::model::{day_key, next_daily_reset};
use crate::runtime::metrics::Metrics;
use crate::runtime::systemd::Heartbeat;
use crate::store::claim::{Claim, Claimed};
use crate::store::{Store, StoreError};

/// The key a lane's pause is kept under beside the object types' (`contacts upsert:email`;
/// an object type holds no space).
pub fn lane_key(object_type: &str, lane: &str) -> String {
    format!("{object_type} {lane}")
}

/// How long before its departure slot a batch is claimed: more than a claim takes (a few
/// milliseconds; tens when producers hold the write lock), so the next batch is ready the
/// moment the window frees, and little enough that rows are not held in flight for long.
pub const CLAIM_AHEAD: Duration = Duration::from_millis(100);

/// What one step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tick {
    /// A batch of this many rows was claimed and is being sent.
    Sent(usize),
    /// Nothing to send now; look again after at most this long (or when woken).
    Idle(Duration),
}

pub struct Dispatcher<S = HttpSender> {
    shared: Arc<Shared<S>>,
    /// One permit per request in flight; a sending task holds one until it has settled.
    permits: Arc<Semaphore>,
    /// The (object type, lane) served last, for round robin.
    last_type: Mutex<Option<(String, String)>>,
}

impl<S: BatchSender> Dispatcher<S> {
    /// A dispatcher on the host's clock with random retry jitter.
    pub fn new(
        store: Store,
        config: Arc<Config>,
        sender: S,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::with_clock(
            store,
            config,
            sender,
            wake,
            metrics,
            Arc::new(SystemClock::default()),
            rand::random::<f64>,
        )
    }

    /// A dispatcher whose every reading of time comes from `clock` and whose retries are
    /// spread by `jitter` (a number in `[0, 1)`).
    pub fn with_clock(
        store: Store,
        config: Arc<Config>,
        sender: S,
        wake: Arc<Notify>,
        metrics: Arc<Metrics>,
        clock: Arc<dyn Clock>,
        jitter: fn() -> f64,
    ) -> Self {
        let rl = &config.rate_limit;
        let limiter = Limiter::new(rl.requests_per_interval, rl.interval, clock.clone());
        if store.is_shared() {
            limiter.share_budget();
        }
        Self {
            permits: Arc::new(Semaphore::new(rl.max_in_flight)),
            last_type: Mutex::new(None),
            shared: Arc::new(Shared {
                limiter,
                store,
                sender,
                wake,
                paused: Mutex::new(Paused::default()),
                trace: Mutex::new(Default::default()),
                daily: Mutex::new((String::new(), 0)),
                breaker: Mutex::new(Breaker::new(
                    config.retry.unreachable_after,
                    config.retry.max_probe_interval,
                )),
                metrics,
                config,
                clock,
                jitter,
            }),
        }
    }

    /// Rows a crash left `in_flight` are ambiguous: HubSpot may have created them. They
    /// follow the same rules as a timeout (see [`Shared::recover`]).
    pub async fn recover(&self) -> Result<usize, StoreError> {
        self.shared.recover().await
    }

    /// `hubspot-outbox setup`: checks (and unless `dry_run` creates) `object_type`'s
    /// trace property now; see [`Shared::setup_trace`].
    pub async fn setup_trace(
        &self,
        object_type: &str,
        dry_run: bool,
    ) -> Result<Option<(String, super::trace::Found)>, StoreError> {
        self.shared.setup_trace(object_type, dry_run).await
    }

    /// Repeats [`Dispatcher::tick`] until `shutdown`, then waits up to `drain` for requests
    /// in flight to settle.
    pub async fn run(
        self: Arc<Self>,
        shutdown: CancellationToken,
        drain: Duration,
        heartbeat: Arc<Heartbeat>,
    ) {
        // Alone, this daemon starts knowing of no pause and meets again whatever still
        // holds; sharing the outbox, the pauses are other daemons' too (see `fleet`).
        if !self.shared.store.is_shared()
            && let Err(e) = self.shared.store.clear_pauses().await
        {
            error!(error = %e, "clearing pauses recorded by an earlier run failed; `status` may show stale ones");
        }
        if let Err(e) = self.recover().await {
            error!(error = %e, "recovering in-flight writes failed; they stay in flight until the next start");
        }
        let poll = self.shared.config.database.poll_interval;
        let mut recovered_at = std::time::Instant::now();
        loop {
            heartbeat.beat();
            // Sharing the outbox, another daemon may die with rows in flight at any time.
            if self.shared.store.is_shared() && recovered_at.elapsed() >= RECOVER_EVERY {
                recovered_at = std::time::Instant::now();
                if let Err(e) = self.recover().await {
                    error!(error = %e, "taking over writes left in flight by a stopped daemon failed; will retry");
                }
            }
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
        if tokio::time::timeout(drain, self.settled()).await.is_err() {
            warn!(
                "requests still in flight at shutdown; the next start treats them as interrupted"
            );
        }
    }

    /// Waits until no request is in flight: every claimed batch has been settled.
    pub async fn settled(&self) {
        let all = self.shared.config.rate_limit.max_in_flight as u32;
        let _all = self.permits.acquire_many(all).await;
    }

    /// One step: claim and launch at most one batch.
    pub async fn tick(&self) -> Result<Tick, StoreError> {
        let shared = &self.shared;
        let now = shared.clock.now();
        shared.sync_fleet(now).await?;
        if let Some(wait) = shared.global_pause(now) {
            return Ok(Tick::Idle(wait));
        }
        if let Some(wait) = shared.breaker.lock().expect("lock").wait(now) {
            return Ok(Tick::Idle(wait));
        }
        if let Some(wait) = self.daily_exhausted(now).await? {
            return Ok(Tick::Idle(wait));
        }
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            // Every slot is busy; a finishing request wakes the loop.
            return Ok(Tick::Idle(shared.config.database.poll_interval));
        };
        // Before any query: while the window is full there is nothing to look up.
        let wait = shared.limiter.wait();
        if wait > CLAIM_AHEAD {
            return Ok(Tick::Idle(wait - CLAIM_AHEAD));
        }
        // Nor while the budget shared with other daemons is taken until later.
        let (n, interval) = shared.limiter.limit();
        let rate = Rule { n, interval };
        if let Some(wait) = shared.store.next_departure(rate).await?
            && wait > CLAIM_AHEAD
        {
            return Ok(Tick::Idle(wait - CLAIM_AHEAD));
        }
        let due: Vec<Due> = shared
            .store
            .due_types(now, shared.config.batching.max_size)
            .await?
            .into_iter()
            .filter(|d| shared.may_send_type(&d.object_type, now))
            .filter(|d| shared.may_send_type(&lane_key(&d.object_type, &d.lane), now))
            .filter_map(|d| {
                Some(Due {
                    oldest_due_at: d.oldest_due_at.parse().ok()?,
                    count: d.count.max(0) as usize,
                    object_type: d.object_type,
                    lane: d.lane,
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
            last.as_ref().map(|(t, l)| (t.as_str(), l.as_str())),
        ) {
            Readiness::Ready(order) => order,
            Readiness::WaitFor(wait) => return Ok(Tick::Idle(wait)),
            Readiness::Nothing => return Ok(Tick::Idle(self.until_next_due(now).await?)),
        };
        for (object_type, lane) in order {
            // The first batch of a type waits for its trace property to be checked.
            let Ok(trace) = shared.trace_for(&object_type).await? else {
                continue;
            };
            // Checking the trace property may have used the day's last requests.
            if let Some(wait) = self.daily_exhausted(shared.clock.now()).await? {
                return Ok(Tick::Idle(wait));
            }
            let now = shared.clock.now();
            let reach_probe = shared.breaker.lock().expect("lock").probe_due(now);
            let lane_probe = shared.is_probe(&lane_key(&object_type, &lane), now);
            let probe = reach_probe || lane_probe || shared.is_probe(&object_type, now);
            let max = if probe { 1 } else { batching.max_size };
            let unique = shared.config.policy(&object_type).unique_property;
            let batch_id = uuid::Uuid::now_v7().to_string();
            let day = day_key(now, &shared.config.rate_limit.timezone);
            let claim = Claim {
                object_type: &object_type,
                lane: &lane,
                look_ahead: max * 2,
                now,
                batch_id: &batch_id,
                day: &day,
                sent_with: trace.as_deref().filter(|_| lane == "create"),
                trace_property: trace.as_deref(),
                rate,
            };
            let Claimed { rows, shared_slot } = shared
                .store
                .claim_batch(&claim, &|c| choose_rows(c, max, unique.as_deref()))
                .await?;
            if rows.is_empty() {
                continue;
            }
            shared.counted(&day);
            let slot = shared
                .limiter
                .reserve_after(shared_slot.map(|s| s.departs_in));
            if reach_probe {
                shared.breaker.lock().expect("lock").probe_sent();
            } else if lane_probe {
                shared.postpone_probe(&lane_key(&object_type, &lane));
            } else if probe {
                // One probe at a time: the next waits for this one's answer or the interval.
                shared.postpone_probe(&object_type);
            }
            *self.last_type.lock().expect("lock") = Some((object_type.clone(), lane.clone()));
            let n = rows.len();
            let task = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = task
                    .depart(
                        &object_type,
                        &batch_id,
                        &rows,
                        Departure { slot, shared_slot },
                        reach_probe,
                        trace,
                    )
                    .await
                {
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

    /// How long to wait when the day's requests are used up (counted here, or reported by
    /// HubSpot); `None` while some are left.
    async fn daily_exhausted(&self, now: DateTime<Utc>) -> Result<Option<Duration>, StoreError> {
        let shared = &self.shared;
        let limits = &shared.config.rate_limit;
        if let Some(wait) = shared.daily_pause(now) {
            return Ok(Some(wait));
        }
        if limits.daily_limit == 0 {
            return Ok(None);
        }
        let day = day_key(now, &limits.timezone);
        let cached = shared.daily.lock().expect("lock").clone();
        let used = if cached.0 == day {
            cached.1
        } else {
            let used = shared.store.daily_requests(&day).await?;
            *shared.daily.lock().expect("lock") = (day.clone(), used);
            used
        };
        if used < limits.daily_limit {
            return Ok(None);
        }
        let reason = format!(
            "the daily limit of {} requests is used up",
            limits.daily_limit
        );
        let until = next_daily_reset(now, &limits.timezone);
        shared.pause_daily(now, &reason, until).await?;
        Ok(Some((until - now).to_std().unwrap_or_default()))
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
