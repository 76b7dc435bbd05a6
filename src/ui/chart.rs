//! The overview's charts: writes sent per minute over the last hour and per hour over the
//! last day, from the batch log, drawn as inline SVG (no script, no image request). The
//! same figures are in a table beside each chart, for screen readers and for reading
//! without colour.

use chrono::{DateTime, Duration, DurationRound, Utc};
use maud::{Markup, html};

use crate::store::ops::{Bucket, SentIn};

/// One bar: the bucket's start (UTC) and what was sent in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    pub start: DateTime<Utc>,
    pub requests: i64,
    pub writes: i64,
}

fn width(bucket: Bucket) -> Duration {
    match bucket {
        Bucket::Minute => Duration::minutes(1),
        Bucket::Hour => Duration::hours(1),
    }
}

/// The bucket's name as the store gives it: a stored time cut to its minute or hour.
fn key(t: DateTime<Utc>, bucket: Bucket) -> String {
    match bucket {
        Bucket::Minute => t.format("%Y-%m-%dT%H:%M").to_string(),
        Bucket::Hour => t.format("%Y-%m-%dT%H").to_string(),
    }
}

/// `count` buckets ending with the one that holds `now`, oldest first, zero where `rows`
/// (the store's buckets, which leave out the empty ones) has nothing.
pub fn fill(rows: &[SentIn], now: DateTime<Utc>, bucket: Bucket, count: usize) -> Vec<Bar> {
    let step = width(bucket);
    let last = now.duration_trunc(step).unwrap_or(now);
    (0..count)
        .map(|i| {
            let start = last - step * (count - 1 - i) as i32;
            let k = key(start, bucket);
            let row = rows.iter().find(|r| r.bucket == k);
            Bar {
                start,
                requests: row.map_or(0, |r| r.requests),
                writes: row.map_or(0, |r| r.writes),
            }
        })
        .collect()
}

/// The chart's drawing area, in SVG units.
const W: f64 = 600.0;
const H: f64 = 100.0;

/// A bar chart of `bars`' writes, titled `caption`, with its figures in a table.
pub fn bars(id: &str, caption: &str, bars: &[Bar], label: fn(DateTime<Utc>) -> String) -> Markup {
    let most = bars.iter().map(|b| b.writes).max().unwrap_or(0).max(1) as f64;
    let total: i64 = bars.iter().map(|b| b.writes).sum();
    let requests: i64 = bars.iter().map(|b| b.requests).sum();
    let slot = W / bars.len().max(1) as f64;
    let summary = format!(
        "{caption}: {total} writes in {requests} requests; at most {} in one bar",
        bars.iter().map(|b| b.writes).max().unwrap_or(0)
    );
    html! {
        figure aria-labelledby=(id) {
            figcaption id=(id) { (caption) ": " (total) " writes in " (requests) " requests" }
            svg class="chart" viewBox=(format!("0 0 {W} {}", H + 14.0)) role="img" aria-label=(summary) {
                line x1="0" y1=(H) x2=(W) y2=(H) stroke="currentColor" stroke-width="1" {}
                @for (i, b) in bars.iter().enumerate() {
                    @let h = b.writes as f64 / most * (H - 2.0);
                    @if b.writes > 0 {
                        rect x=(format!("{:.1}", i as f64 * slot + 1.0)) y=(format!("{:.1}", H - h))
                             width=(format!("{:.1}", (slot - 2.0).max(1.0))) height=(format!("{h:.1}"))
                             fill="currentColor" {
                            title { (label(b.start)) ": " (b.writes) " writes in " (b.requests) " requests" }
                        }
                    }
                }
                text x="0" y=(H + 12.0) font-size="10" fill="currentColor" { (bars.first().map(|b| label(b.start)).unwrap_or_default()) }
                text x=(W) y=(H + 12.0) font-size="10" fill="currentColor" text-anchor="end" { (bars.last().map(|b| label(b.start)).unwrap_or_default()) " UTC" }
            }
            details {
                summary { "Figures" }
                @if total == 0 {
                    p { "Nothing was sent." }
                } @else {
                    table {
                        thead { tr { th scope="col" { "from (UTC)" } th scope="col" { "writes" } th scope="col" { "requests" } } }
                        tbody {
                            @for b in bars.iter().filter(|b| b.requests > 0) {
                                tr { td { (label(b.start)) } td class="n" { (b.writes) } td class="n" { (b.requests) } }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `21:07`.
pub fn minute_label(t: DateTime<Utc>) -> String {
    t.format("%H:%M").to_string()
}

/// `12-04 21h`.
pub fn hour_label(t: DateTime<Utc>) -> String {
    t.format("%m-%d %Hh").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_filled_oldest_first_with_zeros_between() {
        let now: DateTime<Utc> = "2026-12-04T21:07:30Z".parse().unwrap();
        let rows = [
            SentIn {
                bucket: "2026-12-04T21:05".into(),
                requests: 2,
                writes: 150,
            },
            SentIn {
                bucket: "2026-12-04T21:07".into(),
                requests: 1,
                writes: 3,
            },
        ];
        let bars = fill(&rows, now, Bucket::Minute, 4);
        let writes: Vec<i64> = bars.iter().map(|b| b.writes).collect();
        assert_eq!(writes, [0, 150, 0, 3]);
        assert_eq!(minute_label(bars[0].start), "21:04");
        let hours = fill(
            &[SentIn {
                bucket: "2026-12-04T20".into(),
                requests: 4,
                writes: 9,
            }],
            now,
            Bucket::Hour,
            24,
        );
        assert_eq!(hours.len(), 24);
        assert_eq!(hours[22].writes, 9);
        assert_eq!(hour_label(hours[23].start), "12-04 21h");
    }

    #[test]
    fn the_chart_says_in_words_what_it_draws() {
        let now: DateTime<Utc> = "2026-12-04T21:07:30Z".parse().unwrap();
        let rows = [SentIn {
            bucket: "2026-12-04T21:06".into(),
            requests: 2,
            writes: 150,
        }];
        let html = bars(
            "m",
            "Sent per minute",
            &fill(&rows, now, Bucket::Minute, 60),
            minute_label,
        )
        .into_string();
        assert!(html.contains("150 writes in 2 requests"), "{html}");
        assert!(html.contains("<td>21:06</td>"), "{html}");
        assert_eq!(html.matches("<rect").count(), 1);
        assert!(
            !html.contains("style="),
            "inline styles would be refused by the page's CSP"
        );
    }
}
