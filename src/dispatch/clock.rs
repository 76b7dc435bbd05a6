//! Time as the dispatcher sees it, behind a seam: the daemon reads the system clock, the
//! dispatcher's unit tests a [`ManualClock`] they move by hand, so a test of "nothing is
//! sent before the pause ends" advances time instead of sleeping through it.
//!
//! Two readings, because they answer different questions: [`Clock::now`] is wall time,
//! stored in rows and compared with their `next_attempt_at`; [`Clock::elapsed`] is
//! monotonic, for the rate limiter and its pauses, which must not jump when the wall clock
//! is stepped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// A wait on a [`Clock`].
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync + 'static {
    /// Wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Monotonic time since the clock was made.
    fn elapsed(&self) -> Duration;
    /// Waits until [`Clock::elapsed`] reads at least `at`.
    fn sleep_until(&self, at: Duration) -> Sleep<'_>;
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

    fn sleep_until(&self, at: Duration) -> Sleep<'_> {
        let deadline = tokio::time::Instant::from_std(self.start + at);
        Box::pin(tokio::time::sleep_until(deadline))
    }
}

/// A clock that moves only when told to: both readings advance together, and sleepers
/// wake when an advance reaches their time.
#[derive(Debug)]
pub struct ManualClock {
    state: Mutex<(DateTime<Utc>, Duration)>,
    /// When set, a sleep moves the clock to its end at once (for tests of a sequence of
    /// waits whose lengths do not matter, such as the trace property's calls).
    auto_advance: std::sync::atomic::AtomicBool,
    /// The monotonic reading, watched by sleepers.
    elapsed: watch::Sender<Duration>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            state: Mutex::new((start, Duration::ZERO)),
            auto_advance: std::sync::atomic::AtomicBool::new(false),
            elapsed: watch::Sender::new(Duration::ZERO),
        }
    }

    /// From now on, every sleep ends at once, moving the clock to its end.
    pub fn auto_advance(&self) {
        self.auto_advance
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn advance(&self, by: Duration) {
        let mut state = self.state.lock().expect("lock");
        state.0 += chrono::Duration::from_std(by).expect("a test advances by a sane amount");
        state.1 += by;
        self.elapsed.send_replace(state.1);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.state.lock().expect("lock").0
    }

    fn elapsed(&self) -> Duration {
        self.state.lock().expect("lock").1
    }

    fn sleep_until(&self, at: Duration) -> Sleep<'_> {
        let now = self.elapsed();
        if at > now && self.auto_advance.load(std::sync::atomic::Ordering::SeqCst) {
            self.advance(at - now);
        }
        let mut elapsed = self.elapsed.subscribe();
        Box::pin(async move {
            // The sender lives as long as the clock, which outlives this borrow.
            let _ = elapsed.wait_for(|e| *e >= at).await;
        })
    }
}
