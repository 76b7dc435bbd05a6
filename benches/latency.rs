//! Latency, memory and start-up benchmark (issue 9; run on demand, not in CI):
//! `cargo bench --bench latency`.
//!
//! 1. **Enqueue -> HubSpot latency under light load.** The release daemon (default
//!    `batching.linger` 200 ms, `database.poll_interval` 250 ms) against the simulator in
//!    this process (50 ms per request, limit far away). One write every 50 ms, 200 over
//!    the socket (each its own request), then 200 by SQL `INSERT`. Latency of a write: from
//!    just before the producer sent it to the moment its row was marked `succeeded`
//!    (HubSpot's answer read and recorded; the row's `updated_at`). The baseline, in the
//!    same run: the simulator's own round trip for one create of one input, sent directly.
//!    Target (socket): p50 <= linger + simulated latency + 20 ms.
//! 2. **Resident memory with writes queued.** A fresh daemon whose HubSpot allows 10
//!    requests per 10 s, so the backlog stays queued while it is sent: RSS with 10,000
//!    writes queued, then with 1,000,000 (`BENCH_QUEUED`). Target: RSS(1M) <= 1.5 x
//!    RSS(10k) and under 100 MB.
//! 3. **Start with a backlog.** SIGTERM, start again against a simulator allowing 100
//!    requests per 10 s (HubSpot's lowest tier; at 10 per 10 s the limiter's least gap
//!    between two requests, `interval / 2n`, is 500 ms, and the trace-property check
//!    before the first create takes one of them): time from the process's start to the
//!    first batch create reaching the simulator, with the 1,000,000 writes queued.
//!    Target: within 1 s.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use hubspot_outbox::operator::client::SocketClient;
use hubspot_outbox::simulator::{SimFaults, SimOptions};
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use tokio_util::sync::CancellationToken;

const SIM_LATENCY: Duration = Duration::from_millis(50);
const LINGER_MS: f64 = 200.0;

fn queued_target() -> usize {
    std::env::var("BENCH_QUEUED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// The simulator with `limit` per `interval` and 50 ms per request; returns its URL.
async fn simulator(limit: u32, interval: Duration, stop: &CancellationToken) -> String {
    let options = SimOptions {
        requests_per_interval: limit,
        interval,
        daily_limit: 0,
        faults: SimFaults {
            latency: SIM_LATENCY,
            ..Default::default()
        },
        ..Default::default()
    };
    common::simulator(options, stop).await
}

/// The release daemon on `dir`, sending to `url` under `limit` per `interval`.
fn daemon(dir: &Path, url: &str, limit: u32, interval: Duration) -> Child {
    common::daemon_command(dir)
        .env("HUBSPOT_ACCESS_TOKEN", "sim-token")
        .env("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", url)
        .env(
            "HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL",
            limit.to_string(),
        )
        .env(
            "HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL",
            format!("{}ms", interval.as_millis()),
        )
        .env("HUBSPOT_OUTBOX__RATE_LIMIT__DAILY_LIMIT", "0")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap())
        .spawn()
        .unwrap()
}

async fn ready(dir: &Path) -> SocketClient {
    common::ready(&dir.join("outbox.sock"))
        .await
        .expect("the daemon answers")
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn contact(i: usize, prefix: &str) -> Value {
    json!({"objectType": "contacts", "properties": {"email": format!("{prefix}{i}@example.com"), "firstname": format!("First{i}")}, "objectWriteTraceId": format!("{prefix}{i}")})
}

async fn pool(db: &Path) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect_with(
            SqliteConnectOptions::new()
                .filename(db)
                .busy_timeout(Duration::from_secs(5)),
        )
        .await
        .unwrap()
}

/// Milliseconds from each sent time to the row's `succeeded` time, sorted.
async fn latencies(db: &sqlx::SqlitePool, sent: &[(String, i64)]) -> Vec<f64> {
    loop {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM outbox WHERE state = 'succeeded' AND trace_id LIKE ?",
        )
        .bind(format!("{}%", &sent[0].0[..4]))
        .fetch_one(db)
        .await
        .unwrap();
        if done as usize == sent.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut out = Vec::new();
    for (trace, at) in sent {
        let updated: String =
            sqlx::query_scalar("SELECT updated_at FROM outbox WHERE trace_id = ?")
                .bind(trace)
                .fetch_one(db)
                .await
                .unwrap();
        let done: DateTime<Utc> = updated.parse().unwrap();
        out.push((done.timestamp_millis() - at) as f64);
    }
    out.sort_by(f64::total_cmp);
    out
}

async fn light_load(root: &Path) {
    let stop = CancellationToken::new();
    let url = simulator(1000, Duration::from_secs(1), &stop).await;
    let dir = tempfile::tempdir_in(root).unwrap();
    let mut child = daemon(dir.path(), &url, 1000, Duration::from_secs(1));
    ready(dir.path()).await;
    // Warm up: the trace property is checked (and created) before the first send.
    let mut c = SocketClient::connect(&dir.path().join("outbox.sock"))
        .await
        .unwrap();
    assert_eq!(
        c.post_json(contact(0, "warm").to_string())
            .await
            .unwrap()
            .status,
        202
    );
    let db = pool(&dir.path().join("outbox.db")).await;
    latencies(&db, &[("warm0".into(), now_ms())]).await;

    let mut sent = Vec::new();
    for i in 0..200 {
        let at = now_ms();
        let answer = c.post_json(contact(i, "sock").to_string()).await.unwrap();
        assert_eq!(answer.status, 202);
        sent.push((format!("sock{i}"), at));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let socket = latencies(&db, &sent).await;
    let mut sent = Vec::new();
    for i in 0..200 {
        let at = now_ms();
        let w = contact(i, "sqlw");
        sqlx::query("INSERT INTO outbox (trace_id, object_type, properties) VALUES (?, ?, ?)")
            .bind(format!("sqlw{i}"))
            .bind("contacts")
            .bind(w["properties"].to_string())
            .execute(&db)
            .await
            .unwrap();
        sent.push((format!("sqlw{i}"), at));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sql = latencies(&db, &sent).await;
    let _ = child.kill();
    let _ = child.wait();

    // Baseline: the simulator's own round trip for one create.
    let http = reqwest::Client::new();
    let mut direct = Vec::new();
    for i in 0..50 {
        let body = json!({"inputs": [{"properties": {"email": format!("direct{i}@example.com")}, "associations": [], "objectWriteTraceId": format!("direct{i}")}]});
        let started = Instant::now();
        let answer = http
            .post(format!("{url}/crm/v3/objects/contacts/batch/create"))
            .header("authorization", "Bearer sim-token")
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = answer.status();
        assert!(
            status.is_success(),
            "{status}: {:?}",
            answer.text().await.unwrap_or_default()
        );
        direct.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    direct.sort_by(f64::total_cmp);
    stop.cancel();

    let target = LINGER_MS + SIM_LATENCY.as_millis() as f64 + 20.0;
    println!("| measurement | p50 (ms) | p99 (ms) |");
    println!("|---|---:|---:|");
    println!(
        "| baseline: one create sent straight to the simulator | {:.0} | {:.0} |",
        percentile(&direct, 0.5),
        percentile(&direct, 0.99)
    );
    println!(
        "| socket: enqueue -> succeeded (200 writes, one per 50 ms) | {:.0} | {:.0} |",
        percentile(&socket, 0.5),
        percentile(&socket, 0.99)
    );
    println!(
        "| SQL INSERT -> succeeded (200 writes, one per 50 ms) | {:.0} | {:.0} |",
        percentile(&sql, 0.5),
        percentile(&sql, 0.99)
    );
    println!(
        "target (socket p50): <= linger {LINGER_MS:.0} + latency {} + 20 = {target:.0} ms",
        SIM_LATENCY.as_millis()
    );
}

async fn queued(root: &Path) {
    let stop = CancellationToken::new();
    let interval = Duration::from_secs(10);
    let url = simulator(10, interval, &stop).await;
    let dir = tempfile::tempdir_in(root).unwrap();
    let mut child = daemon(dir.path(), &url, 10, interval);
    let mut c = ready(dir.path()).await;
    let total = queued_target();
    let mut stored = 0;
    let mut rss = Vec::new();
    for stop_at in [10_000, total] {
        while stored < stop_at {
            let n = (stop_at - stored).min(10_000);
            let body: String = (stored..stored + n)
                .map(|i| contact(i, "q").to_string() + "\n")
                .collect();
            assert_eq!(c.post_ndjson(body).await.unwrap().status, 202);
            stored += n;
        }
        // Let the request's memory go back and a few claims pass, then sample for 5 s.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mut most = 0;
        for _ in 0..10 {
            most = most.max(common::rss_kib(child.id()));
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        rss.push((stop_at, most));
    }
    // Start again with the backlog: the first create after the process starts.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    child.wait().unwrap();
    let still_queued = count_queued(&dir.path().join("outbox.db")).await;
    let url = simulator(100, interval, &stop).await;
    let stats = |url: String| async move {
        let body = reqwest::get(format!("{url}/_sim/stats"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        v["inputs_created"].as_u64().unwrap_or(0)
    };
    let before = stats(url.clone()).await;
    let started = Instant::now();
    let mut child = daemon(dir.path(), &url, 100, interval);
    let first = loop {
        if stats(url.clone()).await > before {
            break started.elapsed();
        }
        assert!(started.elapsed() < Duration::from_secs(60));
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let restarted_rss = common::rss_kib(child.id());
    let _ = child.kill();
    let _ = child.wait();
    stop.cancel();

    println!();
    println!("| writes queued | RSS (KiB) |");
    println!("|---:|---:|");
    for (n, kib) in &rss {
        println!("| {n} | {kib} |");
    }
    println!(
        "ratio RSS({}) / RSS(10000) = {:.2} (target <= 1.5, and under 100 MB)",
        rss[1].0,
        rss[1].1 as f64 / rss[0].1 as f64
    );
    println!(
        "start -> first create with {still_queued} queued: {} ms (target <= 1000); RSS just after: {restarted_rss} KiB",
        first.as_millis()
    );
}

async fn count_queued(db: &Path) -> i64 {
    let db = pool(db).await;
    sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')")
        .fetch_one(&db)
        .await
        .unwrap()
}

#[tokio::main]
async fn main() {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    light_load(&root).await;
    queued(&root).await;
}
