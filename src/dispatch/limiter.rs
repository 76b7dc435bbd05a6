//! The burst rate limit: HubSpot allows `requests_per_interval` requests in any rolling
//! `interval`. The limiter keeps the moments its own requests left (a log of departures)
//! and lets the next one go as soon as fewer than `n` of them lie within one window of
//! it, so every window can be used whole and none holds more than `n`.
//!
//! HubSpot counts requests as they arrive, and arrival lags departure by a network time
//! that varies a little from request to request, so a slot frees [`SKEW_MARGIN`] after
//! the window of its predecessor closes: `n` requests per `interval + margin`, 0.995 of
//! the limit at 190 per 10 s, 0.976 at 10 per 2 s. A 429, if one comes anyway, sets the
//! real pause.
//!
//! Within a window, departures are at least `interval / 2n` apart, so a free window is
//! not taken in one burst of simultaneous requests (whose arrival spreads the most, and
//! which HubSpot's per-second policy may refuse); `n` of them still fit in half a window.
//!
//! It adapts to HubSpot's headers: `Remaining: 0` holds sending until the oldest request
//! HubSpot can be counting leaves its window (never a whole interval from now), a lower
//! `Max` is adopted and a higher one restores the configured limit (never more).
//!
//! Why not governor's GCRA, which the daemon used before: with burst `b` it admits
//! `b + interval / period` requests into one window, so staying within `n` costs the
//! steady rate `(n − b) / n`; at burst 1 that is 0.9 of a limit of 10 per 2 s. A log of
//! departures has no such loss.
//!
//! [`Window`] is the pure decision; [`Limiter`] shares it between the dispatcher and its
//! sending tasks and reads the dispatcher's [`Clock`] (its monotonic reading), so tests
//! move time by hand. The limiter never sleeps: it says when the next request may leave.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tracing::{info, warn};

use super::clock::Clock;
use crate::hubspot::wire::RateHeaders;

use crate::model::rate::Rule;
pub use crate::model::rate::SKEW_MARGIN;

/// How long `Remaining: 0` holds sending when the daemon sent nothing HubSpot could be
/// counting (the headers answer a request from before a restart, or from another client).
pub const UNKNOWN_WINDOW_WAIT: Duration = Duration::from_secs(1);

/// The departures of recent requests and the limit they are held to, as readings of a
/// monotonic clock. Pure: every method takes `now`.
#[derive(Debug, Clone)]
pub struct Window {
    /// The limit as configured: HubSpot's headers may lower it, never raise it past this.
    configured: u32,
    n: u32,
    interval: Duration,
    /// Departures (and reserved departures) still inside some window, oldest first.
    sends: VecDeque<Duration>,
    paused_until: Option<Duration>,
    /// Whether `Remaining: 0` holds sending. Not where daemons share one budget in the
    /// database: there HubSpot's count is theirs together, the shared ledger already
    /// keeps it, and a hold would make this daemon leave later than the slot it took
    /// (which is what lets the others' slots be placed right). A 429 still pauses all.
    remaining_holds: bool,
}

impl Window {
    pub fn new(requests_per_interval: u32, interval: Duration) -> Self {
        Self {
            configured: requests_per_interval.max(1),
            n: requests_per_interval.max(1),
            interval,
            sends: VecDeque::new(),
            paused_until: None,
            remaining_holds: true,
        }
    }

    fn rule(&self) -> Rule {
        Rule {
            n: self.n,
            interval: self.interval,
        }
    }

    /// How long one departure occupies a slot.
    fn span(&self) -> Duration {
        self.rule().span()
    }

    /// Forgets departures whose window has closed.
    fn prune(&mut self, now: Duration) {
        let span = self.span();
        while self.sends.len() > self.n as usize
            || self.sends.front().is_some_and(|t| *t + span <= now)
        {
            self.sends.pop_front();
        }
    }

    /// The earliest moment, at or after `now`, the next request may leave: after any
    /// pause, one gap after the last departure, and one span after the `n`-th latest.
    pub fn next_slot(&self, now: Duration) -> Duration {
        let (older, newer) = self.sends.as_slices();
        let sorted: Vec<Duration> = older.iter().chain(newer).copied().collect();
        self.rule().next_departure(&sorted, self.paused_until, now)
    }

    /// Takes the next slot: records a departure there and returns it.
    pub fn reserve(&mut self, now: Duration) -> Duration {
        self.prune(now);
        let at = self.next_slot(now);
        self.sends.push_back(at);
        at
    }

    /// A reserved departure left at `actual` instead (it waited out a pause).
    pub fn moved(&mut self, reserved: Duration, actual: Duration) {
        if let Some(i) = self.sends.iter().position(|t| *t == reserved) {
            self.sends.remove(i);
        }
        let i = self.sends.partition_point(|t| *t <= actual);
        self.sends.insert(i, actual);
    }

    /// A reserved departure that never left (its batch went back to the queue).
    pub fn cancel(&mut self, reserved: Duration) {
        if let Some(i) = self.sends.iter().rposition(|t| *t == reserved) {
            self.sends.remove(i);
        }
    }

    /// Holds every departure until `until` (extends, never shortens, a pause in force).
    pub fn pause_until(&mut self, until: Duration) {
        if self.paused_until.is_none_or(|t| t < until) {
            self.paused_until = Some(until);
        }
    }

    /// How much of a pause in force is left at `now`.
    pub fn paused_for(&self, now: Duration) -> Option<Duration> {
        self.paused_until.filter(|t| *t > now).map(|t| t - now)
    }

    /// Adapts to the headers of the answer to a request that left at `sent`. Returns what
    /// changed, for the log.
    pub fn observe(&mut self, headers: &RateHeaders, sent: Duration, now: Duration) -> Vec<String> {
        let mut changes = Vec::new();
        if let Some(ms) = headers.interval_ms.filter(|ms| *ms > 0) {
            let reported = Duration::from_millis(ms);
            if reported != self.interval {
                changes.push(format!(
                    "HubSpot reports a window of {reported:?}; was {:?}",
                    self.interval
                ));
                self.interval = reported;
            }
        }
        if let Some(max) = headers.max.filter(|m| *m > 0) {
            let n = max.min(self.configured);
            if n != self.n {
                changes.push(format!(
                    "HubSpot reports a limit of {max} per window; sending {n} (configured {})",
                    self.configured
                ));
                self.n = n;
            }
        }
        if headers.remaining == Some(0) && self.remaining_holds {
            // HubSpot counted `n` requests in the window that ended with this one: the
            // oldest of ours in that window frees the next slot.
            let counted = self
                .sends
                .iter()
                .find(|t| **t <= sent && **t + self.interval > sent);
            let until = match counted {
                Some(oldest) => *oldest + self.span(),
                None => now + UNKNOWN_WINDOW_WAIT,
            };
            if self.paused_until.is_none_or(|p| p < until) && until > now {
                changes.push(format!(
                    "HubSpot reports no requests remaining in the window; holding for {:?}",
                    until - now
                ));
            }
            self.pause_until(until);
        }
        changes
    }

    /// The limit in force: requests per interval.
    pub fn limit(&self) -> (u32, Duration) {
        (self.n, self.interval)
    }
}

/// The window shared by the dispatcher (which reserves departures) and its sending tasks
/// (which report HubSpot's headers), on the dispatcher's clock.
pub struct Limiter {
    clock: Arc<dyn Clock>,
    window: Mutex<Window>,
}

impl Limiter {
    pub fn new(requests_per_interval: u32, interval: Duration, clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            window: Mutex::new(Window::new(requests_per_interval, interval)),
        }
    }

    /// Daemons share the budget in the database: `Remaining: 0` no longer holds sending
    /// (see `Window::remaining_holds`).
    pub fn share_budget(&self) {
        self.window().remaining_holds = false;
    }

    fn window(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().expect("lock")
    }

    /// How long until the next request may leave (zero: now).
    pub fn wait(&self) -> Duration {
        let now = self.clock.elapsed();
        self.window().next_slot(now) - now
    }

    /// Reserves the next departure and returns its moment (a reading of the clock's
    /// monotonic time); the request must not leave before it.
    pub fn reserve(&self) -> Duration {
        self.window().reserve(self.clock.elapsed())
    }

    /// [`Limiter::reserve`], no earlier than `earliest_in` from now when it is given (the
    /// slot a claim took in the rate budget daemons share).
    pub fn reserve_after(&self, earliest_in: Option<Duration>) -> Duration {
        let mut window = self.window();
        let now = self.clock.elapsed();
        let reserved = window.reserve(now);
        match earliest_in {
            Some(wait) if now + wait > reserved => {
                window.moved(reserved, now + wait);
                now + wait
            }
            _ => reserved,
        }
    }

    /// A reserved departure left later than reserved.
    pub fn moved(&self, reserved: Duration, actual: Duration) {
        self.window().moved(reserved, actual);
    }

    /// A reserved departure that never left.
    pub fn cancel(&self, reserved: Duration) {
        self.window().cancel(reserved);
    }

    /// Holds all sending for `wait` (extends, never shortens, a pause in force).
    pub fn pause_for(&self, wait: Duration) {
        let until = self.clock.elapsed() + wait;
        self.window().pause_until(until);
    }

    /// How much of a pause in force is left, if one is.
    pub fn paused_for(&self) -> Option<Duration> {
        self.window().paused_for(self.clock.elapsed())
    }

    /// Adapts to the headers of the answer to a request that left at `sent`.
    pub fn observe(&self, headers: &RateHeaders, sent: Duration) {
        let changes = self.window().observe(headers, sent, self.clock.elapsed());
        for change in changes {
            if change.starts_with("HubSpot reports no requests") {
                info!("{change}");
            } else {
                warn!("{change}");
            }
        }
    }

    /// The limit in force.
    pub fn limit(&self) -> (u32, Duration) {
        self.window().limit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    /// Reserves `count` departures as early as the window allows, starting at zero.
    fn departures(window: &mut Window, count: usize) -> Vec<Duration> {
        (0..count).map(|_| window.reserve(Duration::ZERO)).collect()
    }

    #[test]
    fn never_more_than_n_in_any_window_and_every_window_used_whole() {
        let mut w = Window::new(5, 200 * MS);
        let times = departures(&mut w, 40);
        for (i, t) in times.iter().enumerate().skip(5) {
            assert!(
                *t - times[i - 5] >= 200 * MS,
                "6 departures within one window at {i}: {times:?}"
            );
        }
        // Five, 20 ms apart (200 ms / 2n), then five more as each window (plus the
        // margin) closes: every window used whole.
        assert_eq!(times[..5], [0, 20, 40, 60, 80].map(|ms| ms * MS));
        assert_eq!(times[5], 250 * MS);
        assert_eq!(times[39], 80 * MS + 7 * 250 * MS);
    }

    #[test]
    fn remaining_zero_after_the_nth_request_holds_only_until_the_first_leaves_the_window() {
        let mut w = Window::new(5, Duration::from_secs(10));
        // Five requests leave 100 ms apart; the fifth's answer, 300 ms later, says none
        // are left.
        let sent: Vec<Duration> = (0..5).map(|i| w.reserve(i * 100 * MS)).collect();
        let answered = sent[4] + 300 * MS;
        w.observe(
            &RateHeaders {
                remaining: Some(0),
                ..Default::default()
            },
            sent[4],
            answered,
        );
        // Held until the first of the five leaves the window, not 10 s from the answer.
        let expected = sent[0] + Duration::from_secs(10) + SKEW_MARGIN;
        assert_eq!(w.paused_for(answered), Some(expected - answered));
        assert_eq!(w.next_slot(answered), expected);
        assert!(expected < answered + Duration::from_secs(10));
    }

    #[test]
    fn remaining_zero_for_a_request_the_daemon_cannot_place_holds_briefly() {
        let mut w = Window::new(5, Duration::from_secs(10));
        let now = Duration::from_secs(100);
        w.observe(
            &RateHeaders {
                remaining: Some(0),
                ..Default::default()
            },
            now - 300 * MS,
            now,
        );
        assert_eq!(w.paused_for(now), Some(UNKNOWN_WINDOW_WAIT));
    }

    #[test]
    fn a_lower_max_is_adopted_and_a_higher_one_restores_the_configured_limit() {
        let mut w = Window::new(100, Duration::from_secs(10));
        let max = |m| RateHeaders {
            max: Some(m),
            ..Default::default()
        };
        assert_eq!(w.observe(&max(50), Duration::ZERO, Duration::ZERO).len(), 1);
        assert_eq!(w.limit(), (50, Duration::from_secs(10)));
        w.observe(&max(80), Duration::ZERO, Duration::ZERO);
        assert_eq!(w.limit().0, 80, "raised back when HubSpot reports more");
        w.observe(&max(190), Duration::ZERO, Duration::ZERO);
        assert_eq!(w.limit().0, 100, "never past the configured limit");
        assert!(
            w.observe(&max(190), Duration::ZERO, Duration::ZERO)
                .is_empty()
        );
    }

    #[test]
    fn a_departure_that_waited_out_a_pause_counts_when_it_left_and_a_cancelled_one_not_at_all() {
        let mut w = Window::new(2, Duration::from_secs(1));
        let a = w.reserve(Duration::ZERO);
        let b = w.reserve(Duration::ZERO);
        assert_eq!(b, 250 * MS, "a quarter second apart (1 s / 2n)");
        assert_eq!(
            w.next_slot(Duration::ZERO),
            Duration::from_secs(1) + SKEW_MARGIN
        );
        w.moved(a, 500 * MS);
        w.cancel(b);
        assert_eq!(
            w.next_slot(800 * MS),
            800 * MS,
            "one departure in the window"
        );
        w.reserve(800 * MS);
        assert_eq!(
            w.next_slot(800 * MS),
            500 * MS + Duration::from_secs(1) + SKEW_MARGIN,
            "the moved departure counts from when it left"
        );
    }

    #[test]
    fn the_limiter_reads_the_clock_it_is_given() {
        let clock = Arc::new(crate::dispatch::clock::ManualClock::new(
            "2026-12-01T00:00:00Z".parse().unwrap(),
        ));
        let limiter = Limiter::new(1, Duration::from_secs(1), clock.clone());
        assert_eq!(limiter.reserve(), Duration::ZERO);
        assert_eq!(limiter.wait(), Duration::from_secs(1) + SKEW_MARGIN);
        clock.advance(Duration::from_secs(1));
        assert_eq!(limiter.wait(), SKEW_MARGIN);
        limiter.pause_for(Duration::from_secs(3));
        assert_eq!(limiter.paused_for(), Some(Duration::from_secs(3)));
        assert_eq!(limiter.wait(), Duration::from_secs(3));
    }
}
