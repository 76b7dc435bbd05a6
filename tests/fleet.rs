//! Several daemons on one PostgreSQL outbox (issue 12), against the HubSpot simulator: a
//! shared backlog drained with no write sent twice and the combined rate within the
//! account's limit; a producer's rolled-back transaction leaving no write; a SIGKILLed
//! daemon's rows in flight taken over by another. Skipped, saying so, where PostgreSQL is
//! not installed.

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::sim::{Simulator, fast, start_daemon_on};
use common::{Backend, Daemon, InProcess};
use hubspot_outbox::simulator::{SimFaults, SimOptions};

/// Polls `check` until it holds or `limit` passes.
async fn within<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

fn count(d: &InProcess, filter: &str) -> i64 {
    d.sql(&format!("SELECT count(*) FROM outbox WHERE {filter}"))
        .parse()
        .unwrap()
}

/// `n` contacts inserted by a producer with plain SQL, in one transaction.
fn produce(d: &InProcess, from: usize, n: usize) {
    d.sql(&format!(
        "INSERT INTO outbox (trace_id, object_type, properties)
         SELECT 'c-' || g, 'contacts', jsonb_build_object('email', 'c' || g || '@example.com')
         FROM generate_series({from}, {}) AS g",
        from + n - 1
    ));
}

/// The simulator's contacts: how many, and how many distinct trace ids among them.
async fn contacts(sim: &Simulator) -> (usize, usize) {
    let objects = sim.objects("contacts").await;
    let traces: HashSet<String> = objects
        .iter()
        .filter_map(|o| o["properties"]["hubspot_outbox_trace_id"].as_str())
        .map(str::to_owned)
        .collect();
    (objects.len(), traces.len())
}

/// A rate limit of 10 requests a second for both HubSpot and the daemons, batches of 5.
fn limited(sim: &Simulator) -> Vec<(String, String)> {
    fast(
        sim,
        &[
            ("HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL", "10"),
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "5"),
            ("HUBSPOT_OUTBOX__DATABASE__MAX_CONNECTIONS", "4"),
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_drain_one_backlog_once_each_within_one_rate_limit() {
    let Some(db) = Backend::postgres() else {
        return;
    };
    let sim = Simulator::start(SimOptions {
        requests_per_interval: 10,
        interval: Duration::from_secs(1),
        ..Default::default()
    })
    .await;
    let env = limited(&sim);
    let mut daemons = Vec::new();
    for _ in 0..3 {
        daemons.push(start_daemon_on(&db, &env).await);
    }
    let d = &daemons[0];
    // A producer's transaction that rolls back leaves nothing to send.
    d.sql(
        "BEGIN;
         INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{\"email\": \"gone@example.com\"}');
         ROLLBACK;",
    );
    produce(d, 0, 200);
    let started = Instant::now();
    within(Duration::from_secs(60), "every write sent", || async {
        count(d, "state = 'succeeded'") == 200
    })
    .await;
    let took = started.elapsed();
    assert_eq!(count(d, "state != 'succeeded'"), 0);
    assert_eq!(contacts(&sim).await, (200, 200), "no write sent twice");
    let stats = sim.stats().await;
    assert_eq!(stats["by_status"].get("429"), None, "{stats}");
    assert!(stats["max_in_window"].as_u64().unwrap() <= 10, "{stats}");
    let requests = stats["requests"].as_u64().unwrap();
    // 200 writes in batches of 5 is 40 requests: 4 s at 10 a second, however many send.
    assert!(requests >= 40, "{stats}");
    assert!(
        took >= Duration::from_secs(3),
        "the daemons kept to one budget between them: {took:?}"
    );
    let senders: i64 = d
        .sql("SELECT count(DISTINCT claimed_by) FROM outbox")
        .parse()
        .unwrap();
    assert!(
        senders >= 2,
        "the backlog was shared: {senders} daemon(s) sent"
    );
    for d in daemons {
        d.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_daemons_writes_in_flight_are_taken_over_and_never_duplicated() {
    let Some(db) = Backend::postgres() else {
        return;
    };
    // Every request creates its records and is never answered: the doomed daemon's
    // batches stay in flight, with their records made.
    let sim = Simulator::start(SimOptions {
        faults: SimFaults {
            hang_after_create_rate: 1.0,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let mut env = fast(&sim, &[("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "10")]);
    env.extend(db.env().into_iter().map(|(k, v)| (k.to_owned(), v)));
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let dir = tempfile::tempdir().unwrap();
    let doomed = Daemon::start_with(dir.path(), &pairs).await;
    let Backend::Postgres(url) = &db else {
        unreachable!()
    };
    let server = common::pg::shared().unwrap();
    let psql = |sql: &str| {
        let out = server.psql(url, sql);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    psql(
        "INSERT INTO outbox (trace_id, object_type, properties)
         SELECT 'c-' || g, 'contacts', jsonb_build_object('email', 'c' || g || '@example.com')
         FROM generate_series(0, 99) AS g",
    );
    within(
        Duration::from_secs(20),
        "the doomed daemon has writes in flight",
        || async { psql("SELECT count(*) FROM outbox WHERE state = 'in_flight'") != "0" },
    )
    .await;
    // Another daemon is running when the first dies: it notices by itself.
    let other = start_daemon_on(&db, &env).await;
    doomed.kill();
    sim.control("/_sim/faults", serde_json::json!({})).await;
    within(Duration::from_secs(60), "every write settled", || async {
        count(&other, "state = 'succeeded'") == 100
    })
    .await;
    assert_eq!(contacts(&sim).await, (100, 100), "nothing created twice");
    let interrupted: i64 = other
        .sql("SELECT count(*) FROM batch_log WHERE outcome = 'interrupted'")
        .parse()
        .unwrap();
    assert!(
        interrupted >= 1,
        "the killed daemon's batches were taken over by the other"
    );
    other.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producers_commit_wakes_the_daemon_at_once_and_poll_only_still_finds_it() {
    let Some(db) = Backend::postgres() else {
        return;
    };
    let sim = Simulator::start(SimOptions::default()).await;
    // Polling every minute: only the notification can wake the daemon within the test.
    let listening = start_daemon_on(
        &db,
        &fast(&sim, &[("HUBSPOT_OUTBOX__DATABASE__POLL_INTERVAL", "60s")]),
    )
    .await;
    // Give the intake's first pass (at start) time to end, so it cannot be what finds
    // the row below.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    produce(&listening, 0, 1);
    within(
        Duration::from_secs(10),
        "the committed row sent",
        || async { count(&listening, "state = 'succeeded'") == 1 },
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(30));
    listening.stop().await;
    // Poll-only (PgBouncer in transaction mode): found by the poll.
    let polling = start_daemon_on(
        &db.another(),
        &fast(
            &sim,
            &[
                ("HUBSPOT_OUTBOX__DATABASE__LISTEN", "false"),
                ("HUBSPOT_OUTBOX__DATABASE__POLL_INTERVAL", "200ms"),
            ],
        ),
    )
    .await;
    produce(&polling, 1, 1);
    within(
        Duration::from_secs(10),
        "the committed row sent",
        || async { count(&polling, "state = 'succeeded'") == 1 },
    )
    .await;
    polling.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_operator_commands_work_on_a_postgresql_outbox() {
    let Some(db) = Backend::postgres() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cli = |args: &[&str]| {
        let out = common::daemon_command(dir.path(), args)
            .envs(db.env())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let migrated = cli(&["migrate", "--json"]);
    assert!(migrated.contains("\"upToDate\":true"), "{migrated}");
    assert!(!migrated.contains("password"), "{migrated}");
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    produce(&d, 0, 2);
    d.sql(
        r#"INSERT INTO outbox (trace_id, object_type, properties)
           VALUES ('bad', 'contacts', '{"x": null}')"#,
    );
    within(Duration::from_secs(10), "all settled", || async {
        count(&d, "state IN ('succeeded', 'failed')") == 3
    })
    .await;
    let status = cli(&["status", "--json"]);
    assert!(status.contains("\"succeeded\""), "{status}");
    let failed = cli(&["failed", "--json"]);
    assert!(
        failed.contains("\"objectWriteTraceId\":\"bad\"") && failed.contains("properties.x"),
        "{failed}"
    );
    let shown = cli(&["show", "c-0", "--json"]);
    assert!(shown.contains("\"state\":\"succeeded\""), "{shown}");
    cli(&["discard", "bad"]);
    assert_eq!(
        d.sql("SELECT state FROM outbox WHERE trace_id = 'bad'"),
        "discarded"
    );
    d.stop().await;
}
