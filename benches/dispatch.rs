//! Dispatch benchmark (run on demand, not in CI): `cargo bench --bench dispatch`.
//!
//! For each scenario, starts the simulator in this process (enforcing the scenario's limit
//! per rolling interval, with a latency per request) and the release daemon configured
//! with the same limit, enqueues a backlog of contacts, and waits until all succeeded.
//! Scenarios: 190 per 10 s (HubSpot's Professional tier) with `BENCH_BACKLOG` (default
//! 100,000) writes, about 53 s and five windows and more; 10 per 2 s with a tenth of it.
//! Reports, from the daemon's own batch log and log lines and the simulator's counters:
//! - window utilisation: `n × interval ÷ mean(t[k+n] − t[k])` over the requests' departure
//!   times, i.e. how much of every rolling window the daemon used (1.0: each window held
//!   exactly `n`); targets ≥ 0.99 at 190 per 10 s and ≥ 0.97 at 10 per 2 s;
//! - the most requests in any rolling interval, as the daemon sent them and as the
//!   simulator counted them (never more than the limit), and the 429s (target 0);
//! - every pause the daemon took, with its reason;
//! - mean inputs per request (target ≥ 99 with a backlog);
//! - scheduler overhead per batch: the daemon's CPU time per request, and, measured in the
//!   same run without any network, claim + reconcile + settle of one batch on a database
//!   holding the same backlog.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::cost::{contact_row, ms, scheduler_cost, store_rows};
use common::{most_in_window, window_utilisation};
use hubspot_outbox::simulator::{SimFaults, SimOptions};
use hubspot_outbox::store::Store;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const LATENCY: Duration = Duration::from_millis(300);

/// One rate limit to drain a backlog under.
struct Scenario {
    limit: u32,
    interval: Duration,
    backlog: usize,
    target: f64,
}

fn backlog_size() -> usize {
    std::env::var("BENCH_BACKLOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn contact(i: usize) -> String {
    json!({"objectType": "contacts", "properties": {"email": format!("user{i}@example.com"), "firstname": format!("First{i}"), "lastname": "Lastname"}, "objectWriteTraceId": format!("b-{i}")}).to_string()
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / 100.0
}

async fn end_to_end(dir: &Path, scenario: &Scenario) {
    let Scenario {
        limit,
        interval,
        backlog: n,
        target,
    } = *scenario;
    let stop = CancellationToken::new();
    let options = SimOptions {
        requests_per_interval: limit,
        interval,
        faults: SimFaults {
            latency: LATENCY,
            ..Default::default()
        },
        ..Default::default()
    };
    let url = common::simulator(options, &stop).await;

    let db = dir.join("outbox.db");
    let socket = dir.join("outbox.sock");
    let log = dir.join("daemon.log");
    let mut child = common::daemon_command(dir)
        .env("HUBSPOT_OUTBOX__LOG__LEVEL", "info")
        .env("HUBSPOT_ACCESS_TOKEN", "sim-token")
        .env("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", &url)
        .env(
            "HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL",
            limit.to_string(),
        )
        .env(
            "HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL",
            format!("{}ms", interval.as_millis()),
        )
        .env("HUBSPOT_OUTBOX__RATE_LIMIT__DAILY_LIMIT", "0")
        .env(
            "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
            "email",
        )
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut client = common::ready(&socket).await.expect("the daemon answers");
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(10_000) {
        let body: String = chunk.iter().map(|i| contact(*i) + "\n").collect();
        assert_eq!(client.post_ndjson(body).await.unwrap().status, 202);
    }
    let store = Store::open_read_only(&db, Duration::from_secs(5))
        .await
        .unwrap();
    loop {
        let done = sqlite_count(&db, "SELECT count(*) FROM outbox WHERE state = 'succeeded'");
        if done == n as u64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "gave up waiting"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = start.elapsed();
    let cpu = cpu_seconds(child.id());
    let _ = child.kill();
    let _ = child.wait();
    drop(store);

    let requests = sqlite_count(&db, "SELECT count(*) FROM batch_log");
    let inputs = sqlite_count(
        &db,
        "SELECT sum(size) FROM batch_log WHERE outcome = 'created'",
    );
    let created_requests = sqlite_count(
        &db,
        "SELECT count(*) FROM batch_log WHERE outcome = 'created'",
    );
    let times: Vec<i64> = sqlite_lines(
        &db,
        "SELECT CAST(round((julianday(sent_at) - 2440587.5) * 86400000) AS INTEGER) FROM batch_log ORDER BY 1",
    )
    .iter()
    .filter_map(|l| l.parse().ok())
    .collect();
    let stats: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{url}/_sim/stats"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    stop.cancel();
    let utilisation = window_utilisation(&times, limit as usize, interval);
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    let pauses: Vec<&str> = log_text
        .lines()
        .filter(|l| {
            l.contains("holding for")
                || l.contains("all sending paused")
                || l.contains("went back to the queue unsent")
                || l.contains("HubSpot reports")
        })
        .collect();
    println!();
    println!(
        "### {limit} per {interval:?}, {LATENCY:?} latency per request: {n} writes, all succeeded in {:.1} s",
        elapsed.as_secs_f64()
    );
    println!();
    println!("| measurement | value |");
    println!("|---|---:|");
    println!("| requests sent | {requests} |");
    println!(
        "| window utilisation (n × interval ÷ mean span of n+1 departures), target ≥ {target} | **{utilisation:.3}** |"
    );
    println!(
        "| most requests in any rolling interval: sent (daemon) / counted (simulator), limit {limit} | {} / {} |",
        most_in_window(&times, interval),
        stats["max_in_window"]
    );
    println!(
        "| 429s answered by the simulator | **{}** |",
        stats["by_status"]["429"].as_u64().unwrap_or(0)
    );
    println!(
        "| mean inputs per request | **{:.2}** |",
        inputs as f64 / created_requests.max(1) as f64
    );
    println!(
        "| daemon CPU time per request (ingest included) | {:.2} ms |",
        cpu * 1000.0 / requests.max(1) as f64
    );
    // Every pause, grouped by its reason, with the longest hold of each kind; every line
    // with BENCH_VERBOSE=1.
    let kinds = [
        ("`Remaining: 0` holds (until a slot frees)", "holding for"),
        ("429 pauses", "all sending paused"),
        (
            "batches sent back unsent (a long pause began before their slot)",
            "unsent",
        ),
        ("limit changes adopted from headers", "HubSpot reports a"),
    ];
    for (name, marker) in kinds {
        let hits: Vec<&&str> = pauses.iter().filter(|l| l.contains(marker)).collect();
        let longest = hits
            .iter()
            .filter_map(|l| l.split("holding for ").nth(1))
            .filter_map(|d| debug_duration(d.trim()))
            .max();
        println!(
            "| pauses: {name} | {}{} |",
            hits.len(),
            longest
                .map(|d| format!(" (longest {} ms)", d.as_millis()))
                .unwrap_or_default()
        );
    }
    if std::env::var_os("BENCH_VERBOSE").is_some() {
        for p in &pauses {
            println!("|   {} | |", p.replace('|', "/"));
        }
    }
}

/// A `Duration` as `{:?}` prints it (`20.07ms`, `1.3s`, `850µs`).
fn debug_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().ok()?;
    let seconds = match unit {
        "s" => value,
        "ms" => value / 1e3,
        "µs" => value / 1e6,
        "ns" => value / 1e9,
        _ => return None,
    };
    Some(Duration::from_secs_f64(seconds))
}

fn sqlite_lines(db: &Path, sql: &str) -> Vec<String> {
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 5000")
        .arg(db)
        .arg(sql)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn sqlite_count(db: &Path, sql: &str) -> u64 {
    sqlite_lines(db, sql)
        .first()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(0)
}

/// Claim + reconcile + settle of full batches on a real database with the backlog, no
/// network: what the scheduler itself costs per batch.
async fn overhead(dir: &Path, n: usize) {
    let db = dir.join("overhead.db");
    let store = Store::open(&db, Duration::from_secs(5)).await.unwrap();
    let rows: Vec<_> = (0..n).map(|i| contact_row(i, "[]".into(), false)).collect();
    store_rows(&store, &rows).await;
    let cost = scheduler_cost(&store, "contacts", 100).await;
    println!(
        "| scheduler overhead per 100-input batch (claim + reconcile + settle, {n}-row backlog, no network) | {:.2} ms |",
        ms(cost.per_batch)
    );
    println!(
        "| of which claim / reconcile / settle | {:.2} / {:.2} / {:.2} ms |",
        ms(cost.claim),
        ms(cost.reconcile),
        ms(cost.settle)
    );
    store.close().await;
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n = backlog_size();
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    for scenario in [
        Scenario {
            limit: 190,
            interval: Duration::from_secs(10),
            backlog: n,
            target: 0.99,
        },
        Scenario {
            limit: 10,
            interval: Duration::from_secs(2),
            backlog: n / 10,
            target: 0.97,
        },
    ] {
        let dir = tempfile::tempdir_in(&root).unwrap();
        end_to_end(dir.path(), &scenario).await;
    }
    println!();
    println!("| measurement | value |");
    println!("|---|---:|");
    let dir = tempfile::tempdir_in(&root).unwrap();
    overhead(dir.path(), n).await;
}
