//! What the dispatcher's loop and its sending tasks share. The behaviour lives beside it,
//! one file per job: [`super::settle`] (send, reconcile, settle), [`super::pauses`]
//! (pauses taken and lifted), [`super::recovery`] (rows a crash left in flight).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

use super::breaker::Breaker;
use super::clock::Clock;
use super::limiter::Limiter;
use super::trace::TraceStates;
use crate::config::Config;
use crate::runtime::metrics::Metrics;
use crate::store::Store;

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
    /// Counted here, rendered by the socket API's `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Every reading of time, so tests can move it by hand.
    pub clock: Arc<dyn Clock>,
    /// A number in `[0, 1)` that spreads retries (random in the daemon, fixed in tests).
    pub jitter: fn() -> f64,
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
