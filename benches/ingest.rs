//! Ingest benchmark (run on demand, not in CI): `cargo bench --bench ingest`.
//!
//! Starts the release binary on a fresh database in `target/tmp`, and measures in one run:
//! - bulk: NDJSON requests of 10,000 writes from one client;
//! - single: 16 concurrent clients, one write per request, each acknowledged durably;
//! - the baseline: the same rows inserted straight into SQLite (same schema, WAL,
//!   `synchronous = FULL`), in transactions of 10,000 rows and one row per transaction;
//! - the daemon's resident memory while the bulk run ingests.
//!
//! `BENCH_WRITES` (default 1,000,000) sets the bulk size; `BENCH_SINGLE_WRITES` (default
//! 100,000) the single-write size.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use hubspot_outbox::operator::client::SocketClient;
use hubspot_outbox::store::MIGRATOR;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

const BULK_REQUEST: usize = 10_000;
const CLIENTS: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One realistic contact write with an explicit trace id (the path that costs a look-up).
fn write_line(prefix: &str, i: usize) -> String {
    format!(
        r#"{{"objectType":"contacts","properties":{{"email":"user{i}@example.com","firstname":"First{i}","lastname":"Lastname","company":"Example Inc","phone":"+1 555 0100","lifecyclestage":"lead"}},"objectWriteTraceId":"{prefix}-{i}"}}"#
    )
}

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Daemon {
    async fn start(dir: &Path) -> Self {
        let child = common::daemon_command(dir)
            .env("HUBSPOT_OUTBOX__LOG__LEVEL", "warn")
            .stderr(Stdio::null())
            .spawn()
            .expect("start the daemon");
        // Built before waiting, so that its Drop kills the child if it never gets ready.
        let daemon = Self {
            child,
            socket: dir.join("outbox.sock"),
        };
        if common::ready(&daemon.socket).await.is_some() {
            return daemon;
        }
        panic!("daemon did not start");
    }

    /// Resident memory in KiB, from /proc.
    fn rss_kib(&self) -> u64 {
        common::rss_kib(self.child.id())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `clients` connections each send their share of `n` writes in NDJSON requests of
/// `BULK_REQUEST`. Returns writes/s and the daemon's RSS at every tenth of the way.
async fn bulk(dir: &Path, n: usize, clients: usize) -> (f64, Vec<(usize, u64)>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let daemon = Daemon::start(dir).await;
    let sent = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let share = n / clients;
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (socket, sent) = (daemon.socket.clone(), sent.clone());
            tokio::spawn(async move {
                let mut client = SocketClient::connect(&socket).await.unwrap();
                let (from, to) = (c * share, (c + 1) * share);
                let mut i = from;
                while i < to {
                    let count = BULK_REQUEST.min(to - i);
                    let mut body = String::with_capacity(count * 240);
                    for k in i..i + count {
                        body.push_str(&write_line("bulk", k));
                        body.push('\n');
                    }
                    let a = client.post_ndjson(body).await.unwrap();
                    assert_eq!(a.status, 202, "{:?}", a.body);
                    i += count;
                    sent.fetch_add(count, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let mut rss = vec![(0, daemon.rss_kib())];
    let mut next_mark = n / 10;
    while sent.load(Ordering::Relaxed) < share * clients {
        let done = sent.load(Ordering::Relaxed);
        if done >= next_mark {
            rss.push((done, daemon.rss_kib()));
            next_mark += n / 10;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = (share * clients) as f64 / start.elapsed().as_secs_f64();
    rss.push((share * clients, daemon.rss_kib()));
    (rate, rss)
}

async fn single(dir: &Path, n: usize) -> f64 {
    let daemon = Daemon::start(dir).await;
    let per_client = n / CLIENTS;
    let start = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let socket = daemon.socket.clone();
            tokio::spawn(async move {
                let mut client = SocketClient::connect(&socket).await.unwrap();
                for i in 0..per_client {
                    let a = client
                        .post_json(write_line(&format!("single{c}"), i))
                        .await
                        .unwrap();
                    assert_eq!(a.status, 202);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (per_client * CLIENTS) as f64 / start.elapsed().as_secs_f64()
}

/// The same rows straight into SQLite through its C API, as fast as a producer with the
/// database file could insert them: one prepared INSERT, bound and stepped per row,
/// `rows_per_tx` rows per transaction, WAL and `synchronous = FULL` like the daemon.
fn raw_sqlite(dir: &Path, n: usize, rows_per_tx: usize) -> f64 {
    use libsqlite3_sys as ffi;
    use std::ffi::CString;

    let rt = tokio::runtime::Handle::current();
    let db_path = dir.join("raw.db");
    // Create the schema with the daemon's own migrations.
    tokio::task::block_in_place(|| {
        rt.block_on(async {
            let options = SqliteConnectOptions::from_str("sqlite:")
                .unwrap()
                .filename(&db_path)
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            MIGRATOR.run(&pool).await.unwrap();
            pool.close().await;
        })
    });
    let rows: Vec<(String, String)> = (0..n)
        .map(|i| {
            let v: serde_json::Value = serde_json::from_str(&write_line("raw", i)).unwrap();
            (
                v["objectWriteTraceId"].as_str().unwrap().to_owned(),
                v["properties"].to_string(),
            )
        })
        .collect();
    // SAFETY: a single-threaded use of SQLite's documented C API; every pointer passed is
    // valid for the call, text is bound with SQLITE_TRANSIENT (SQLite copies it), and
    // the handles are finalized and closed before returning.
    unsafe {
        let mut db = std::ptr::null_mut();
        let path = CString::new(db_path.to_str().unwrap()).unwrap();
        assert_eq!(ffi::sqlite3_open(path.as_ptr(), &mut db), ffi::SQLITE_OK);
        let exec = |sql: &str| {
            let sql = CString::new(sql).unwrap();
            let rc = ffi::sqlite3_exec(
                db,
                sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            );
            assert_eq!(rc, ffi::SQLITE_OK, "{sql:?}");
        };
        exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
        let insert = CString::new(
            "INSERT INTO outbox (trace_id, object_type, properties) VALUES (?1, 'contacts', ?2)",
        )
        .unwrap();
        let mut stmt = std::ptr::null_mut();
        assert_eq!(
            ffi::sqlite3_prepare_v2(db, insert.as_ptr(), -1, &mut stmt, std::ptr::null_mut()),
            ffi::SQLITE_OK
        );
        let start = Instant::now();
        for chunk in rows.chunks(rows_per_tx) {
            exec("BEGIN IMMEDIATE");
            for (trace, props) in chunk {
                ffi::sqlite3_bind_text(
                    stmt,
                    1,
                    trace.as_ptr().cast(),
                    trace.len() as i32,
                    ffi::SQLITE_TRANSIENT(),
                );
                ffi::sqlite3_bind_text(
                    stmt,
                    2,
                    props.as_ptr().cast(),
                    props.len() as i32,
                    ffi::SQLITE_TRANSIENT(),
                );
                assert_eq!(ffi::sqlite3_step(stmt), ffi::SQLITE_DONE);
                ffi::sqlite3_reset(stmt);
            }
            exec("COMMIT");
        }
        let rate = n as f64 / start.elapsed().as_secs_f64();
        ffi::sqlite3_finalize(stmt);
        ffi::sqlite3_close(db);
        rate
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let bulk_n = env_usize("BENCH_WRITES", 1_000_000);
    let single_n = env_usize("BENCH_SINGLE_WRITES", 100_000);
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let fresh = || tempfile::tempdir_in(&root).unwrap();

    let d = fresh();
    let raw_bulk = raw_sqlite(d.path(), bulk_n, BULK_REQUEST);
    let d = fresh();
    let raw_single = raw_sqlite(d.path(), single_n / 10, 1);
    let d = fresh();
    let (bulk_rate, rss) = bulk(d.path(), bulk_n, 1).await;
    let d = fresh();
    let (bulk2_rate, _) = bulk(d.path(), bulk_n, 2).await;
    let d = fresh();
    let single_rate = single(d.path(), single_n).await;

    println!("| measurement | writes/s |");
    println!("|---|---:|");
    println!("| raw SQLite, {BULK_REQUEST} rows per transaction ({bulk_n} rows) | {raw_bulk:.0} |");
    println!(
        "| daemon, bulk NDJSON, {BULK_REQUEST} writes per request ({bulk_n} writes) | {bulk_rate:.0} |"
    );
    println!("| daemon, bulk NDJSON, 2 clients ({bulk_n} writes) | {bulk2_rate:.0} |");
    println!(
        "| raw SQLite, one row per transaction ({} rows) | {raw_single:.0} |",
        single_n / 10
    );
    println!(
        "| daemon, {CLIENTS} clients, one write per request ({single_n} writes) | {single_rate:.0} |"
    );
    println!();
    println!("bulk (1 client) / raw bulk = {:.2}", bulk_rate / raw_bulk);
    println!("bulk (2 clients) / raw bulk = {:.2}", bulk2_rate / raw_bulk);
    println!(
        "single / raw one-row-per-transaction = {:.2}",
        single_rate / raw_single
    );
    println!();
    println!("daemon RSS during the 1-client bulk run (writes stored: KiB):");
    for (n, kib) in rss {
        println!("  {n:>9}: {kib}");
    }
}
