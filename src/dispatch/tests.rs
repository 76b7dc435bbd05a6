//! [`Dispatcher::tick`] against a real outbox, a scripted HubSpot and a clock moved
//! by hand: what is sent, when, and what becomes of the rows, with no sleep anywhere. A
//! test shows that nothing is sent by ticking at the moment it must not be, not by waiting
//! to see whether something happens.
//!
//! Those about what is sent run on both backends. Those whose point is *when* it may
//! leave (a 429's or 401's pause, the window's slots, the daily limit, probes at growing
//! intervals, a retry's back-off) run on SQLite only, and must: on PostgreSQL the rate budget that
//! several daemons share is kept by the database's clock (`store::postgres::claim`),
//! which a hand-moved clock cannot move, so a request waits there for real time the
//! test never lets pass. What they check of the rows (what a 429, 401 or an unanswered
//! request does to them, the daily count kept in the database) runs on both backends
//! against the simulator in real time in `tests/dispatch.rs`, and the shared budget's
//! limit in `tests/fleet.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::{Notify, Semaphore};

use super::clock::ManualClock;
use super::dispatcher::CLAIM_AHEAD;
use super::limiter::SKEW_MARGIN;
use super::sender::{BatchSender, Request, Sent};
use super::{Dispatcher, Tick};
use crate::config::{Config, MapEnv};
use crate::hubspot::wire::RateHeaders;
use crate::runtime::metrics::Metrics;
use crate::store::Store;
use crate::store::ingest::RowToStore;
use crate::store::read::StoredWrite;

/// What the scripted HubSpot does with the next request.
enum Reply {
    /// 201 with a result for every input, each echoing its trace id.
    CreateAll,
    /// This status and JSON body.
    Status(u16, Value),
    /// No answer at all (a transport error with this text).
    NoAnswer(&'static str),
    /// The connection could not be made.
    NotSent(&'static str),
}

/// A HubSpot that answers from a script, one reply per request, and records the requests.
#[derive(Clone, Default)]
struct Scripted(Arc<ScriptState>);

#[derive(Default)]
struct ScriptState {
    /// How many requests have arrived, for tests that wait for one in flight.
    arrived: tokio::sync::watch::Sender<usize>,
    replies: Mutex<VecDeque<Reply>>,
    /// `(object type, inputs)` per request, in the order they came.
    requests: Mutex<Vec<(String, usize)>>,
    /// When set, a request waits for one permit before it is answered.
    gate: Mutex<Option<Arc<Semaphore>>>,
    /// Answers to properties-API calls, in order; `calls` records them as "GET url".
    property_replies: Mutex<VecDeque<(u16, Value)>>,
    calls: Mutex<Vec<String>>,
    /// Every create input sent, in order.
    inputs: Mutex<Vec<Value>>,
}

impl Scripted {
    fn then(&self, reply: Reply) -> &Self {
        self.0.replies.lock().unwrap().push_back(reply);
        self
    }

    /// The next properties-API call gets this answer.
    fn then_property(&self, status: u16, body: Value) -> &Self {
        self.0
            .property_replies
            .lock()
            .unwrap()
            .push_back((status, body));
        self
    }

    /// Properties-API calls so far, as "GET url" or "POST url".
    fn calls(&self) -> Vec<String> {
        self.0.calls.lock().unwrap().clone()
    }

    /// Every create input sent so far.
    fn inputs(&self) -> Vec<Value> {
        self.0.inputs.lock().unwrap().clone()
    }

    fn requests(&self) -> Vec<(String, usize)> {
        self.0.requests.lock().unwrap().clone()
    }

    /// Waits until `n` requests have arrived (a launched batch runs on its own task).
    async fn arrived(&self, n: usize) {
        let mut arrived = self.0.arrived.subscribe();
        arrived.wait_for(|count| *count >= n).await.unwrap();
    }

    /// From now on, each request waits until the returned semaphore gets a permit.
    fn hold(&self) -> Arc<Semaphore> {
        let gate = Arc::new(Semaphore::new(0));
        *self.0.gate.lock().unwrap() = Some(gate.clone());
        gate
    }
}

impl BatchSender for Scripted {
    async fn send(&self, request: Request) -> Sent {
        let Some((head, _)) = request.url.split_once("/batch/create") else {
            let method = if request.body.is_some() {
                "POST"
            } else {
                "GET"
            };
            self.0
                .calls
                .lock()
                .unwrap()
                .push(format!("{method} {}", request.url));
            let (status, body) = self
                .0
                .property_replies
                .lock()
                .unwrap()
                .pop_front()
                .expect("the script has a reply for every properties call");
            return Sent::Answered {
                status,
                retry_after: None,
                rate: RateHeaders::default(),
                body: Bytes::from(body.to_string()),
                duration: Duration::from_millis(5),
            };
        };
        let object_type = head.rsplit('/').next().unwrap();
        let body = request.body.expect("a batch create has a body");
        let inputs: Vec<Value> = serde_json::from_slice::<Value>(&body).unwrap()["inputs"]
            .as_array()
            .unwrap()
            .clone();
        self.0
            .requests
            .lock()
            .unwrap()
            .push((object_type.to_owned(), inputs.len()));
        self.0.inputs.lock().unwrap().extend(inputs.iter().cloned());
        self.0.arrived.send_modify(|n| *n += 1);
        let gate = self.0.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        let reply = self.0.replies.lock().unwrap().pop_front();
        let (status, body) = match reply.expect("the script has a reply for every request") {
            Reply::NoAnswer(error) => {
                return Sent::NoAnswer {
                    error: error.into(),
                    duration: Duration::from_millis(5),
                };
            }
            Reply::NotSent(error) => {
                return Sent::NotSent {
                    error: error.into(),
                    duration: Duration::from_millis(1),
                };
            }
            Reply::Status(status, body) => (status, body),
            Reply::CreateAll => {
                let results: Vec<Value> = inputs
                    .iter()
                    .enumerate()
                    .map(|(i, input)| {
                        json!({"id": (1000 + i).to_string(), "properties": input["properties"],
                               "objectWriteTraceId": input["objectWriteTraceId"]})
                    })
                    .collect();
                (201, json!({"status": "COMPLETE", "results": results}))
            }
        };
        Sent::Answered {
            status,
            retry_after: None,
            rate: RateHeaders::default(),
            body: Bytes::from(body.to_string()),
            duration: Duration::from_millis(5),
        }
    }
}

/// A dispatcher on a fresh outbox holding `rows` contacts, its clock a second after they
/// were stored (so they are due and have lingered).
/// Where a test's outbox lives (see `tests/common/pg.rs`, shared with the integration
/// tests, for the PostgreSQL server the test binary starts).
#[derive(Clone)]
enum Backend {
    Sqlite,
    Postgres(String),
}

#[path = "../../tests/common/pg.rs"]
#[allow(dead_code)]
mod pg;

/// Declares each test as `name::sqlite` and `name::postgres` (skipped, saying so, where
/// PostgreSQL is not installed), the body handed the [`Backend`].
macro_rules! on_both_backends {
    ($($(#[$meta:meta])* async fn $name:ident($db:ident) $body:block)*) => {$(
        $(#[$meta])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn run($db: Backend) $body

            #[tokio::test]
            async fn sqlite() {
                run(Backend::Sqlite).await
            }

            #[tokio::test]
            async fn postgres() {
                if let Some(url) = pg::fresh_database() {
                    run(Backend::Postgres(url)).await
                }
            }
        }
    )*};
}

struct Harness {
    _dir: TempDir,
    /// The settings every dispatcher of this test starts from (home, database).
    base: Vec<(String, String)>,
    store: Store,
    clock: Arc<ManualClock>,
    hubspot: Scripted,
    dispatcher: Dispatcher<Scripted>,
}

impl Harness {
    async fn new(backend: &Backend, rows: usize, settings: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // No trace property unless a test asks for one: it costs properties calls.
        let mut base = vec![
            ("HOME".to_owned(), dir.path().display().to_string()),
            (
                "HUBSPOT_OUTBOX__HUBSPOT__TRACE_PROPERTY".to_owned(),
                String::new(),
            ),
        ];
        if let Backend::Postgres(url) = backend {
            base.push(("HUBSPOT_OUTBOX__DATABASE__URL".to_owned(), url.clone()));
        }
        let config = Self::config(&base, settings);
        let store = match &config.database.url {
            Some(url) => Store::connect(url.expose(), 4, crate::store::Role::Daemon)
                .await
                .unwrap(),
            None => {
                std::fs::create_dir_all(config.database.path.parent().unwrap()).unwrap();
                Store::open(&config.database.path, config.database.busy_timeout)
                    .await
                    .unwrap()
            }
        };
        let mut tx = store.begin_ingest().await.unwrap();
        let stored: Vec<RowToStore> = (0..rows)
            .map(|i| RowToStore {
                trace_id: format!("t-{i}"),
                object_type: "contacts".into(),
                operation: "create".into(),
                id_property: None,
                record_key: None,
                order_key: None,
                properties: format!(r#"{{"firstname":"n{i}"}}"#),
                associations: "[]".into(),
                references: false,
            })
            .collect();
        tx.insert_validated(&stored).await.unwrap();
        tx.commit().await.unwrap();
        let clock = Arc::new(ManualClock::new(
            chrono::Utc::now() + chrono::Duration::seconds(1),
        ));
        let hubspot = Scripted::default();
        let dispatcher = Self::dispatcher(&store, config, &hubspot, &clock);
        Self {
            _dir: dir,
            base,
            store,
            clock,
            hubspot,
            dispatcher,
        }
    }

    /// The config of `base` with `settings` on top.
    fn config(base: &[(String, String)], settings: &[(&str, &str)]) -> Config {
        let mut env: Vec<(&str, &str)> =
            base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.extend_from_slice(settings);
        Config::load(None, &MapEnv::new(&env)).unwrap()
    }

    fn dispatcher(
        store: &Store,
        config: Config,
        hubspot: &Scripted,
        clock: &Arc<ManualClock>,
    ) -> Dispatcher<Scripted> {
        Dispatcher::with_clock(
            store.clone(),
            Arc::new(config),
            hubspot.clone(),
            Arc::new(Notify::new()),
            Arc::new(Metrics::default()),
            clock.clone(),
            || 0.5,
        )
    }

    /// One tick, then wait for the batch it launched (if any) to be settled.
    async fn tick(&self) -> Tick {
        let tick = self.dispatcher.tick().await.unwrap();
        self.dispatcher.settled().await;
        tick
    }

    async fn rows(&self, state: &str) -> Vec<StoredWrite> {
        self.store
            .list_writes(Some(state), None, 1000)
            .await
            .unwrap()
    }
}

fn idle(tick: Tick) -> Duration {
    match tick {
        Tick::Idle(wait) => wait,
        other => panic!("expected an idle tick, got {other:?}"),
    }
}

#[tokio::test]
async fn a_429_pause_holds_sending_until_the_clock_passes_it() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let h = Harness::new(&db, 4, &[("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "2")]).await;
    h.hubspot
        .then(Reply::Status(
            429,
            json!({"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                   "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}),
        ))
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert_eq!(h.rows("pending").await.len(), 4, "a 429 requeues the batch");
    assert!(
        h.rows("pending").await.iter().all(|r| r.attempts == 0),
        "and counts no attempt"
    );

    // The default window is 10 s: nothing goes before it has passed.
    let wait = idle(h.tick().await);
    assert_eq!(wait, Duration::from_secs(10));
    h.clock.advance(Duration::from_millis(9_900));
    assert_eq!(idle(h.tick().await), Duration::from_millis(100));
    assert_eq!(h.hubspot.requests().len(), 1);

    h.clock.advance(Duration::from_millis(100));
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert_eq!(h.hubspot.requests().len(), 2);
    assert_eq!(h.rows("succeeded").await.len(), 2);
}

#[tokio::test]
async fn a_401_pause_admits_one_probe_at_a_time() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let h = Harness::new(&db, 6, &[]).await;
    h.hubspot
        .then(Reply::Status(
            401,
            json!({"status": "error", "message": "Authentication credentials not found.",
                   "category": "INVALID_AUTHENTICATION"}),
        ))
        .then(Reply::CreateAll)
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(6));
    assert_eq!(h.rows("pending").await.len(), 6, "a 401 fails nothing");

    // Nothing goes until the probe interval (60 s by default) has passed...
    assert_eq!(idle(h.tick().await), Duration::from_secs(60));
    h.clock.advance(Duration::from_secs(60));
    // ...then one probe of one row, whose answer is held back.
    let gate = h.hubspot.hold();
    assert_eq!(h.dispatcher.tick().await.unwrap(), Tick::Sent(1));
    h.hubspot.arrived(2).await;
    // While it is out, no second probe goes, however much time passes.
    assert_eq!(
        idle(h.dispatcher.tick().await.unwrap()),
        Duration::from_secs(60)
    );
    h.clock.advance(Duration::from_secs(30));
    assert_eq!(
        idle(h.dispatcher.tick().await.unwrap()),
        Duration::from_secs(30)
    );
    assert_eq!(h.hubspot.requests().len(), 2);

    // The probe succeeds: the token works again and the rest goes at once.
    gate.add_permits(2);
    h.dispatcher.settled().await;
    assert_eq!(h.rows("succeeded").await.len(), 1);
    h.clock.advance(Duration::from_millis(200));
    assert_eq!(h.tick().await, Tick::Sent(5));
    assert_eq!(
        h.hubspot.requests(),
        [
            ("contacts".to_owned(), 6),
            ("contacts".to_owned(), 1),
            ("contacts".to_owned(), 5)
        ]
    );
    assert_eq!(h.rows("succeeded").await.len(), 6);
    assert!(h.store.pauses().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_claimed_batch_is_settled_even_when_the_sender_fails() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let h = Harness::new(
        &db,
        5,
        &[
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "3"),
            ("HUBSPOT_OUTBOX__RETRY__ON_AMBIGUOUS", "resend"),
        ],
    )
    .await;
    h.hubspot
        .then(Reply::NoAnswer(
            "timed out: error sending request: operation timed out",
        ))
        .then(Reply::Status(
            503,
            json!({"status": "error", "message": "Service Unavailable"}),
        ));
    assert_eq!(h.tick().await, Tick::Sent(3));
    assert!(h.rows("in_flight").await.is_empty());
    // Departures are at least interval / 2n apart (50 ms at 100 per 10 s).
    h.clock.advance(Duration::from_millis(200));
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert!(h.rows("in_flight").await.is_empty());
    let pending = h.rows("pending").await;
    assert_eq!(pending.len(), 5, "resent later, nothing failed or lost");
    assert!(pending.iter().all(|r| r.attempts == 1));
    let errors: Vec<&str> = pending
        .iter()
        .map(|r| r.last_error.as_deref().unwrap())
        .collect();
    assert_eq!(
        errors
            .iter()
            .filter(|e| e.starts_with("no answer") && e.contains("timed out"))
            .count(),
        3,
        "{errors:?}"
    );
    assert_eq!(
        errors.iter().filter(|e| e.starts_with("HTTP 503")).count(),
        2,
        "{errors:?}"
    );
    // The retries wait out their back-off (2 s, half of it jittered) on the clock.
    assert!(matches!(h.tick().await, Tick::Idle(_)));
    assert_eq!(h.hubspot.requests().len(), 2);
}

on_both_backends! {
async fn held_writes_are_never_resent_however_long_the_daemon_runs(db) {
    let h = Harness::new(
        &db,3, &[("HUBSPOT_OUTBOX__RETRY__ON_AMBIGUOUS", "hold")]).await;
    h.hubspot.then(Reply::Status(
        500,
        json!({"status": "error", "message": "internal error"}),
    ));
    assert_eq!(h.tick().await, Tick::Sent(3));
    assert_eq!(h.rows("unconfirmed").await.len(), 3);
    for _ in 0..5 {
        h.clock.advance(Duration::from_secs(3600));
        assert!(matches!(h.tick().await, Tick::Idle(_)));
    }
    assert_eq!(h.hubspot.requests().len(), 1);
}
}

#[tokio::test]
async fn the_daily_limit_stops_sending_and_a_new_dispatcher_on_the_same_day_keeps_its_count() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let settings = [
        ("HUBSPOT_OUTBOX__RATE_LIMIT__DAILY_LIMIT", "3"),
        ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "1"),
    ];
    let h = Harness::new(&db, 6, &settings).await;
    for _ in 0..3 {
        h.hubspot.then(Reply::CreateAll);
    }
    for _ in 0..3 {
        assert_eq!(h.tick().await, Tick::Sent(1));
        // Departures at least 50 ms apart at the default 100 per 10 s.
        h.clock.advance(Duration::from_millis(200));
    }
    let wait = idle(h.tick().await);
    assert!(wait > Duration::ZERO && wait <= Duration::from_secs(86_400));
    assert_eq!(
        h.store.pauses().await.unwrap()[0].kind,
        "daily_limit",
        "operators see why"
    );

    // A restart: a new dispatcher reads the day's count from the database.
    let config = Harness::config(&h.base, &settings);
    let restarted = Harness::dispatcher(&h.store, config, &h.hubspot, &h.clock);
    assert!(matches!(restarted.tick().await.unwrap(), Tick::Idle(_)));
    assert_eq!(h.hubspot.requests().len(), 3);
    assert_eq!(h.rows("pending").await.len(), 3);
}

#[tokio::test]
async fn a_full_window_waits_and_the_next_batch_is_claimed_ahead_and_leaves_at_its_slot() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let h = Harness::new(
        &db,
        5,
        &[
            ("HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL", "2"),
            ("HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL", "1s"),
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "1"),
        ],
    )
    .await;
    for _ in 0..5 {
        h.hubspot.then(Reply::CreateAll);
    }
    // Two requests fill the window, a quarter of it apart (1 s / 2n).
    assert_eq!(h.tick().await, Tick::Sent(1));
    assert_eq!(
        idle(h.tick().await),
        Duration::from_millis(250) - CLAIM_AHEAD
    );
    h.clock.advance(Duration::from_millis(250));
    assert_eq!(h.tick().await, Tick::Sent(1));
    // The third may leave when the first leaves the window (1 s + the skew margin); it
    // is claimed CLAIM_AHEAD before that.
    let slot = Duration::from_secs(1) + SKEW_MARGIN;
    let now = Duration::from_millis(250);
    assert_eq!(idle(h.tick().await), slot - now - CLAIM_AHEAD);
    h.clock.advance(slot - now - CLAIM_AHEAD);
    assert_eq!(h.dispatcher.tick().await.unwrap(), Tick::Sent(1));
    assert_eq!(h.rows("in_flight").await.len(), 1, "claimed ahead");
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        h.hubspot.requests().len(),
        2,
        "but not sent before its slot"
    );
    h.clock.advance(CLAIM_AHEAD);
    h.hubspot.arrived(3).await;
    h.dispatcher.settled().await;
    assert_eq!(h.rows("succeeded").await.len(), 3);
}

#[tokio::test]
async fn an_unreachable_hubspot_stops_sending_and_single_probes_go_at_growing_intervals() {
    // SQLite only: see the module's doc.
    let db = Backend::Sqlite;
    let h = Harness::new(
        &db,
        6,
        &[
            ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "2"),
            ("HUBSPOT_OUTBOX__RETRY__UNREACHABLE_AFTER", "2"),
            ("HUBSPOT_OUTBOX__RETRY__MAX_PROBE_INTERVAL", "4s"),
        ],
    )
    .await;
    let refused = "could not connect: error sending request: connection refused";
    h.hubspot
        .then(Reply::NotSent(refused))
        .then(Reply::NotSent(refused))
        .then(Reply::NotSent(refused))
        .then(Reply::Status(
            503,
            json!({"message": "Service Unavailable"}),
        ))
        .then(Reply::CreateAll)
        .then(Reply::CreateAll)
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(2));
    h.clock.advance(Duration::from_millis(100));
    assert_eq!(h.tick().await, Tick::Sent(2));
    // Two requests in a row could not connect: sending stops, and operators see why.
    let pauses = h.store.pauses().await.unwrap();
    assert_eq!(
        (pauses[0].scope.as_str(), pauses[0].kind.as_str()),
        ("hubspot", "unreachable")
    );
    assert!(
        pauses[0].reason.starts_with("HubSpot unreachable since "),
        "{}",
        pauses[0].reason
    );
    assert!(pauses[0].reason.ends_with(refused), "{}", pauses[0].reason);
    let pending = h.rows("pending").await;
    assert_eq!(pending.len(), 6);
    assert!(
        pending.iter().all(|r| r.attempts == 0),
        "never sent: no attempt"
    );

    // One single-write probe after 1 s, then after 2 s, 4 s, 4 s...
    let mut gaps = Vec::new();
    for _ in 0..3 {
        let wait = idle(h.tick().await);
        gaps.push(wait);
        h.clock.advance(wait);
        assert_eq!(h.tick().await, Tick::Sent(1));
    }
    assert_eq!(gaps, [1, 2, 4].map(Duration::from_secs));
    // Five requests: two refused batches, then a refused, a 503 and a good probe.
    assert_eq!(h.hubspot.requests().len(), 5);
    // The third probe succeeded: the pause is lifted and the rest goes at once.
    assert!(h.store.pauses().await.unwrap().is_empty());
    h.clock.advance(Duration::from_millis(100));
    assert_eq!(h.tick().await, Tick::Sent(2));
    h.clock.advance(Duration::from_millis(100));
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert_eq!(h.rows("succeeded").await.len(), 5);
    assert!(h.rows("failed").await.is_empty());
}

const TRACE: (&str, &str) = (
    "HUBSPOT_OUTBOX__HUBSPOT__TRACE_PROPERTY",
    "hubspot_outbox_trace_id",
);

on_both_backends! {
async fn the_trace_property_is_checked_once_and_every_create_carries_it(db) {
    let h = Harness::new(
        &db,4, &[TRACE, ("HUBSPOT_OUTBOX__BATCHING__MAX_SIZE", "2")]).await;
    h.clock.auto_advance();
    h.hubspot
        .then_property(
            200,
            json!({"name": "hubspot_outbox_trace_id", "hasUniqueValue": true}),
        )
        .then(Reply::CreateAll)
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(2));
    h.clock.advance(Duration::from_millis(200));
    assert_eq!(h.tick().await, Tick::Sent(2));
    let calls = h.hubspot.calls();
    assert_eq!(calls.len(), 1, "checked once: {calls:?}");
    assert!(
        calls[0].starts_with("GET ")
            && calls[0].ends_with("/crm/v3/properties/contacts/hubspot_outbox_trace_id")
    );
    for input in h.hubspot.inputs() {
        assert_eq!(
            input["properties"]["hubspot_outbox_trace_id"], input["objectWriteTraceId"],
            "{input}"
        );
    }
    let states = h.store.trace_states().await.unwrap();
    assert_eq!(
        (states[0].object_type.as_str(), states[0].state.as_str()),
        ("contacts", "ready")
    );
}
}

on_both_backends! {
async fn a_missing_trace_property_is_created_in_the_types_information_group(db) {
    let h = Harness::new(
        &db,2, &[TRACE]).await;
    h.clock.auto_advance();
    h.hubspot
        .then_property(404, json!({"message": "Unable to find property"}))
        .then_property(
            200,
            json!({"results": [{"name": "analytics"}, {"name": "contactinformation"}]}),
        )
        .then_property(
            201,
            json!({"name": "hubspot_outbox_trace_id", "hasUniqueValue": true}),
        )
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(2));
    let calls: Vec<String> = h
        .hubspot
        .calls()
        .iter()
        .map(|c| c.split_once("/crm").unwrap().1.to_owned())
        .collect();
    assert_eq!(
        calls,
        [
            "/v3/properties/contacts/hubspot_outbox_trace_id",
            "/v3/properties/contacts/groups",
            "/v3/properties/contacts"
        ]
    );
    assert!(h.hubspot.calls()[2].starts_with("POST "));
    assert!(
        h.hubspot
            .inputs()
            .iter()
            .all(|i| i["properties"]["hubspot_outbox_trace_id"].is_string())
    );
}
}

on_both_backends! {
async fn a_trace_property_that_cannot_be_created_leaves_the_type_without_it_and_says_why(db) {
    let h = Harness::new(
        &db,2, &[TRACE]).await;
    h.clock.auto_advance();
    h.hubspot
        .then_property(404, json!({"message": "Unable to find property"}))
        .then_property(200, json!({"results": [{"name": "contactinformation"}]}))
        .then_property(
            403,
            json!({"category": "MISSING_SCOPES", "message": "missing scopes"}),
        )
        .then(Reply::CreateAll);
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert!(
        h.hubspot
            .inputs()
            .iter()
            .all(|i| i["properties"].get("hubspot_outbox_trace_id").is_none())
    );
    let states = h.store.trace_states().await.unwrap();
    assert_eq!(states[0].state, "unavailable");
    let reason = states[0].reason.as_deref().unwrap();
    assert!(reason.contains("crm.schemas.contacts.write"), "{reason}");
    assert_eq!(h.rows("succeeded").await.len(), 2);
}
}

on_both_backends! {
async fn a_type_whose_trace_property_cannot_be_checked_waits_and_is_checked_again(db) {
    let h = Harness::new(
        &db,2, &[TRACE]).await;
    h.clock.auto_advance();
    h.hubspot
        .then_property(503, json!({"message": "Service Unavailable"}))
        .then_property(
            200,
            json!({"name": "hubspot_outbox_trace_id", "hasUniqueValue": true}),
        )
        .then(Reply::CreateAll);
    assert!(matches!(h.tick().await, Tick::Idle(_)));
    assert!(
        h.hubspot.requests().is_empty(),
        "nothing sent without knowing"
    );
    // A 5xx is HubSpot failing, not an answer: asked again a second later (the circuit
    // breaker spaces the checks further once several in a row have failed).
    assert!(matches!(h.tick().await, Tick::Idle(_)));
    assert_eq!(
        h.hubspot.calls().len(),
        1,
        "not asked again within the second"
    );
    h.clock.advance(Duration::from_secs(1));
    assert_eq!(h.tick().await, Tick::Sent(2));
    assert_eq!(h.hubspot.calls().len(), 2);
}
}
