//! Dashboard benchmark (issue 13; run on demand, not in CI): `cargo bench --bench dashboard`.
//!
//! How long the dashboard's pages take to render with `BENCH_WRITES` (default 1,000,000)
//! writes in the outbox, against the same pages with `BENCH_SMALL` (default 10,000)
//! writes measured in the same run (the baseline), and `GET /healthz` (the socket's round
//! trip, no page). Each page is fetched `BENCH_ROUNDS` (default 15) times over the socket
//! from the release daemon, which holds still (no token: nothing is sent); the median and
//! the slowest are reported. `BENCH_BACKEND=postgres` measures an outbox in PostgreSQL (a
//! server of the benchmark's own, as the tests start, with `fsync` on and PostgreSQL's
//! default memory settings) instead of SQLite.
//!
//! The outbox is filled with plain SQL (the sqlite3 shell, or psql with the table's
//! triggers off, as the daemon's own inserts): 97% succeeded, 2% pending, 1% failed (each
//! with its error in the history, in 5 categories), over 4 object types, changed over the
//! last 30 days, with a day of batch log (one request of 100 a minute).
//! `BENCH_FILL_ONLY=DIR` only fills `DIR/outbox.db` (SQLite), to look at the queries by
//! hand.

mod common;
#[allow(dead_code)]
#[path = "../tests/common/pg.rs"]
mod pg;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, daemon_command, ready};
use hubspot_outbox::operator::client::SocketClient;

fn env_size(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Where the outbox being measured lives.
#[derive(Clone, Copy)]
enum Backend<'a> {
    Sqlite,
    Postgres(&'a pg::PgServer),
}

/// `hubspot-outbox migrate` with only `env` set.
fn migrate(env: &[(&str, &std::ffi::OsStr)]) {
    let out = Command::new(BIN)
        .arg("migrate")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fills a new SQLite outbox in `dir` with `n` writes as described above.
fn fill_sqlite(dir: &Path, n: usize) {
    let db = dir.join("outbox.db");
    migrate(&[
        ("HOME", dir.as_os_str()),
        ("HUBSPOT_OUTBOX__DATABASE__PATH", db.as_os_str()),
    ]);
    let sql = format!(
        "PRAGMA journal_mode = WAL;
         BEGIN;
         INSERT INTO ingest_marker (id) VALUES (1);
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n})
         INSERT INTO outbox (trace_id, object_type, properties, state, hubspot_id, attempts,
                             last_error, validated, next_attempt_at, created_at, updated_at)
         SELECT printf('w-%07d', i),
                CASE i % 4 WHEN 0 THEN 'contacts' WHEN 1 THEN 'companies' WHEN 2 THEN 'deals' ELSE 'tickets' END,
                json_object('email', printf('person%d@example.com', i), 'firstname', 'Name' || (i % 997),
                            'lastname', 'Family' || (i % 1009), 'city', 'City' || (i % 101)),
                CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'pending' ELSE 'succeeded' END,
                CASE WHEN i % 100 = 0 OR i % 50 = 1 THEN NULL ELSE CAST(100000000 + i AS TEXT) END,
                CASE WHEN i % 100 = 0 THEN 3 ELSE 1 END,
                CASE WHEN i % 100 = 0 THEN 'VALIDATION_ERROR: Property values were not valid (' || (i % 500 / 100) || ')' END,
                1, t, t, t
         FROM (SELECT i, strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d seconds', ({n} - i) * 2592000 / {n})) AS t FROM n);
         INSERT INTO error_history (trace_id, attempt, http_status, category, message, at)
         SELECT trace_id, 3, 400,
                CASE id % 500 / 100 WHEN 0 THEN 'VALIDATION_ERROR' WHEN 1 THEN 'INVALID_EMAIL' WHEN 2 THEN 'CONFLICT'
                                    WHEN 3 THEN 'OBJECT_NOT_FOUND' ELSE 'PROPERTY_DOESNT_EXIST' END,
                'Property values were not valid (' || (id % 500 / 100) || ')', updated_at
         FROM outbox WHERE state = 'failed';
         WITH RECURSIVE m(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM m WHERE i < 1440)
         INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome, duration_ms, sent_at, finished_at)
         SELECT 'b-' || i, 'contacts', 100, 201, 'created', 250,
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', i)),
                strftime('%Y-%m-%dT%H:%M:%fZ', 'now', printf('-%d minutes', i))
         FROM m;
         UPDATE queue_state SET queued = (SELECT count(*) FROM outbox WHERE state = 'pending');
         DELETE FROM ingest_marker;
         COMMIT;
         ANALYZE;"
    );
    let out = Command::new("sqlite3").arg(&db).arg(sql).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fills a new PostgreSQL database on `server` with `n` writes as [`fill_sqlite`] does,
/// and returns its URL.
fn fill_postgres(server: &pg::PgServer, n: usize) -> String {
    let name = format!("dashboard_{n}");
    let out = server.psql(&server.url, &format!("CREATE DATABASE {name}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, _) = server.url.rsplit_once('/').unwrap();
    let url = format!("{base}/{name}");
    migrate(&[
        ("HOME", "/nonexistent".as_ref()),
        ("HUBSPOT_OUTBOX__DATABASE__URL", url.as_ref()),
    ]);
    let sql = format!(
        "BEGIN;
         ALTER TABLE outbox DISABLE TRIGGER USER;
         INSERT INTO outbox (trace_id, object_type, properties, state, hubspot_id, attempts,
                             last_error, validated, next_attempt_at, created_at, updated_at)
         SELECT 'w-' || lpad(i::text, 7, '0'),
                (ARRAY['contacts', 'companies', 'deals', 'tickets'])[i % 4 + 1],
                jsonb_build_object('email', 'person' || i || '@example.com', 'firstname', 'Name' || (i % 997),
                                   'lastname', 'Family' || (i % 1009), 'city', 'City' || (i % 101)),
                CASE WHEN i % 100 = 0 THEN 'failed' WHEN i % 50 = 1 THEN 'pending' ELSE 'succeeded' END,
                CASE WHEN i % 100 = 0 OR i % 50 = 1 THEN NULL ELSE (100000000 + i)::text END,
                CASE WHEN i % 100 = 0 THEN 3 ELSE 1 END,
                CASE WHEN i % 100 = 0 THEN 'VALIDATION_ERROR: Property values were not valid (' || (i % 500 / 100) || ')' END,
                true, t, t, t
         FROM (SELECT i, now() - make_interval(secs => ({n} - i)::bigint * 2592000 / {n}) AS t
               FROM generate_series(1, {n}) AS i) AS s
         ORDER BY i;
         ALTER TABLE outbox ENABLE TRIGGER USER;
         INSERT INTO error_history (trace_id, attempt, http_status, category, message, at)
         SELECT trace_id, 3, 400,
                (ARRAY['VALIDATION_ERROR', 'INVALID_EMAIL', 'CONFLICT', 'OBJECT_NOT_FOUND',
                       'PROPERTY_DOESNT_EXIST'])[id % 500 / 100 + 1],
                'Property values were not valid (' || (id % 500 / 100) || ')', updated_at
         FROM outbox WHERE state = 'failed';
         INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome, duration_ms, sent_at, finished_at)
         SELECT 'b-' || i, 'contacts', 100, 201, 'created', 250,
                now() - make_interval(mins => i), now() - make_interval(mins => i)
         FROM generate_series(1, 1440) AS i;
         UPDATE queue_count SET queued = (SELECT count(*) FROM outbox WHERE state = 'pending');
         DELETE FROM queue_changes;
         COMMIT;"
    );
    // One `psql -c` is one transaction, which VACUUM may not run in.
    for sql in [sql.as_str(), "VACUUM ANALYZE"] {
        let out = server.psql(&url, sql);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    url
}

/// The pages measured: (what, path).
fn pages(n: usize) -> Vec<(&'static str, String)> {
    let middle = n / 2 + 2; // a succeeded write halfway through
    vec![
        ("GET /healthz (round trip, no page)", "/healthz".into()),
        ("overview page", "/ui/".into()),
        ("overview refresh (fragment)", "/ui/overview".into()),
        ("writes, newest 50", "/ui/writes".into()),
        (
            "writes, page 10,000 back (by key)",
            format!("/ui/writes?before={}", n.saturating_sub(10_000).max(2)),
        ),
        (
            "failed writes + error groups",
            "/ui/writes?state=failed".into(),
        ),
        (
            "failed, one category",
            "/ui/writes?state=failed&category=CONFLICT".into(),
        ),
        (
            "failed, one type, last 7 days",
            "/ui/writes?state=failed&type=deals&since=7d".into(),
        ),
        ("search: a trace id", format!("/ui/writes?q=w-{middle:07}")),
        (
            "search: a HubSpot id",
            format!("/ui/writes?q={}", 100_000_000 + middle),
        ),
        (
            "search: an email (rare value)",
            format!("/ui/writes?q=person{middle}%40example.com"),
        ),
        (
            "search: an email, last day",
            format!("/ui/writes?q=person{}%40example.com&since=1d", n - 10),
        ),
        ("one write", format!("/ui/writes/w-{middle:07}")),
        (
            "succeeded writes (a window)",
            "/ui/writes?state=succeeded".into(),
        ),
        (
            "bulk retry count (all failed)",
            "/ui/bulk?action=retry&state=failed".into(),
        ),
        (
            "bulk retry count (failed, one category)",
            "/ui/bulk?action=retry&state=failed&category=CONFLICT".into(),
        ),
        ("audit log", "/ui/audit".into()),
    ]
}

async fn time_page(c: &mut SocketClient, path: &str, rounds: usize) -> (Duration, Duration) {
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let start = Instant::now();
        let a = c.get(path).await.unwrap();
        times.push(start.elapsed());
        assert_eq!(
            a.status,
            200,
            "{path}: {}",
            String::from_utf8_lossy(&a.body)
        );
    }
    times.sort();
    (times[times.len() / 2], *times.last().unwrap())
}

async fn measure(n: usize, rounds: usize, backend: Backend<'_>) -> Vec<(Duration, Duration)> {
    let dir = tempfile::tempdir().unwrap();
    let start = Instant::now();
    let mut daemon = daemon_command(dir.path());
    match backend {
        Backend::Sqlite => fill_sqlite(dir.path(), n),
        Backend::Postgres(server) => {
            daemon.env("HUBSPOT_OUTBOX__DATABASE__URL", fill_postgres(server, n));
        }
    }
    eprintln!(
        "filled {n} writes in {:.1} s",
        start.elapsed().as_secs_f64()
    );
    // Retention off: the month of writes must not be purged while pages are timed.
    let mut child = daemon
        .env("HUBSPOT_OUTBOX__RETENTION__SUCCEEDED", "0s")
        .spawn()
        .unwrap();
    let mut c = ready(&dir.path().join("outbox.sock"))
        .await
        .expect("the daemon answers");
    let mut out = Vec::new();
    for (_, path) in pages(n) {
        // One untimed fetch first: the page's database pages in the cache, as an operator
        // clicking around would have them.
        c.get(&path).await.unwrap();
        out.push(time_page(&mut c, &path, rounds).await);
    }
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
    out
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let big = env_size("BENCH_WRITES", 1_000_000);
    let small = env_size("BENCH_SMALL", 10_000);
    let rounds = env_size("BENCH_ROUNDS", 15);
    // `BENCH_FILL_ONLY=DIR`: fill DIR with BENCH_WRITES writes and stop (to look at the
    // queries by hand).
    if let Some(dir) = std::env::var_os("BENCH_FILL_ONLY") {
        std::fs::create_dir_all(&dir).unwrap();
        fill_sqlite(Path::new(&dir), big);
        return;
    }
    let server;
    let backend = match std::env::var("BENCH_BACKEND").as_deref() {
        Ok("postgres") => {
            server = pg::PgServer::start_durable().expect("PostgreSQL is installed");
            Backend::Postgres(&server)
        }
        Ok("sqlite") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("BENCH_BACKEND={other}: sqlite or postgres"),
    };
    let base = measure(small, rounds, backend).await;
    let large = measure(big, rounds, backend).await;
    println!("| page | {small} writes: median / slowest ms | {big} writes: median / slowest ms |");
    println!("|---|---|---|");
    for (((what, _), (bm, bs)), (lm, ls)) in pages(big).iter().zip(&base).zip(&large) {
        println!(
            "| {what} | {} / {} | {} / {} |",
            ms(*bm),
            ms(*bs),
            ms(*lm),
            ms(*ls)
        );
    }
}
