//! PostgreSQL benchmark (run on demand, not in CI): `cargo bench --bench postgres`.
//! Starts a PostgreSQL server of its own (as the tests do; `fsync` stays on here) and,
//! in one run:
//!
//! - **enqueue**: `BENCH_WRITES` (default 200,000) contacts stored through the release
//!   daemon's socket (NDJSON, 10,000 a request, one client), and by a producer's plain
//!   `INSERT INTO outbox` (10,000 rows a statement and transaction, through the table's
//!   triggers), beside the baseline: the same rows in a table with no triggers, by the
//!   same `INSERT` and by `COPY`;
//! - **dispatch**: a backlog of `BENCH_PG_BACKLOG` (default 57,000: three windows' worth
//!   at 190 per 10 s) drained by 1, 2 and 4 release daemons sharing one outbox and one
//!   budget against the simulator (190 per 10 s, 300 ms a request): window utilisation
//!   (target ≥ 0.95), the 429s (target 0), the most requests in any window, and inputs
//!   per request.

mod common;
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

use common::{most_in_window, window_utilisation};
use hubspot_outbox::simulator::{SimFaults, SimOptions};
use sqlx::postgres::{PgPool, PgPoolOptions};
use tokio_util::sync::CancellationToken;

const CHUNK: usize = 10_000;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn email(i: usize) -> String {
    format!("user{i}@example.com")
}

fn properties(i: usize) -> String {
    format!(
        r#"{{"email":"{}","firstname":"First{i}","lastname":"Lastname","company":"Example Inc"}}"#,
        email(i)
    )
}

/// A database of its own on `server`, and its URL.
fn database(server: &pg::PgServer, name: &str) -> String {
    let out = server.psql(&server.url, &format!("CREATE DATABASE {name}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, _) = server.url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

async fn pool(url: &str) -> PgPool {
    PgPoolOptions::new()
        .max_connections(2)
        .connect(url)
        .await
        .unwrap()
}

fn per_second(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64()
}

/// A release daemon on `url`, with its socket in a directory of its own.
fn daemon(dir: &Path, url: &str, extra: &[(&str, String)]) -> Child {
    let mut cmd = common::daemon_command(dir);
    cmd.env("HUBSPOT_OUTBOX__DATABASE__URL", url)
        .env("HUBSPOT_OUTBOX__LOG__LEVEL", "warn")
        .stderr(std::fs::File::create(dir.join("daemon.log")).unwrap());
    for (k, v) in extra {
        cmd.env(k, v);
    }
    cmd.spawn().unwrap()
}

async fn enqueue(server: &pg::PgServer, n: usize) {
    // Through the socket: the daemon validates, group-commits, answers once committed.
    let url = database(server, "socket_run");
    let dir = tempfile::tempdir().unwrap();
    let mut child = daemon(dir.path(), &url, &[]);
    let mut client = common::ready(&dir.path().join("outbox.sock"))
        .await
        .expect("the daemon answers");
    let start = Instant::now();
    for chunk in (0..n).collect::<Vec<_>>().chunks(CHUNK) {
        let body: String = chunk
            .iter()
            .map(|i| {
                format!(
                    r#"{{"objectType":"contacts","properties":{},"objectWriteTraceId":"s-{i}"}}"#,
                    properties(*i)
                ) + "\n"
            })
            .collect();
        assert_eq!(client.post_ndjson(body).await.unwrap().status, 202);
    }
    let socket = start.elapsed();
    let _ = child.kill();
    let _ = child.wait();

    // A producer's INSERT into the outbox (migrated as the daemon would), and the same rows
    // into a table with no triggers, by INSERT and by COPY.
    let url = database(server, "sql_run");
    let db = pool(&url).await;
    hubspot_outbox::store::PG_MIGRATOR.run(&db).await.unwrap();
    sqlx::query(
        "CREATE TABLE raw_rows (trace_id text PRIMARY KEY, object_type text NOT NULL,
                                properties jsonb NOT NULL)",
    )
    .execute(&db)
    .await
    .unwrap();
    sqlx::query("CREATE TABLE copied_rows (LIKE raw_rows INCLUDING ALL)")
        .execute(&db)
        .await
        .unwrap();
    let mut timings = Vec::new();
    for table in ["outbox", "raw_rows"] {
        let sql = match table {
            "outbox" => {
                "INSERT INTO outbox (trace_id, object_type, properties)
                 SELECT t, 'contacts', p::jsonb FROM unnest($1::text[], $2::text[]) AS r(t, p)"
            }
            _ => {
                "INSERT INTO raw_rows (trace_id, object_type, properties)
                 SELECT t, 'contacts', p::jsonb FROM unnest($1::text[], $2::text[]) AS r(t, p)"
            }
        };
        let start = Instant::now();
        for chunk in (0..n).collect::<Vec<_>>().chunks(CHUNK) {
            let traces: Vec<String> = chunk.iter().map(|i| format!("q-{i}")).collect();
            let props: Vec<String> = chunk.iter().map(|i| properties(*i)).collect();
            sqlx::query(sql)
                .bind(&traces)
                .bind(&props)
                .execute(&db)
                .await
                .unwrap();
        }
        timings.push(start.elapsed());
    }
    let start = Instant::now();
    let mut conn = db.acquire().await.unwrap();
    for chunk in (0..n).collect::<Vec<_>>().chunks(CHUNK) {
        let mut copy = conn
            .copy_in_raw("COPY copied_rows (trace_id, object_type, properties) FROM STDIN")
            .await
            .unwrap();
        let data: String = chunk
            .iter()
            .map(|i| format!("q-{i}\tcontacts\t{}\n", properties(*i)))
            .collect();
        copy.send(data.as_bytes()).await.unwrap();
        copy.finish().await.unwrap();
    }
    let copied = start.elapsed();
    drop(conn);
    db.close().await;

    println!();
    println!("### Enqueue on PostgreSQL: {n} contacts, 10,000 per request / statement");
    println!();
    println!("| path | writes/s |");
    println!("|---|---:|");
    println!(
        "| socket (NDJSON, one client; answered once committed) | **{:.0}** |",
        per_second(n, socket)
    );
    println!(
        "| producer's `INSERT INTO outbox` (through its triggers) | **{:.0}** |",
        per_second(n, timings[0])
    );
    println!(
        "| baseline: the same `INSERT` into a table with no triggers | {:.0} |",
        per_second(n, timings[1])
    );
    println!(
        "| baseline: `COPY` into a table with no triggers | {:.0} |",
        per_second(n, copied)
    );
}

async fn dispatch(server: &pg::PgServer, daemons: usize, backlog: usize) {
    let (limit, interval) = (190u32, Duration::from_secs(10));
    let stop = CancellationToken::new();
    let sim = common::simulator(
        SimOptions {
            requests_per_interval: limit,
            interval,
            faults: SimFaults {
                latency: Duration::from_millis(300),
                ..Default::default()
            },
            ..Default::default()
        },
        &stop,
    )
    .await;
    let url = database(server, &format!("dispatch_{daemons}"));
    let db = pool(&url).await;
    hubspot_outbox::store::PG_MIGRATOR.run(&db).await.unwrap();
    for chunk in (0..backlog).collect::<Vec<_>>().chunks(CHUNK) {
        let traces: Vec<String> = chunk.iter().map(|i| format!("d-{i}")).collect();
        let props: Vec<String> = chunk.iter().map(|i| properties(*i)).collect();
        sqlx::query(
            "INSERT INTO outbox (trace_id, object_type, properties)
             SELECT t, 'contacts', p::jsonb FROM unnest($1::text[], $2::text[]) AS r(t, p)",
        )
        .bind(&traces)
        .bind(&props)
        .execute(&db)
        .await
        .unwrap();
    }
    let env = [
        ("HUBSPOT_ACCESS_TOKEN", "sim-token".to_owned()),
        ("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", sim.clone()),
        (
            "HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL",
            limit.to_string(),
        ),
        (
            "HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL",
            format!("{}ms", interval.as_millis()),
        ),
        ("HUBSPOT_OUTBOX__RATE_LIMIT__DAILY_LIMIT", "0".to_owned()),
    ];
    let dirs: Vec<tempfile::TempDir> = (0..daemons).map(|_| tempfile::tempdir().unwrap()).collect();
    let start = Instant::now();
    let mut children: Vec<Child> = dirs.iter().map(|d| daemon(d.path(), &url, &env)).collect();
    loop {
        let done: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = 'succeeded'")
            .fetch_one(&db)
            .await
            .unwrap();
        if done == backlog as i64 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "gave up waiting"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = start.elapsed();
    for c in &mut children {
        let _ = c.kill();
        let _ = c.wait();
    }
    let times: Vec<i64> = sqlx::query_scalar(
        "SELECT (extract(epoch FROM sent_at) * 1000)::bigint FROM batch_log ORDER BY 1",
    )
    .fetch_all(&db)
    .await
    .unwrap();
    let (created, inputs): (i64, i64) = sqlx::query_as(
        "SELECT count(*), coalesce(sum(size), 0)::bigint FROM batch_log WHERE outcome = 'created'",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    let senders: i64 = sqlx::query_scalar("SELECT count(DISTINCT claimed_by) FROM outbox")
        .fetch_one(&db)
        .await
        .unwrap();
    db.close().await;
    let stats: serde_json::Value = serde_json::from_slice(
        &reqwest::get(format!("{sim}/_sim/stats"))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    stop.cancel();
    println!(
        "| {daemons} | {senders} | {:.1} s | {} | **{:.3}** | {} / {} | **{}** | {:.2} |",
        elapsed.as_secs_f64(),
        times.len(),
        window_utilisation(&times, limit as usize, interval),
        most_in_window(&times, interval),
        stats["max_in_window"],
        stats["by_status"]["429"].as_u64().unwrap_or(0),
        inputs as f64 / created.max(1) as f64
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let Some(server) = pg::PgServer::start_durable() else {
        return;
    };
    enqueue(&server, env_usize("BENCH_WRITES", 200_000)).await;
    let backlog = env_usize("BENCH_PG_BACKLOG", 57_000);
    println!();
    println!(
        "### Dispatch from one PostgreSQL outbox: {backlog} contacts, 190 per 10 s, 300 ms a request"
    );
    println!();
    println!(
        "| daemons | of which sent | all succeeded in | requests | window utilisation (target ≥ 0.95) | most in any window: sent / counted (limit 190) | 429s (target 0) | inputs per request |"
    );
    println!("|---:|---:|---:|---:|---:|---|---:|---:|");
    for daemons in [1, 2, 4] {
        dispatch(&server, daemons, backlog).await;
    }
}
