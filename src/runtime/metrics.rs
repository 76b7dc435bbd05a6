//! Counters the dispatcher keeps in memory for `GET /metrics`, and the Prometheus text
//! rendering. Gauges read from the database at scrape time (queue depth, oldest pending
//! write) are passed in by the caller.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Upper bounds of the request latency histogram, in seconds.
const BUCKETS: [f64; 10] = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

#[derive(Default)]
struct Inner {
    /// Requests by HTTP status (0: no answer).
    requests: BTreeMap<u16, u64>,
    /// 429s by policy name.
    rate_limited: BTreeMap<String, u64>,
    /// Writes settled, by (object type, outcome: succeeded/failed).
    writes: BTreeMap<(String, &'static str), u64>,
    latency_buckets: [u64; BUCKETS.len()],
    latency_count: u64,
    latency_sum: f64,
    /// The last `X-HubSpot-RateLimit-Remaining` seen.
    rate_limit_remaining: Option<u32>,
    /// Socket connections open now.
    connections: i64,
    /// Socket connections the daemon closed or refused, by reason.
    connections_closed: BTreeMap<&'static str, u64>,
}

/// Shared by the dispatcher (which counts) and the socket API (which renders).
#[derive(Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// Values read from the database when scraped.
pub struct Gauges {
    /// (object type, state, writes)
    pub depth: Vec<(String, String, i64)>,
    pub oldest_pending_seconds: Option<f64>,
    pub paused: bool,
    /// Whether requests in a row have found HubSpot unreachable (probes only).
    pub unreachable: bool,
    /// (object type, whether its trace property is ready) for every type checked.
    pub trace_ready: Vec<(String, bool)>,
    /// Writes not yet finished, the cap (0: none), and whether new writes are refused.
    pub queued: i64,
    pub max_queued: i64,
    pub queue_full: bool,
}

impl Metrics {
    pub fn request(&self, status: u16, latency: Duration, remaining: Option<u32>) {
        let mut m = self.inner.lock().expect("lock");
        *m.requests.entry(status).or_default() += 1;
        let secs = latency.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                m.latency_buckets[i] += 1;
            }
        }
        m.latency_count += 1;
        m.latency_sum += secs;
        if remaining.is_some() {
            m.rate_limit_remaining = remaining;
        }
    }

    pub fn rate_limited(&self, policy: &str) {
        *self
            .inner
            .lock()
            .expect("lock")
            .rate_limited
            .entry(policy.to_owned())
            .or_default() += 1;
    }

    pub fn writes(&self, object_type: &str, succeeded: u64, failed: u64) {
        let mut m = self.inner.lock().expect("lock");
        *m.writes
            .entry((object_type.to_owned(), "succeeded"))
            .or_default() += succeeded;
        *m.writes
            .entry((object_type.to_owned(), "failed"))
            .or_default() += failed;
    }

    /// A socket connection was accepted (`+1`) or ended (`-1`).
    pub fn connections(&self, delta: i64) {
        self.inner.lock().expect("lock").connections += delta;
    }

    /// The daemon closed a socket connection, or refused one, for `reason`.
    pub fn connection_closed(&self, reason: &'static str) {
        *self
            .inner
            .lock()
            .expect("lock")
            .connections_closed
            .entry(reason)
            .or_default() += 1;
    }

    /// The Prometheus text exposition of everything.
    pub fn render(&self, gauges: &Gauges) -> String {
        let m = self.inner.lock().expect("lock");
        let mut out = String::new();
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        };
        head(
            &mut out,
            "hubspot_outbox_queue_writes",
            "gauge",
            "Writes in the outbox by object type and state.",
        );
        for (t, s, n) in &gauges.depth {
            let _ = writeln!(
                out,
                "hubspot_outbox_queue_writes{{object_type=\"{}\",state=\"{}\"}} {n}",
                esc(t),
                esc(s)
            );
        }
        head(
            &mut out,
            "hubspot_outbox_oldest_pending_seconds",
            "gauge",
            "Age of the oldest pending write.",
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_oldest_pending_seconds {}",
            gauges.oldest_pending_seconds.unwrap_or(0.0)
        );
        head(
            &mut out,
            "hubspot_outbox_requests_total",
            "counter",
            "Batch-create requests by HTTP status (0: no answer).",
        );
        for (status, n) in &m.requests {
            let _ = writeln!(
                out,
                "hubspot_outbox_requests_total{{status=\"{status}\"}} {n}"
            );
        }
        head(
            &mut out,
            "hubspot_outbox_writes_total",
            "counter",
            "Writes settled by object type and outcome.",
        );
        for ((t, outcome), n) in &m.writes {
            let _ = writeln!(
                out,
                "hubspot_outbox_writes_total{{object_type=\"{}\",outcome=\"{outcome}\"}} {n}",
                esc(t)
            );
        }
        head(
            &mut out,
            "hubspot_outbox_rate_limited_total",
            "counter",
            "429 answers by HubSpot's policy name.",
        );
        for (policy, n) in &m.rate_limited {
            let _ = writeln!(
                out,
                "hubspot_outbox_rate_limited_total{{policy=\"{}\"}} {n}",
                esc(policy)
            );
        }
        head(
            &mut out,
            "hubspot_outbox_request_duration_seconds",
            "histogram",
            "Batch-create request latency.",
        );
        for (bound, n) in BUCKETS.iter().zip(m.latency_buckets) {
            let _ = writeln!(
                out,
                "hubspot_outbox_request_duration_seconds_bucket{{le=\"{bound}\"}} {n}"
            );
        }
        let _ = writeln!(
            out,
            "hubspot_outbox_request_duration_seconds_bucket{{le=\"+Inf\"}} {}",
            m.latency_count
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_request_duration_seconds_sum {}",
            m.latency_sum
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_request_duration_seconds_count {}",
            m.latency_count
        );
        head(
            &mut out,
            "hubspot_outbox_rate_limit_remaining",
            "gauge",
            "The last X-HubSpot-RateLimit-Remaining seen (-1: none yet).",
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_rate_limit_remaining {}",
            m.rate_limit_remaining.map_or(-1, i64::from)
        );
        head(
            &mut out,
            "hubspot_outbox_paused",
            "gauge",
            "1 while any sending is paused (401, 403, 429, daily limit, HubSpot unreachable).",
        );
        let _ = writeln!(out, "hubspot_outbox_paused {}", u8::from(gauges.paused));
        head(
            &mut out,
            "hubspot_outbox_hubspot_unreachable",
            "gauge",
            "1 while HubSpot cannot be reached (no connection, no answer, 5xx) and only probes go.",
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_hubspot_unreachable {}",
            u8::from(gauges.unreachable)
        );
        head(
            &mut out,
            "hubspot_outbox_queue_queued",
            "gauge",
            "Writes not yet finished (pending, waiting or in flight), counted against queue.max_queued.",
        );
        let _ = writeln!(out, "hubspot_outbox_queue_queued {}", gauges.queued);
        head(
            &mut out,
            "hubspot_outbox_queue_max_queued",
            "gauge",
            "queue.max_queued (0: no cap).",
        );
        let _ = writeln!(out, "hubspot_outbox_queue_max_queued {}", gauges.max_queued);
        head(
            &mut out,
            "hubspot_outbox_queue_full",
            "gauge",
            "1 while new writes are refused (queue.max_queued reached, or queue.min_free_disk).",
        );
        let _ = writeln!(
            out,
            "hubspot_outbox_queue_full {}",
            u8::from(gauges.queue_full)
        );
        head(
            &mut out,
            "hubspot_outbox_socket_connections",
            "gauge",
            "Connections to the socket open now (at most socket.max_connections).",
        );
        let _ = writeln!(out, "hubspot_outbox_socket_connections {}", m.connections);
        head(
            &mut out,
            "hubspot_outbox_socket_connections_closed_total",
            "counter",
            "Socket connections the daemon closed or refused, by reason (idle, slow_headers, evicted, refused, shutdown).",
        );
        for (reason, n) in &m.connections_closed {
            let _ = writeln!(
                out,
                "hubspot_outbox_socket_connections_closed_total{{reason=\"{reason}\"}} {n}"
            );
        }
        head(
            &mut out,
            "hubspot_outbox_trace_property_ready",
            "gauge",
            "1 when the object type's creates carry the trace property; 0 when it could not be had (see status).",
        );
        for (object_type, ready) in &gauges.trace_ready {
            let _ = writeln!(
                out,
                "hubspot_outbox_trace_property_ready{{object_type=\"{}\"}} {}",
                esc(object_type),
                u8::from(*ready)
            );
        }
        out
    }
}

/// Escapes a label value.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.request(201, Duration::from_millis(300), Some(42));
        m.request(429, Duration::from_millis(20), None);
        m.rate_limited("TEN_SECONDLY_ROLLING");
        m.writes("contacts", 99, 1);
        let text = m.render(&Gauges {
            depth: vec![("contacts".into(), "pending".into(), 5)],
            oldest_pending_seconds: Some(1.5),
            paused: true,
            unreachable: false,
            trace_ready: vec![("deals".into(), false)],
            queued: 5,
            max_queued: 10,
            queue_full: false,
        });
        for line in [
            "hubspot_outbox_queue_writes{object_type=\"contacts\",state=\"pending\"} 5",
            "hubspot_outbox_requests_total{status=\"201\"} 1",
            "hubspot_outbox_rate_limited_total{policy=\"TEN_SECONDLY_ROLLING\"} 1",
            "hubspot_outbox_writes_total{object_type=\"contacts\",outcome=\"failed\"} 1",
            "hubspot_outbox_request_duration_seconds_bucket{le=\"0.25\"} 1",
            "hubspot_outbox_request_duration_seconds_bucket{le=\"0.5\"} 2",
            "hubspot_outbox_request_duration_seconds_count 2",
            "hubspot_outbox_rate_limit_remaining 42",
            "hubspot_outbox_paused 1",
            "hubspot_outbox_hubspot_unreachable 0",
            "hubspot_outbox_trace_property_ready{object_type=\"deals\"} 0",
            "hubspot_outbox_queue_queued 5",
            "hubspot_outbox_queue_full 0",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
    }
}
