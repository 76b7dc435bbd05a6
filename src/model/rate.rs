//! HubSpot's burst rule as one pure decision, shared by the daemon's own limiter
//! (`dispatch::limiter`) and by the rate budget several daemons share in PostgreSQL
//! (`store::postgres`): at most `n` requests in any rolling `interval`, each departure
//! holding its slot [`SKEW_MARGIN`] past its window for the spread of network time, and
//! departures at least `interval / 2n` apart so a free window is not taken in one burst.

use std::time::Duration;

/// How much later than the window's end a slot frees, for the spread of network time
/// between the daemon and HubSpot.
pub const SKEW_MARGIN: Duration = Duration::from_millis(50);

/// `n` requests per `interval`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub n: u32,
    pub interval: Duration,
}

impl Rule {
    /// How long one departure occupies a slot.
    pub fn span(self) -> Duration {
        self.interval + SKEW_MARGIN
    }

    /// The least time between two departures.
    pub fn gap(self) -> Duration {
        self.interval / (2 * self.n.max(1))
    }

    /// The earliest moment, at or after `now`, the next request may leave, given the
    /// departures so far (`sorted`, oldest first; only the last `n` matter) and a pause:
    /// after the pause, one gap after the last departure, one span after the `n`-th
    /// latest.
    pub fn next_departure(
        self,
        sorted: &[Duration],
        paused_until: Option<Duration>,
        now: Duration,
    ) -> Duration {
        let mut at = now;
        if let Some(paused) = paused_until {
            at = at.max(paused);
        }
        if let Some(last) = sorted.last() {
            at = at.max(*last + self.gap());
        }
        let n = self.n.max(1) as usize;
        if sorted.len() >= n {
            at = at.max(sorted[sorted.len() - n] + self.span());
        }
        at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_n_th_latest_departure_holds_the_next_one_for_a_span() {
        let rule = Rule {
            n: 2,
            interval: Duration::from_secs(1),
        };
        let s = Duration::from_secs;
        assert_eq!(rule.next_departure(&[], None, s(5)), s(5));
        // One gap (a quarter second) after the last.
        assert_eq!(
            rule.next_departure(&[s(5)], None, s(5)),
            s(5) + Duration::from_millis(250)
        );
        // Two in the window: the older one's span.
        assert_eq!(
            rule.next_departure(&[s(5), s(5) + Duration::from_millis(250)], None, s(5)),
            s(6) + SKEW_MARGIN
        );
        assert_eq!(rule.next_departure(&[], Some(s(9)), s(5)), s(9));
    }
}
