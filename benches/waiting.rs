//! Waiting writes benchmark (issue 11; run on demand, not in CI):
//! `cargo bench --bench waiting`.
//!
//! Does a flood of writes waiting for queued writes slow the scheduler? On fresh
//! databases holding the same backlog of `BENCH_BACKLOG` (default 20,000) pending
//! contacts, one **without** and one **with** `BENCH_WAITING` (default 100,000) waiting
//! deals (each pointing at one of 1,000 companies never enqueued, so they wait throughout),
//! measures the scheduler's cost per batch (claim, reconcile and settle of 100 full
//! batches, no network), alternating the two cases for three rounds in one run.
//!
//! Also reports, as by-products: the rate of storing the waiting writes through the
//! socket's ingest path (references settled: 10,000 per transaction) beside the plain
//! creates stored the same way just before, and the cost of settling one batch of 100
//! companies that releases 10,000 contacts waiting for them.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::cost::{Cost, contact_row, ms, scheduler_cost, store_rows};
use hubspot_outbox::store::Store;
use hubspot_outbox::store::ingest::RowToStore;
use serde_json::json;

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `to` by trace id, HUBSPOT_DEFINED `type_id`, as stored JSON text.
fn pointing_at(to: &str, type_id: u32) -> String {
    json!([{"to": {"objectWriteTraceId": to},
            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id}]}])
    .to_string()
}

fn create(
    object_type: &str,
    trace: String,
    properties: String,
    associations: String,
) -> RowToStore {
    RowToStore {
        trace_id: trace,
        object_type: object_type.into(),
        operation: "create".into(),
        id_property: None,
        record_key: None,
        order_key: None,
        properties,
        references: associations != "[]",
        associations,
    }
}

/// A database with `backlog` pending contacts and `waiting` waiting deals; returns the
/// time the contacts and the waiting deals took to store.
async fn database(dir: &Path, backlog: usize, waiting: usize) -> (Store, Duration, Duration) {
    let store = Store::open(&dir.join("outbox.db"), Duration::from_secs(5))
        .await
        .unwrap();
    let rows: Vec<_> = (0..backlog)
        .map(|i| contact_row(i, "[]".into(), false))
        .collect();
    let t = Instant::now();
    store_rows(&store, &rows).await;
    let plain = t.elapsed();
    let deals: Vec<_> = (0..waiting)
        .map(|i| {
            create(
                "deals",
                format!("deal-{i}"),
                format!(r#"{{"dealname":"d{i}"}}"#),
                pointing_at(&format!("company-{}", i % 1000), 341),
            )
        })
        .collect();
    let t = Instant::now();
    store_rows(&store, &deals).await;
    (store, plain, t.elapsed())
}

/// Storing chains: 5,000 deals (each pointing at a company never enqueued) and a line
/// item of each deal, 10,000 writes per transaction, line items first. Every deal is
/// pointed at, so each is checked for a cycle. Returns writes per second.
async fn chains(dir: &Path) -> f64 {
    let store = Store::open(&dir.join("chains.db"), Duration::from_secs(5))
        .await
        .unwrap();
    let mut rows = Vec::new();
    for i in 0..5_000 {
        rows.push(create(
            "line_items",
            format!("item-{i}"),
            format!(r#"{{"name":"i{i}"}}"#),
            pointing_at(&format!("deal-{i}"), 20),
        ));
    }
    for i in 0..5_000 {
        rows.push(create(
            "deals",
            format!("deal-{i}"),
            format!(r#"{{"dealname":"d{i}"}}"#),
            pointing_at(&format!("company-{i}"), 341),
        ));
    }
    let t = Instant::now();
    store_rows(&store, &rows).await;
    let rate = rows.len() as f64 / t.elapsed().as_secs_f64();
    store.close().await;
    rate
}

/// Settling one batch of 100 companies that 10,000 waiting contacts point at.
async fn release(dir: &Path) -> (Duration, u64) {
    let store = Store::open(&dir.join("release.db"), Duration::from_secs(5))
        .await
        .unwrap();
    let contacts: Vec<_> = (0..10_000)
        .map(|i| contact_row(i, pointing_at(&format!("company-{}", i % 100), 279), true))
        .collect();
    store_rows(&store, &contacts).await;
    let companies: Vec<_> = (0..100)
        .map(|i| {
            create(
                "companies",
                format!("company-{i}"),
                format!(r#"{{"name":"c{i}","email":"c{i}@example.com"}}"#),
                "[]".into(),
            )
        })
        .collect();
    store_rows(&store, &companies).await;
    let cost = scheduler_cost(&store, "companies", 1).await;
    let released = store
        .list_writes(Some("pending"), Some("contacts"), 100_000)
        .await
        .unwrap()
        .len() as u64;
    store.close().await;
    (cost.settle, released)
}

fn row(label: &str, c: &Cost) {
    println!(
        "| {label} | {:.2} | {:.2} / {:.2} / {:.2} |",
        ms(c.per_batch),
        ms(c.claim),
        ms(c.reconcile),
        ms(c.settle)
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let backlog = env_size("BENCH_BACKLOG", 20_000);
    let waiting = env_size("BENCH_WAITING", 100_000);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    println!(
        "| case ({backlog} pending contacts) | ms per 100-input batch | claim / reconcile / settle (ms) |"
    );
    println!("|---|---:|---:|");
    let mut stored = Vec::new();
    for round in 1..=3 {
        for waiting in [0, waiting] {
            let dir = tempfile::tempdir_in(&root).unwrap();
            let (store, plain, took) = database(dir.path(), backlog, waiting).await;
            if waiting > 0 {
                stored.push((plain, took));
            }
            let cost = scheduler_cost(&store, "contacts", 100).await;
            row(&format!("round {round}: {waiting} waiting writes"), &cost);
            store.close().await;
        }
    }
    println!();
    for (plain, took) in stored {
        println!(
            "storing through the ingest path, 10,000 per transaction: {backlog} plain creates {:.0} writes/s, {waiting} waiting writes {:.0} writes/s",
            backlog as f64 / plain.as_secs_f64(),
            waiting as f64 / took.as_secs_f64()
        );
    }
    let dir = tempfile::tempdir_in(&root).unwrap();
    println!(
        "storing 5,000 deals and a line item pointing at each, in one transaction: {:.0} writes/s",
        chains(dir.path()).await
    );
    let (settle, released) = release(dir.path()).await;
    println!(
        "settling one batch of 100 companies that releases {released} waiting contacts: {:.1} ms ({:.3} ms per write released)",
        ms(settle),
        ms(settle) / released.max(1) as f64
    );
}
