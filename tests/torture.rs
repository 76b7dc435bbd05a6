//! The torture test of issue 9: the real binary against the simulator with every fault on
//! (503s before creating, 500s after creating, answers that never come, connections
//! dropped after creating, latency spikes, 429s past the limit, 207s for bad inputs, 409s
//! for taken emails), producers on the socket and in SQL that retry a failed enqueue with
//! the same trace ids, SIGKILLs at random moments and a SIGTERM at the end. Then, write by
//! write against the simulator's records: every acknowledged write is `succeeded` with the
//! id of the record HubSpot holds for it, or `failed`/`unconfirmed` with its error; none is
//! lost; no record is created twice. On both backends (the SQL producer inserts through
//! its own connection to the SQLite file or the PostgreSQL database).
//!
//! The short mode (default) runs in CI: 1,800 writes and 4 kills, batches of 10. The long
//! mode runs on demand: `TORTURE_LONG=1 cargo test --release --test torture -- --nocapture`
//! (25,200 writes, 25 kills, batches of 50); its summary line goes in BENCHMARKS.md.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Backend, Daemon, Shell};
use hubspot_outbox::operator::client::SocketClient;
use hubspot_outbox::simulator::{SimFaults, SimOptions};
use rand::Rng;
use serde_json::{Value, json};
use sqlx::sqlite::SqliteConnectOptions;
use tokio_util::sync::CancellationToken;

const TRACE_PROPERTY: &str = "hubspot_outbox_trace_id";

struct Mode {
    socket_producers: usize,
    sql_producers: usize,
    writes_per_producer: usize,
    kills: usize,
    /// Between kills, a random pause up to this.
    kill_every: Duration,
    /// `batching.max_size`: small batches make more requests, so more faults per write.
    batch: usize,
    /// Requests per second the simulator takes (the daemon starts at 1.5 times that).
    sim_rate: u32,
}

fn mode() -> Mode {
    if std::env::var_os("TORTURE_LONG").is_some() {
        Mode {
            socket_producers: 4,
            sql_producers: 2,
            writes_per_producer: 4_200,
            kills: 25,
            kill_every: Duration::from_secs(4),
            batch: 50,
            sim_rate: 40,
        }
    } else {
        Mode {
            socket_producers: 2,
            sql_producers: 1,
            writes_per_producer: 600,
            kills: 4,
            kill_every: Duration::from_millis(2500),
            batch: 10,
            sim_rate: 20,
        }
    }
}

/// The faults in force while the producers and the killer run.
fn faults(latency: Duration) -> SimFaults {
    SimFaults {
        fail_rate: 0.05,
        fail_after_create_rate: 0.04,
        hang_after_create_rate: 0.02,
        close_after_create_rate: 0.04,
        rate_limited_rate: 0.03,
        latency,
        ..Default::default()
    }
}

/// One write a producer hands over, and what it should become.
#[derive(Clone)]
struct Planned {
    trace_id: String,
    object_type: &'static str,
    properties: BTreeMap<String, String>,
    /// HubSpot refuses it (an unknown property): it must end `failed`.
    invalid: bool,
}

impl Planned {
    fn json(&self) -> Value {
        json!({"objectType": self.object_type, "properties": self.properties,
               "objectWriteTraceId": self.trace_id})
    }
}

/// Producer `p`'s writes: mostly contacts (unique emails, a few taken by an earlier write:
/// 409s), deals and companies (only the trace property keeps them single), and a few with
/// a property HubSpot does not know (a 207 names them).
fn plan(p: usize, n: usize) -> Vec<Planned> {
    let mut rng = rand::rng();
    (0..n)
        .map(|i| {
            let trace_id = format!("p{p}-{i}");
            let roll: f64 = rng.random();
            let (object_type, mut properties, invalid) = if roll < 0.55 {
                let email = format!("p{p}-{i}@example.com");
                ("contacts", BTreeMap::from([("email".into(), email)]), false)
            } else if roll < 0.60 && i > 0 {
                // An email an earlier write of this producer has: a conflict to resolve.
                let email = format!("p{p}-{}@example.com", rng.random_range(0..i));
                ("contacts", BTreeMap::from([("email".into(), email)]), false)
            } else if roll < 0.80 {
                let name = format!("deal {p}-{i}");
                ("deals", BTreeMap::from([("dealname".into(), name)]), false)
            } else if roll < 0.95 {
                let name = format!("company {p}-{i}");
                ("companies", BTreeMap::from([("name".into(), name)]), false)
            } else {
                let name = format!("bad {p}-{i}");
                ("deals", BTreeMap::from([("dealname".into(), name)]), true)
            };
            if invalid {
                properties.insert("unknown_property".into(), "x".into());
            }
            Planned {
                trace_id,
                object_type,
                properties,
                invalid,
            }
        })
        .collect()
}

/// What the producers were told was stored: trace id -> the write.
type Acked = Arc<Mutex<HashMap<String, Planned>>>;

/// A socket producer: requests of 1 to 20 writes; a request that fails in any way (no
/// daemon, a 503, a connection dropped by a kill) is sent again, same trace ids, until
/// it is answered 202.
async fn socket_producer(socket: PathBuf, writes: Vec<Planned>, acked: Acked) -> usize {
    let mut retries = 0;
    let mut rest = &writes[..];
    while !rest.is_empty() {
        let k = rand::rng().random_range(1..=20).min(rest.len());
        let (chunk, tail) = rest.split_at(k);
        let body = Value::Array(chunk.iter().map(Planned::json).collect()).to_string();
        loop {
            let answer = match SocketClient::connect(&socket).await {
                Ok(mut c) => c.post_json(body.clone()).await.ok(),
                Err(_) => None,
            };
            match answer.map(|a| (a.status.as_u16(), a)) {
                Some((202, _)) => break,
                Some((status @ (503 | 507), _)) => {
                    let _ = status;
                }
                Some((status, a)) => panic!(
                    "a valid request was answered {status}: {}",
                    String::from_utf8_lossy(&a.body)
                ),
                None => {}
            }
            retries += 1;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        {
            let mut acked = acked.lock().unwrap();
            for w in chunk {
                acked.insert(w.trace_id.clone(), w.clone());
            }
        }
        rest = tail;
        let pause = rand::rng().random_range(0..200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    retries
}

/// A SQL producer: one INSERT per write, with a busy timeout, retried on any error; a
/// `UNIQUE` refusal of its own trace id means an earlier try was stored.
async fn sql_producer(db: Shell, writes: Vec<Planned>, acked: Acked) -> usize {
    enum Pool {
        Sqlite(sqlx::SqlitePool),
        Postgres(sqlx::PgPool),
    }
    let pool = match &db.backend {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::new()
                .filename(&db.path)
                .busy_timeout(Duration::from_secs(5));
            let pool = sqlx::sqlite::SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            Pool::Sqlite(pool)
        }
        Backend::Postgres(url) => Pool::Postgres(
            sqlx::postgres::PgPoolOptions::new()
                .max_connections(1)
                .connect(url)
                .await
                .unwrap(),
        ),
    };
    let mut retries = 0;
    for w in writes {
        let properties = serde_json::to_string(&w.properties).unwrap();
        loop {
            let inserted = match &pool {
                Pool::Sqlite(pool) => sqlx::query(
                    "INSERT INTO outbox (trace_id, object_type, properties) VALUES (?, ?, ?)",
                )
                .bind(&w.trace_id)
                .bind(w.object_type)
                .bind(&properties)
                .execute(pool)
                .await
                .map(drop),
                Pool::Postgres(pool) => sqlx::query(
                    "INSERT INTO outbox (trace_id, object_type, properties) VALUES ($1, $2, $3::jsonb)",
                )
                .bind(&w.trace_id)
                .bind(w.object_type)
                .bind(&properties)
                .execute(pool)
                .await
                .map(drop),
            };
            match inserted {
                Ok(()) => break,
                // An earlier try was stored (SQLite says `UNIQUE`, PostgreSQL `unique
                // constraint`).
                Err(e)
                    if e.to_string().contains("UNIQUE")
                        || e.to_string().contains("unique constraint") =>
                {
                    break;
                }
                Err(_) => {
                    retries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        acked.lock().unwrap().insert(w.trace_id.clone(), w);
        let pause = rand::rng().random_range(0..20);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    match pool {
        Pool::Sqlite(pool) => pool.close().await,
        Pool::Postgres(pool) => pool.close().await,
    }
    retries
}

async fn sim_get(url: &str, path: &str) -> Value {
    let body = reqwest::get(format!("{url}{path}"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    serde_json::from_slice(&body).unwrap()
}

async fn set_faults(url: &str, faults: &SimFaults) {
    reqwest::Client::new()
        .post(format!("{url}/_sim/faults"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(faults).unwrap())
        .send()
        .await
        .unwrap();
}

fn unsettled(db: &Shell) -> usize {
    let out = db.output("SELECT count(*) FROM outbox WHERE state IN ('pending', 'in_flight')");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(usize::MAX)
}

/// Each row: trace id, state, HubSpot id, last error.
fn rows(db: &Shell) -> HashMap<String, (String, String, String)> {
    let array = match db.backend {
        Backend::Sqlite => "json_array",
        Backend::Postgres(_) => "json_build_array",
    };
    db.lines(&format!(
        "SELECT {array}(trace_id, state, coalesce(hubspot_id, ''), coalesce(last_error, '')) FROM outbox"
    ))
    .iter()
    .map(|l| {
        let v: Vec<String> = serde_json::from_str(l).unwrap();
        (v[0].clone(), (v[1].clone(), v[2].clone(), v[3].clone()))
    })
    .collect()
}

crate::on_both_backends! {
async fn nothing_acknowledged_is_lost_or_created_twice_under_faults_and_kills(backend) {
    let mode = mode();
    let started = Instant::now();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop_sim = CancellationToken::new();
    tokio::spawn(hubspot_outbox::simulator::serve(
        listener,
        SimOptions {
            // Below what the daemon starts with: 429s until it adopts HubSpot's headers,
            // after every restart.
            requests_per_interval: mode.sim_rate,
            interval: Duration::from_secs(1),
            faults: faults(Duration::from_millis(20)),
            ..Default::default()
        },
        stop_sim.clone(),
    ));
    let _stop_sim = stop_sim.drop_guard();

    let dir = tempfile::tempdir().unwrap();
    let daemon_rate = (mode.sim_rate * 3 / 2).to_string();
    let batch = mode.batch.to_string();
    let env: Vec<(&str, &str)> = vec![
        ("HUBSPOT_ACCESS_TOKEN", "sim-token"),
        ("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", url.as_str()),
        ("HUBSPOT_OUTBOX__HUBSPOT__REQUEST_TIMEOUT", "2s"),
        (
            "HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL",
            &daemon_rate,
        ),
        ("HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL", "1s"),
        ("HUBSPOT_OUTBOX__RATE_LIMIT__MAX_IN_FLIGHT", "4"),
        ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", &batch),
        ("HUBSPOT_OUTBOX__BATCHING__LINGER", "20ms"),
        ("HUBSPOT_OUTBOX__RETRY__INITIAL_BACKOFF", "50ms"),
        ("HUBSPOT_OUTBOX__RETRY__MAX_BACKOFF", "500ms"),
        ("HUBSPOT_OUTBOX__RETRY__MAX_PROBE_INTERVAL", "300ms"),
        ("HUBSPOT_OUTBOX__RETRY__MAX_ATTEMPTS", "50"),
        (
            "HUBSPOT_OUTBOX__OBJECTS__CONTACTS__UNIQUE_PROPERTY",
            "email",
        ),
    ];
    let daemon = Daemon::start_on(&backend, dir.path(), &env).await;
    let socket = daemon.socket.clone();
    let database = Shell::new(&backend, &daemon.database);

    // Producers.
    let acked: Acked = Arc::default();
    let mut producers = Vec::new();
    let mut p = 0;
    for _ in 0..mode.socket_producers {
        let writes = plan(p, mode.writes_per_producer);
        producers.push(tokio::spawn(socket_producer(
            socket.clone(),
            writes,
            acked.clone(),
        )));
        p += 1;
    }
    for _ in 0..mode.sql_producers {
        let writes = plan(p, mode.writes_per_producer);
        producers.push(tokio::spawn(sql_producer(
            database.clone(),
            writes,
            acked.clone(),
        )));
        p += 1;
    }

    // Latency spikes: now and then a second of 1.5 s answers (timeouts at 2 s).
    let spikes_stop = CancellationToken::new();
    let spikes = {
        let (url, stop) = (url.clone(), spikes_stop.clone());
        tokio::spawn(async move {
            let mut spikes = 0;
            while !stop.is_cancelled() {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                if rand::rng().random_bool(0.3) {
                    set_faults(&url, &faults(Duration::from_millis(1500))).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    set_faults(&url, &faults(Duration::from_millis(20))).await;
                    spikes += 1;
                }
            }
            spikes
        })
    };

    // The killer: SIGKILL at random moments, restart at once.
    let mut daemon = daemon;
    for _ in 0..mode.kills {
        let pause = rand::rng().random_range(200..mode.kill_every.as_millis() as u64);
        tokio::time::sleep(Duration::from_millis(pause)).await;
        daemon.kill();
        daemon = Daemon::start_on(&backend, dir.path(), &env).await;
    }
    let mut retries = 0;
    for p in producers {
        retries += p.await.unwrap();
    }

    // Every write must settle, the faults still on.
    let deadline = Instant::now() + Duration::from_secs(600);
    while unsettled(&database) > 0 {
        assert!(
            Instant::now() < deadline,
            "{} writes still unsettled; log:\n{}",
            unsettled(&database),
            daemon.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    spikes_stop.cancel();
    let spikes = spikes.await.unwrap();
    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success(), "SIGTERM exit: {status:?}");

    // Write by write, against the simulator's records.
    let acked = acked.lock().unwrap().clone();
    let stored = rows(&database);
    let mut records: HashMap<&str, HashMap<String, Value>> = HashMap::new();
    let mut duplicates = 0;
    let mut strays = 0;
    for object_type in ["contacts", "deals", "companies"] {
        let list = sim_get(&url, &format!("/crm/v3/objects/{object_type}")).await;
        let mut by_trace: HashMap<String, usize> = HashMap::new();
        let mut by_id = HashMap::new();
        for o in list["results"].as_array().unwrap() {
            if let Some(t) = o["properties"][TRACE_PROPERTY].as_str() {
                *by_trace.entry(t.to_owned()).or_default() += 1;
                if !acked.contains_key(t) {
                    strays += 1;
                }
            }
            by_id.insert(o["id"].as_str().unwrap().to_owned(), o.clone());
        }
        duplicates += by_trace
            .values()
            .filter(|n| **n > 1)
            .map(|n| n - 1)
            .sum::<usize>();
        records.insert(object_type, by_id);
    }
    let (mut succeeded, mut failed, mut unconfirmed, mut lost) = (0, 0, 0, 0);
    let mut wrong = Vec::new();
    for (trace, w) in &acked {
        let Some((state, hubspot_id, error)) = stored.get(trace) else {
            lost += 1;
            wrong.push(format!("{trace}: lost"));
            continue;
        };
        match state.as_str() {
            "succeeded" => {
                succeeded += 1;
                let record = records[w.object_type].get(hubspot_id);
                let own = record.is_some_and(|r| {
                    // Its own record (it carries the write's trace id), or, for a taken
                    // email, the record that holds the email.
                    r["properties"][TRACE_PROPERTY] == trace.as_str()
                        || (w.object_type == "contacts"
                            && r["properties"]["email"] == w.properties["email"].as_str())
                });
                if !own || w.invalid {
                    wrong.push(format!("{trace}: succeeded with {hubspot_id}: {record:?}"));
                }
            }
            "failed" | "unconfirmed" => {
                if state == "failed" {
                    failed += 1;
                } else {
                    unconfirmed += 1;
                }
                if error.is_empty() {
                    wrong.push(format!("{trace}: {state} without an error"));
                }
                if state == "failed" && !w.invalid {
                    wrong.push(format!("{trace}: a valid write failed: {error}"));
                }
            }
            other => wrong.push(format!("{trace}: {other}")),
        }
    }
    let stats = sim_get(&url, "/_sim/stats").await;
    let faults: u64 = stats["by_status"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(s, _)| s.as_str() >= "400")
        .map(|(_, n)| n.as_u64().unwrap())
        .chain(
            ["hang_after_create", "close_after_create"]
                .iter()
                .filter_map(|k| stats["calls"][k].as_u64()),
        )
        .sum();
    println!(
        "torture: writes={} kills={} faults={faults} latency_spikes={spikes} enqueue_retries={retries} \
         succeeded={succeeded} failed={failed} unconfirmed={unconfirmed} duplicates={duplicates} \
         stray_records={strays} lost={lost} seconds={} by_status={} calls={}",
        acked.len(),
        mode.kills,
        started.elapsed().as_secs(),
        stats["by_status"],
        stats["calls"]
    );
    assert_eq!(
        acked.len(),
        (mode.socket_producers + mode.sql_producers) * mode.writes_per_producer
    );
    assert_eq!(lost, 0);
    assert_eq!(duplicates, 0);
    assert_eq!(strays, 0);
    assert!(
        wrong.is_empty(),
        "{} wrong, e.g. {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(10)]
    );
    assert!(faults > 0, "the faults were on: {stats}");
}
}
