//! The overview page: is the queue healthy? Writes by object type and state, the oldest
//! pending write's age, what was sent lately (with charts per minute and per hour), the rate limit's use now and today, pauses
//! and their reasons, how full the queue is, and each type's trace property. It renders
//! what `GET /v1/status` answers (`operator::status::status_value`), so the page and the
//! API never disagree; a figure missing from that answer shows as "unknown".

use maud::{Markup, html};
use serde_json::Value;

use super::chart::{self, Bar};

/// The states in the order a write goes through them, as the table's columns.
pub const STATES: [&str; 7] = [
    "pending",
    "waiting",
    "in_flight",
    "succeeded",
    "failed",
    "unconfirmed",
    "discarded",
];

/// States an operator must look at when they hold any write.
const NEEDS_ATTENTION: [&str; 2] = ["failed", "unconfirmed"];

/// The overview's content (the part the script refreshes), from a status answer and the
/// writes sent per minute over the last hour and per hour over the last day.
pub fn overview(status: &Value, minutes: &[Bar], hours: &[Bar]) -> Markup {
    html! {
        (writes_table(status))
        section aria-labelledby="sent" {
            h2 id="sent" { "Sent to HubSpot" }
            (chart::bars("per-minute", "Writes sent per minute, last hour", minutes, chart::minute_label))
            (chart::bars("per-hour", "Writes sent per hour, last day", hours, chart::hour_label))
        }
        section aria-labelledby="queue" {
            h2 id="queue" { "Queue" }
            dl {
                dt { "Queued (unfinished)" }
                dd { (queue_fill(&status["queue"])) }
                dt { "Oldest pending write" }
                dd { (age(status["oldestPendingAgeSeconds"].as_f64())) }
                dt { "Sent in the last minute" }
                dd { (sent(&status["sent"]["lastMinute"])) }
                dt { "Sent in the last hour" }
                dd { (sent(&status["sent"]["lastHour"])) }
            }
        }
        section aria-labelledby="rate" {
            h2 id="rate" { "HubSpot's rate limit" }
            (rate(&status["rateLimit"]))
        }
        section aria-labelledby="paused" {
            h2 id="paused" { "Sending" }
            (pauses(&status["paused"]))
        }
        section aria-labelledby="trace" {
            h2 id="trace" { "Trace property by object type" }
            (trace(&status["traceProperty"]))
        }
    }
}

/// Writes by object type (rows) and state (columns), with totals.
fn writes_table(status: &Value) -> Markup {
    let rows = status["writes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let mut types: Vec<&str> = rows
        .iter()
        .filter_map(|r| r["objectType"].as_str())
        .collect();
    types.sort_unstable();
    types.dedup();
    let count = |object_type: Option<&str>, state: &str| -> i64 {
        rows.iter()
            .filter(|r| object_type.is_none_or(|t| r["objectType"] == t) && r["state"] == state)
            .filter_map(|r| r["writes"].as_i64())
            .sum()
    };
    html! {
        section aria-labelledby="writes" {
            h2 id="writes" { "Writes" }
            @if types.is_empty() {
                p { "The outbox holds no writes." }
            } @else {
                div class="wide" {
                    table {
                        caption { "Writes by object type and state" }
                        thead {
                            tr {
                                th scope="col" { "object type" }
                                @for state in STATES { th scope="col" { (state) } }
                            }
                        }
                        tbody {
                            @for t in &types {
                                tr {
                                    th scope="row" { (t) }
                                    @for state in STATES { (cell(count(Some(t), state), state)) }
                                }
                            }
                        }
                        tfoot {
                            tr {
                                th scope="row" { "all types" }
                                @for state in STATES { (cell(count(None, state), state)) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// One count; failed and unconfirmed writes are marked (in words, not only in colour).
fn cell(n: i64, state: &str) -> Markup {
    let attention = n > 0 && NEEDS_ATTENTION.contains(&state);
    html! {
        td class=(if attention { "n attention" } else { "n" }) {
            (n)
            @if attention { span class="visually-hidden" { " (needs attention)" } }
        }
    }
}

fn queue_fill(queue: &Value) -> Markup {
    let queued = queue["queued"].as_i64();
    let cap = queue["maxQueued"].as_i64().unwrap_or(0);
    html! {
        @match queued {
            None => "unknown",
            Some(n) if cap > 0 => {
                (n) " of " (cap) " allowed (" (n * 100 / cap.max(1)) "%)"
            }
            Some(n) => { (n) " (no cap: queue.max_queued = 0)" }
        }
        @if let Some(reason) = queue["full"].as_str() {
            " " span class="attention" { "Full: new writes are refused: " (reason) }
        }
    }
}

/// A duration in seconds in words: `42 s`, `3 min 20 s`, `2 h 5 min`, `3 d 4 h`.
pub fn age(seconds: Option<f64>) -> String {
    let Some(s) = seconds else {
        return "none pending".into();
    };
    let s = s.max(0.0) as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3_600 => format!("{} min {} s", s / 60, s % 60),
        3_600..86_400 => format!("{} h {} min", s / 3_600, s % 3_600 / 60),
        _ => format!("{} d {} h", s / 86_400, s % 86_400 / 3_600),
    }
}

fn sent(window: &Value) -> Markup {
    match (window["requests"].as_i64(), window["writes"].as_i64()) {
        (Some(requests), Some(writes)) => {
            html! { (writes) " writes in " (requests) " requests" }
        }
        _ => html! { "unknown" },
    }
}

fn rate(limit: &Value) -> Markup {
    let now = limit["requestsInInterval"].as_i64();
    let per = limit["requestsPerInterval"].as_i64();
    let seconds = limit["intervalSeconds"].as_f64();
    let today = limit["today"].as_i64();
    let daily = limit["dailyLimit"].as_i64();
    html! {
        dl {
            dt { "Now" }
            dd {
                @match (now, per, seconds) {
                    (Some(n), Some(p), Some(s)) => { (n) " of " (p) " requests in the last " (s) " s" }
                    _ => "unknown",
                }
            }
            dt { "Today" }
            dd {
                @match (today, daily) {
                    (Some(t), Some(d)) => {
                        (t) " of " (d) " requests ("
                        (limit["day"].as_str().unwrap_or("?")) ", "
                        (limit["timezone"].as_str().unwrap_or("?")) ")"
                    }
                    _ => "unknown",
                }
            }
        }
    }
}

fn pauses(paused: &Value) -> Markup {
    let list = paused.as_array().map(Vec::as_slice).unwrap_or(&[]);
    html! {
        @if list.is_empty() {
            p { "Not paused." }
        } @else {
            table {
                caption { "Pauses in force" }
                thead { tr { th scope="col" { "scope" } th scope="col" { "why" } th scope="col" { "reason" } th scope="col" { "until" } } }
                tbody {
                    @for p in list {
                        tr {
                            td { (p["scope"].as_str().unwrap_or("?")) }
                            td class="attention" { (p["kind"].as_str().unwrap_or("?")) }
                            td { (p["reason"].as_str().unwrap_or("")) }
                            td { (p["until"].as_str().unwrap_or("until it works again")) }
                        }
                    }
                }
            }
        }
    }
}

fn trace(states: &Value) -> Markup {
    let list = states.as_array().map(Vec::as_slice).unwrap_or(&[]);
    html! {
        @if list.is_empty() {
            p { "No object type checked yet." }
        } @else {
            table {
                caption { "Each type's trace property (how a write is found again in HubSpot)" }
                thead { tr { th scope="col" { "object type" } th scope="col" { "property" } th scope="col" { "state" } th scope="col" { "why" } } }
                tbody {
                    @for t in list {
                        tr {
                            td { (t["objectType"].as_str().unwrap_or("?")) }
                            td { code { (t["property"].as_str().unwrap_or("?")) } }
                            td { (t["state"].as_str().unwrap_or("?")) }
                            td { (t["reason"].as_str().unwrap_or("")) }
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_value_is_escaped_and_counts_add_up() {
        let status = json!({
            "writes": [
                {"objectType": "contacts", "state": "pending", "writes": 3},
                {"objectType": "contacts", "state": "failed", "writes": 2},
                {"objectType": "<script>alert(1)</script>", "state": "succeeded", "writes": 1},
            ],
            "queue": {"queued": 3, "maxQueued": 10, "full": null},
            "oldestPendingAgeSeconds": 200.0,
            "sent": {"lastMinute": {"requests": 1, "writes": 3}, "lastHour": {"requests": 2, "writes": 4}},
            "rateLimit": {"requestsInInterval": 1, "requestsPerInterval": 100, "intervalSeconds": 10.0,
                          "today": 2, "dailyLimit": 250000, "day": "2026-12-04", "timezone": "UTC"},
            "paused": [{"scope": "all", "kind": "unauthorized", "reason": "<b>token</b> refused", "until": null}],
            "traceProperty": [],
        });
        let html = overview(&status, &[], &[]).into_string();
        assert!(
            !html.contains("<script>") && !html.contains("<b>token"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("3 of 10 allowed (30%)"));
        assert!(html.contains("3 min 20 s"));
        assert!(
            html.contains("(needs attention)"),
            "failed writes are marked in words"
        );
        assert!(html.contains("3 writes in 1 requests"));
    }

    #[test]
    fn ages_read_as_words() {
        assert_eq!(age(None), "none pending");
        assert_eq!(age(Some(42.4)), "42 s");
        assert_eq!(age(Some(7_500.0)), "2 h 5 min");
        assert_eq!(age(Some(3.0 * 86_400.0 + 4.0 * 3_600.0)), "3 d 4 h");
    }
}
