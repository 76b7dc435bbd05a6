//! The rules a batch is reconciled under: what a conflict and an ambiguous answer mean for
//! an object type, the attempt budget, and the back-off schedule. The back-off is pure:
//! exponential from `initial` to `max`, with jitter drawn by the caller so the schedule
//! itself is deterministic and testable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The rules for one object type and the retry budget (built by `Config::policy`).
#[derive(Debug, Clone)]
pub struct Policy {
    pub unique_property: Option<String>,
    /// The trace property the batch was sent with (its value: each write's trace id).
    pub trace_property: Option<String>,
    pub on_conflict: OnConflict,
    pub on_ambiguous: OnAmbiguous,
    /// Transient failures give a write up only after at least this many attempts...
    pub max_attempts: u32,
    /// ...and this long since its first transient failure.
    pub give_up_after: Duration,
    pub backoff: Backoff,
}

/// What to do with a write HubSpot may or may not have created (after a timeout, a 5xx,
/// a crash while in flight). Config: `retry.on_ambiguous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnAmbiguous {
    /// Send it again: at least once, so duplicates are possible without a unique property.
    Resend,
    /// Park it as `unconfirmed` for an operator to release or fail.
    Hold,
}

/// What a 409 "already exists" for an identified write means. Config:
/// `objects.<type>.on_conflict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// The object exists: record its id and call the write succeeded.
    Adopt,
    /// Fail the write with HubSpot's message.
    Fail,
}

/// Exponential back-off with "equal jitter": the delay is half fixed, half random, so
/// retries of many rows spread out but never come back at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay after the `attempts`-th failed attempt (1 = the first failure).
    /// `jitter` is a number in `[0, 1)`; out-of-range values are clamped.
    pub fn delay(&self, attempts: u32, jitter: f64) -> Duration {
        let exponent = attempts.saturating_sub(1).min(32);
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(exponent))
            .min(self.max);
        let half = base / 2;
        half + half.mul_f64(jitter.clamp(0.0, 1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Backoff = Backoff {
        initial: Duration::from_secs(2),
        max: Duration::from_secs(600),
    };

    #[test]
    fn doubles_from_initial_and_stops_at_max() {
        let top: Vec<u64> = (1..=12).map(|n| B.delay(n, 1.0).as_secs()).collect();
        assert_eq!(top, [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600]);
    }

    #[test]
    fn jitter_spans_the_upper_half_and_is_clamped() {
        assert_eq!(B.delay(3, 0.0), Duration::from_secs(4));
        assert_eq!(B.delay(3, 0.5), Duration::from_secs(6));
        assert_eq!(B.delay(3, 7.0), Duration::from_secs(8));
        assert_eq!(B.delay(3, -1.0), Duration::from_secs(4));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        assert_eq!(B.delay(u32::MAX, 1.0), Duration::from_secs(600));
        assert_eq!(B.delay(0, 1.0), Duration::from_secs(2));
    }
}
