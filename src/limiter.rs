//! The burst rate limit: HubSpot allows `requests_per_interval` requests in any rolling
//! `interval`, and this limiter never allows more, adapting down when HubSpot's headers
//! report a lower limit, and holding all sending while a pause (429, no requests
//! remaining) lasts. The daily limit is counted in the database by the dispatcher.
//!
//! Why burst 1: governor's GCRA lets through at most `burst + rate × T` requests in any
//! window T. For that to stay within `n` per rolling `interval`, the burst must be small;
//! with burst 1 and one request every `interval / (n - 1)` the worst window holds exactly
//! `n`, and the steady rate is `(n - 1) / n` of HubSpot's limit (0.99 for 100 per 10 s).

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;
use tracing::warn;

/// HubSpot's rate-limit headers, each optional.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    pub max: Option<u32>,
    pub remaining: Option<u32>,
    pub interval_ms: Option<u64>,
    pub daily_remaining: Option<u64>,
}

/// The burst limiter shared by every sending task.
pub struct Limiter {
    /// Replaced when HubSpot reports a lower limit; readers clone the `Arc` and wait on it
    /// without holding the lock.
    governor: Mutex<Arc<DefaultDirectRateLimiter>>,
    /// The limit in force: configured, or lower if HubSpot said so.
    limit: Mutex<(u32, Duration)>,
    /// No request starts before this instant (429s, `Remaining: 0`).
    paused_until: Mutex<Option<Instant>>,
}

fn build(n: u32, interval: Duration) -> DefaultDirectRateLimiter {
    let period = interval / n.saturating_sub(1).max(1);
    let quota = Quota::with_period(period.max(Duration::from_nanos(1)))
        .expect("period is above zero")
        .allow_burst(NonZeroU32::MIN);
    RateLimiter::direct(quota)
}

impl Limiter {
    pub fn new(requests_per_interval: u32, interval: Duration) -> Self {
        Self {
            governor: Mutex::new(Arc::new(build(requests_per_interval, interval))),
            limit: Mutex::new((requests_per_interval, interval)),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits for a burst permit. Pauses are not waited out here: the dispatcher checks
    /// [`Limiter::paused_until`] and stays idle (its loop keeps going round, which the
    /// watchdog watches) instead of sleeping through a pause that may last hours.
    pub async fn acquire(&self) {
        let governor = self.governor.lock().expect("lock").clone();
        governor.until_ready().await;
    }

    /// Holds all sending for `wait` (extends, never shortens, a pause in force).
    pub fn pause_for(&self, wait: Duration) {
        let until = Instant::now() + wait;
        let mut paused = self.paused_until.lock().expect("lock");
        if paused.is_none_or(|t| t < until) {
            *paused = Some(until);
        }
    }

    /// When a pause in force ends, if one is.
    pub fn paused_until(&self) -> Option<Instant> {
        self.paused_until
            .lock()
            .expect("lock")
            .filter(|t| *t > Instant::now())
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
            *self.governor.lock().expect("lock") = Arc::new(build(max, interval));
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

    #[tokio::test]
    async fn never_more_than_n_in_any_window() {
        // 5 per 200 ms: 12 acquisitions must take at least two full windows.
        let limiter = Limiter::new(5, Duration::from_millis(200));
        let start = std::time::Instant::now();
        let mut times = Vec::new();
        for _ in 0..12 {
            limiter.acquire().await;
            times.push(start.elapsed());
        }
        for (i, t) in times.iter().enumerate().skip(5) {
            let window_start = times[i - 5];
            assert!(
                *t - window_start >= Duration::from_millis(199),
                "6 requests within one window at {i}"
            );
        }
    }

    #[tokio::test]
    async fn remaining_zero_pauses_and_a_lower_max_is_adopted() {
        let limiter = Limiter::new(100, Duration::from_secs(10));
        limiter.observe(&RateHeaders {
            max: Some(50),
            remaining: Some(0),
            interval_ms: Some(10_000),
            daily_remaining: None,
        });
        assert_eq!(limiter.limit(), (50, Duration::from_secs(10)));
        assert!(limiter.paused_until().is_some());
        assert!(limiter.paused_until().unwrap() > Instant::now() + Duration::from_secs(9));
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
