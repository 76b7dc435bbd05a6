//! The burst rate limit: HubSpot allows `requests_per_interval` requests in any rolling
//! `interval`. This limiter grants permits so that no window of `interval` holds more than
//! `n` grants, adapts down when HubSpot's headers report a lower limit, and holds all
//! sending while a pause (429, no requests remaining) lasts. The daily limit is counted in
//! the database by the dispatcher.
//!
//! What it bounds is the moments permits are *granted*. HubSpot counts requests as they
//! arrive, after the claim and the network, so two grants `interval / (n − 1)` apart can
//! arrive a little closer; the spacing below leaves that much room, and a 429, if one
//! comes, sets the real pause.
//!
//! Why burst 1: governor's GCRA lets through at most `burst + rate × T` requests in any
//! window T. For that to stay within `n` per rolling `interval`, the burst must be small;
//! with burst 1 and one request every `interval / (n - 1)` the worst window holds exactly
//! `n`, and the steady rate is `(n - 1) / n` of HubSpot's limit (0.99 for 100 per 10 s).
//!
//! Time comes from the dispatcher's [`Clock`] (monotonic reading), so tests move it by
//! hand; the limiter never sleeps itself: [`Limiter::check`] says how long to wait.

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tracing::warn;

use super::clock::Clock;
use crate::hubspot::wire::RateHeaders;

/// Governor reads the dispatcher's clock, as a duration since the clock began.
#[derive(Clone)]
struct GovernorClock(Arc<dyn Clock>);

impl governor::clock::Clock for GovernorClock {
    type Instant = Duration;

    fn now(&self) -> Duration {
        self.0.elapsed()
    }
}

type Governor = RateLimiter<NotKeyed, InMemoryState, GovernorClock, NoOpMiddleware<Duration>>;

/// The burst limiter shared by the dispatcher and its sending tasks.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    /// Replaced when HubSpot reports a lower limit.
    governor: Mutex<Arc<Governor>>,
    /// The limit in force: configured, or lower if HubSpot said so.
    limit: Mutex<(u32, Duration)>,
    /// No request starts before this reading of the clock (429s, `Remaining: 0`).
    paused_until: Mutex<Option<Duration>>,
}

fn build(n: u32, interval: Duration, clock: &Arc<dyn Clock>) -> Governor {
    let period = interval / n.saturating_sub(1).max(1);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("period is above zero")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct_with_clock(quota, GovernorClock(clock.clone()))
}

impl Limiter {
    pub fn new(requests_per_interval: u32, interval: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            governor: Mutex::new(Arc::new(build(requests_per_interval, interval, &clock))),
            limit: Mutex::new((requests_per_interval, interval)),
            paused_until: Mutex::new(None),
            clock,
        }
    }

    /// Takes a permit now, or says how long until one is free. Pauses are not checked
    /// here: the dispatcher asks [`Limiter::paused_for`] first and stays idle (its loop
    /// keeps going round, which the watchdog watches) through a pause that may last hours.
    pub fn check(&self) -> Result<(), Duration> {
        let governor = self.governor.lock().expect("lock").clone();
        governor
            .check()
            .map_err(|not_until| not_until.wait_time_from(self.clock.elapsed()))
    }

    /// Holds all sending for `wait` (extends, never shortens, a pause in force).
    pub fn pause_for(&self, wait: Duration) {
        let until = self.clock.elapsed() + wait;
        let mut paused = self.paused_until.lock().expect("lock");
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
    }

    /// How much of a pause in force is left, if one is.
    pub fn paused_for(&self) -> Option<Duration> {
        let now = self.clock.elapsed();
        self.paused_until
            .lock()
            .expect("lock")
            .filter(|t| *t > now)
            .map(|t| t - now)
    }

    /// Adapts to what HubSpot reported: no requests remaining pauses for the interval; a
    /// lower maximum than configured replaces the limiter.
    pub fn observe(&self, headers: &RateHeaders) {
        let (n, interval) = *self.limit.lock().expect("lock");
        let reported = headers
            .interval_ms
            .map(Duration::from_millis)
            .filter(|d| !d.is_zero());
        if headers.remaining == Some(0) {
            self.pause_for(reported.unwrap_or(interval));
        }
        if let Some(max) = headers.max.filter(|m| *m > 0 && *m < n) {
            let interval = reported.unwrap_or(interval);
            warn!(
                configured = n,
                reported = max,
                "HubSpot reports a lower rate limit than configured; using HubSpot's"
            );
            *self.limit.lock().expect("lock") = (max, interval);
            *self.governor.lock().expect("lock") = Arc::new(build(max, interval, &self.clock));
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> (u32, Duration) {
        *self.limit.lock().expect("lock")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::clock::ManualClock;

    fn manual() -> Arc<ManualClock> {
        Arc::new(ManualClock::new("2026-12-01T00:00:00Z".parse().unwrap()))
    }

    /// Takes `count` permits as fast as the limiter allows; the clock readings of each.
    fn grants(limiter: &Limiter, clock: &ManualClock, count: usize) -> Vec<Duration> {
        let mut times = Vec::new();
        while times.len() < count {
            match limiter.check() {
                Ok(()) => times.push(clock.elapsed()),
                Err(wait) => clock.advance(wait.max(Duration::from_nanos(1))),
            }
        }
        times
    }

    #[test]
    fn never_more_than_n_in_any_window() {
        let clock = manual();
        let limiter = Limiter::new(5, Duration::from_millis(200), clock.clone());
        let times = grants(&limiter, &clock, 40);
        for (i, t) in times.iter().enumerate().skip(5) {
            assert!(
                *t - times[i - 5] >= Duration::from_millis(200),
                "6 grants within one window at {i}: {times:?}"
            );
        }
        // And it does not waste the window: 40 grants take about 39 × 200/4 ms.
        assert_eq!(times[39] - times[0], Duration::from_millis(39 * 50));
    }

    #[test]
    fn remaining_zero_pauses_and_a_lower_max_is_adopted() {
        let clock = manual();
        let limiter = Limiter::new(100, Duration::from_secs(10), clock.clone());
        limiter.observe(&RateHeaders {
            max: Some(50),
            remaining: Some(0),
            interval_ms: Some(10_000),
            daily_remaining: None,
        });
        assert_eq!(limiter.limit(), (50, Duration::from_secs(10)));
        assert_eq!(limiter.paused_for(), Some(Duration::from_secs(10)));
        clock.advance(Duration::from_secs(10));
        assert_eq!(limiter.paused_for(), None);
        limiter.observe(&RateHeaders {
            max: Some(190),
            ..Default::default()
        });
        assert_eq!(
            limiter.limit().0,
            50,
            "a higher reported max never raises the configured limit"
        );
    }
}
