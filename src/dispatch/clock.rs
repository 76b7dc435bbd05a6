//! Time as the dispatcher sees it, behind a seam: the daemon reads the system clock, the
//! dispatcher's unit tests a [`ManualClock`] they move by hand, so a test of "nothing is
//! sent before the pause ends" advances time instead of sleeping through it.
//!
//! Two readings, because they answer different questions: [`Clock::now`] is wall time,
//! stored in rows and compared with their `next_attempt_at`; [`Clock::elapsed`] is
//! monotonic, for the rate limiter and its pauses, which must not jump when the wall clock
//! is stepped.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time since the clock was made.
    fn elapsed(&self) -> Duration;
}

/// The host's clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl Default for SystemClock {
    fn default() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }

    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
}

/// A clock that moves only when told to: both readings advance together.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(DateTime<Utc>, Duration)>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            state: Mutex::new((start, Duration::ZERO)),
        }
    }

    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().expect("lock");
        state.0 += chrono::Duration::from_std(by).expect("a test advances by a sane amount");
        state.1 += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().expect("lock").0
    }

    fn elapsed(&self) -> Duration {
        self.state.lock().expect("lock").1
    }
}
