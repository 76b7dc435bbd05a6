//! What the dispatcher's loop and its sending tasks share. The behaviour lives beside it,
//! one file per job: [`super::settle`] (send, reconcile, settle), [`super::pauses`]
//! (pauses taken and lifted), [`super::recovery`] (rows a crash left in flight).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::breaker::Breaker;
use super::clock::Clock;
use super::limiter::Limiter;
use crate::config::Config;
use crate::runtime::metrics::Metrics;
use crate::store::Store;
use crate::store::claim::SharedSlot;

/// The loop's state and seams, behind one `Arc` held by the loop and by every sending
/// task until its batch is settled.
pub struct Shared<S> {
    pub store: Store,
    pub config: Arc<Config>,
    pub limiter: Limiter,
    pub sender: S,
    /// Woken by new rows (committer, intake) and by finished requests; the loop waits on it.
    pub wake: Arc<Notify>,
    pub paused: Mutex<Paused>,
    /// Open while HubSpot cannot be reached: single probes instead of batches.
    pub breaker: Mutex<Breaker>,
    /// What is known of each object type's trace property.
    pub trace: Mutex<TraceStates>,
    /// Requests counted today, cached from the database: (day, count).
    pub daily: Mutex<(String, u64)>,
    /// Counted here, rendered by the socket API's `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Every reading of time, so tests can move it by hand.
    pub clock: Arc<dyn Clock>,
    /// A number in `[0, 1)` that spreads retries (random in the daemon, fixed in tests).
    pub jitter: fn() -> f64,
}

impl<S> Shared<S> {
    /// One more request counted against `day` in the cache (the database counts it in
    /// the same step that claims a batch or sends a properties call).
    pub fn counted(&self, day: &str) {
        let mut daily = self.daily.lock().expect("lock");
        if daily.0 == day {
            daily.1 += 1;
        } else {
            // Another day: the next check reads the database's count.
            *daily = (String::new(), 0);
        }
    }
}

/// When a claimed batch may leave: the limiter's reservation, and where daemons share
/// the budget, its slot there.
#[derive(Debug, Clone, Copy)]
pub struct Departure {
    pub slot: Duration,
    pub shared_slot: Option<SharedSlot>,
}

/// Pauses this process keeps in memory; the `pauses` table mirrors them for operators.
#[derive(Debug, Default)]
pub struct Paused {
    /// The kind of the pause recorded for scope `all`, to clear it once sending works.
    pub recorded_all: Option<&'static str>,
    /// 401: next time a single probe request may go.
    pub unauthorized: Option<DateTime<Utc>>,
    /// 403 per object type: next probe time.
    pub forbidden: HashMap<String, DateTime<Utc>>,
    /// The daily limit is used up until then.
    pub daily_until: Option<DateTime<Utc>>,
}

/// What is known of one object type's trace property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TraceState {
    /// It exists with unique values: creates carry it.
    Ready(String),
    /// It cannot be had: creates go without it until this time, when it is checked again
    /// (a scope granted or a unique property freed meanwhile is found then).
    Unavailable(DateTime<Utc>),
    /// Not known yet: ask again at this time.
    RetryAt(DateTime<Utc>),
}

/// Per object type, what the daemon found.
pub type TraceStates = HashMap<String, TraceState>;
