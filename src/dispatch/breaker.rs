//! The circuit breaker: when HubSpot cannot be reached (no connection, no answer, a 5xx)
//! for several requests in a row, stop claiming batches and send one single-write probe
//! at growing intervals until HubSpot answers. The writes waiting meanwhile stay
//! `pending` and are charged nothing, so an outage costs a few probes a minute; a probe is
//! a real one-write create, and a 5xx or timeout to it counts that write's attempt under
//! the usual ambiguity rules. Pure: the dispatcher reports each request's reach and asks
//! when to send.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The first wait between probes; it doubles up to the configured maximum.
pub const FIRST_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What became of a request, as far as reaching HubSpot goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// HubSpot answered (whatever it said, short of a 5xx).
    Answered,
    /// No connection, no answer, or a 5xx: this error.
    Failed(String),
}

/// What a report changed, for the log and the `pauses` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    None,
    /// Sending stopped: HubSpot has been unreachable since then.
    Opened {
        since: DateTime<Utc>,
        error: String,
    },
    /// Still unreachable: a probe failed with this error.
    StillOpen {
        since: DateTime<Utc>,
        error: String,
    },
    /// HubSpot answered: sending resumes.
    Closed {
        since: DateTime<Utc>,
    },
}

#[derive(Debug, Clone)]
struct Open {
    since: DateTime<Utc>,
    next_probe: DateTime<Utc>,
    interval: Duration,
    /// A probe is out; no other goes until it is answered.
    probing: bool,
}

#[derive(Debug, Clone)]
pub struct Breaker {
    threshold: u32,
    max_interval: Duration,
    consecutive: u32,
    open: Option<Open>,
}

fn after(t: DateTime<Utc>, d: Duration) -> DateTime<Utc> {
    crate::model::later(t, d)
}

impl Breaker {
    pub fn new(threshold: u32, max_interval: Duration) -> Self {
        Self {
            threshold: threshold.max(1),
            max_interval: max_interval.max(FIRST_PROBE_INTERVAL.min(max_interval)),
            consecutive: 0,
            open: None,
        }
    }

    /// Records what became of a request; `probe` when it was the breaker's probe. While
    /// open, only the probe's failure moves the next probe (requests that were already in
    /// flight when it opened fail too, and say nothing new).
    pub fn report(&mut self, reach: Reach, probe: bool, now: DateTime<Utc>) -> Change {
        match reach {
            Reach::Answered => {
                self.consecutive = 0;
                match self.open.take() {
                    Some(open) => Change::Closed { since: open.since },
                    None => Change::None,
                }
            }
            Reach::Failed(error) => {
                self.consecutive = self.consecutive.saturating_add(1);
                if let Some(open) = &mut self.open {
                    if !probe {
                        return Change::None;
                    }
                    open.interval = (open.interval * 2).min(self.max_interval);
                    open.next_probe = after(now, open.interval);
                    open.probing = false;
                    return Change::StillOpen {
                        since: open.since,
                        error,
                    };
                }
                if self.consecutive < self.threshold {
                    return Change::None;
                }
                let interval = FIRST_PROBE_INTERVAL.min(self.max_interval);
                self.open = Some(Open {
                    since: now,
                    next_probe: after(now, interval),
                    interval,
                    probing: false,
                });
                Change::Opened { since: now, error }
            }
        }
    }

    /// While open: how long until the next probe may go (a probe out counts as not yet).
    /// `None` when sending is not held.
    pub fn wait(&self, now: DateTime<Utc>) -> Option<Duration> {
        let open = self.open.as_ref()?;
        if open.probing {
            return Some(open.interval);
        }
        (open.next_probe > now).then(|| (open.next_probe - now).to_std().unwrap_or_default())
    }

    /// Whether the next request must be a probe (the breaker is open and one is due).
    pub fn probe_due(&self, now: DateTime<Utc>) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| !o.probing && o.next_probe <= now)
    }

    /// A probe left: no other goes until it is answered.
    pub fn probe_sent(&mut self) {
        if let Some(open) = &mut self.open {
            open.probing = true;
        }
    }

    /// The probe never left (it went back to the queue unsent): another may go.
    pub fn probe_returned(&mut self) {
        if let Some(open) = &mut self.open {
            open.probing = false;
        }
    }

    /// Since when HubSpot has been unreachable, if it is.
    pub fn open_since(&self) -> Option<DateTime<Utc>> {
        self.open.as_ref().map(|o| o.since)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: f64) -> DateTime<Utc> {
        "2026-12-04T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
            + chrono::Duration::milliseconds((s * 1000.0) as i64)
    }

    fn failed() -> Reach {
        Reach::Failed("could not connect".into())
    }

    #[test]
    fn opens_after_the_threshold_of_failures_in_a_row_and_an_answer_resets_the_count() {
        let mut b = Breaker::new(3, Duration::from_secs(60));
        assert_eq!(b.report(failed(), false, t(0.0)), Change::None);
        assert_eq!(b.report(failed(), false, t(0.1)), Change::None);
        assert_eq!(b.report(Reach::Answered, false, t(0.2)), Change::None);
        assert_eq!(b.report(failed(), false, t(0.3)), Change::None);
        assert_eq!(b.report(failed(), false, t(0.4)), Change::None);
        assert_eq!(b.wait(t(0.4)), None);
        assert!(matches!(
            b.report(failed(), false, t(0.5)),
            Change::Opened { .. }
        ));
        assert_eq!(b.open_since(), Some(t(0.5)));
        assert_eq!(b.wait(t(0.5)), Some(Duration::from_secs(1)));
    }

    #[test]
    fn probes_go_one_at_a_time_at_doubling_intervals_up_to_the_maximum() {
        let mut b = Breaker::new(1, Duration::from_secs(5));
        b.report(failed(), false, t(0.0));
        let mut now = 0.0;
        let mut gaps = Vec::new();
        for _ in 0..6 {
            let wait = b.wait(t(now)).unwrap();
            gaps.push(wait.as_secs());
            now += wait.as_secs_f64();
            assert!(b.probe_due(t(now)));
            b.probe_sent();
            assert!(!b.probe_due(t(now + 100.0)), "one probe out at a time");
            assert_eq!(
                b.report(failed(), false, t(now)),
                Change::None,
                "a request that was in flight before says nothing new"
            );
            assert!(matches!(
                b.report(failed(), true, t(now)),
                Change::StillOpen { .. }
            ));
        }
        assert_eq!(gaps, [1, 2, 4, 5, 5, 5]);
        assert_eq!(
            b.report(Reach::Answered, false, t(now)),
            Change::Closed { since: t(0.0) }
        );
        assert_eq!(b.wait(t(now)), None);
        assert!(!b.probe_due(t(now)));
    }
}
