//! `hubspot-outbox simulate`: a local stand-in for HubSpot's batch create (and batch read,
//! upsert and update, the v4 associations batch create and the properties API), behaving as
//! `shared/hubspot-api.md` describes, for tests, benchmarks and trying the daemon without
//! an account. It checks the Bearer token and the body's schema (100-input cap, string
//! values, `associations` present), enforces a rolling-window and a daily limit with
//! HubSpot's 429 bodies and headers, answers 207 with per-input errors (an unknown
//! property is one whose name starts with `unknown` or is not lowercase), a whole-batch 409
//! for a contact email that exists, shuffles results, and injects faults on demand. It
//! keeps what it created: `GET /crm/v3/objects/{type}` lists it.
//!
//! Control endpoints for tests: `GET /_sim/stats`, `POST /_sim/token {"token"}`,
//! `POST /_sim/faults {...SimFaults}`, `POST /_sim/outage {"refuseFor", "failFor",
//! "hangFor"}` (an outage in phases: connections refused, then 503s, then no answers).
//!
//! This file holds the options, the state and the routes; `create` answers batch create.

mod associate;
mod create;
mod gate;
mod read;
mod record;
mod schema;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::Notify;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Faults that can change while the simulator runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SimFaults {
    /// Share of requests answered 503 before anything is created.
    pub fail_rate: f64,
    /// Share of requests answered 500 after the objects were created (ambiguous).
    pub fail_after_create_rate: f64,
    /// Share of requests that create the objects and then never answer.
    pub hang_after_create_rate: f64,
    /// Share of requests that create the objects and then close the connection.
    pub close_after_create_rate: f64,
    /// Share of requests answered 429 `TEN_SECONDLY_ROLLING` although the window has room:
    /// other apps of the account used the shared budget (HubSpot's limits are per account).
    pub rate_limited_rate: f64,
    /// Added to every request.
    #[serde(with = "humantime_serde")]
    pub latency: Duration,
    /// Answer any invalid input with a whole-batch 400 (as HubSpot does for requests
    /// without trace ids), instead of a 207 naming it.
    pub whole_batch_errors: bool,
    /// Object types the token may not write: 403 `MISSING_SCOPES`.
    pub forbidden_types: Vec<String>,
    /// The token lacks `crm.schemas.*.write`: creating a property answers 403.
    pub schema_write_forbidden: bool,
    /// A conflict on a created (custom) unique property is answered with HubSpot's
    /// whole-batch 400 "already has that value" instead of a 409 "Existing ID".
    pub custom_conflict_400: bool,
}

/// The simulator's settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    pub token: String,
    pub requests_per_interval: u32,
    pub interval: Duration,
    /// 0: no daily limit.
    pub daily_limit: u64,
    /// Whether results carry `objectWriteTraceId` (older HubSpot answers do not).
    pub echo_trace_ids: bool,
    /// Whether answers carry `X-HubSpot-RateLimit-*` headers (HubSpot omits them at times).
    pub rate_headers: bool,
    pub faults: SimFaults,
}

impl Default for SimOptions {
    fn default() -> Self {
        Self {
            token: "sim-token".into(),
            requests_per_interval: 100,
            interval: Duration::from_secs(10),
            daily_limit: 0,
            echo_trace_ids: true,
            rate_headers: true,
            faults: SimFaults::default(),
        }
    }
}

/// One object the simulator created.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SimObject {
    pub id: String,
    pub properties: BTreeMap<String, String>,
    pub object_write_trace_id: Option<String>,
}

/// What the simulator saw, for assertions.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SimStats {
    pub requests: u64,
    pub by_status: BTreeMap<u16, u64>,
    /// The most requests accepted within any rolling interval.
    pub max_in_window: usize,
    pub inputs_created: u64,
    /// Requests by kind beside batch create: `read`, `property_get`, `property_create`,
    /// `groups`; and the faults no status tells: `hang_after_create`, `close_after_create`.
    pub calls: BTreeMap<String, u64>,
}

/// An outage, in phases from the moment it is asked for: connections refused (the
/// listener closed), then every request answered 503 before anything is created, then
/// requests accepted and never answered (nothing created). `POST /_sim/outage`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct SimOutage {
    #[serde(with = "humantime_serde")]
    pub refuse_for: Duration,
    #[serde(with = "humantime_serde")]
    pub fail_for: Duration,
    #[serde(with = "humantime_serde")]
    pub hang_for: Duration,
}

/// Where an outage is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Up,
    Refusing,
    Failing,
    Hanging,
}

pub(crate) struct Sim {
    pub(crate) options: SimOptions,
    pub(crate) token: Mutex<String>,
    pub(crate) faults: Mutex<SimFaults>,
    /// Start times of accepted requests within the current rolling interval.
    pub(crate) window: Mutex<VecDeque<Instant>>,
    pub(crate) daily_used: Mutex<u64>,
    pub(crate) objects: Mutex<HashMap<String, Vec<SimObject>>>,
    /// (object type, unique property, lowercased value) → id, so conflict checks and
    /// reads stay cheap.
    pub(crate) unique_index: Mutex<HashMap<(String, String, String), String>>,
    /// Properties created through the properties API, per object type.
    pub(crate) schema: Mutex<HashMap<String, BTreeMap<String, schema::SimProperty>>>,
    pub(crate) next_id: Mutex<u64>,
    pub(crate) stats: Mutex<SimStats>,
    /// Associations created through the v4 endpoint.
    pub(crate) associations: Mutex<Vec<associate::SimAssociation>>,
    /// The outage in force: when it began, and its phases.
    pub(crate) outage: Mutex<Option<(Instant, SimOutage)>>,
    /// Tells the serving loop to close the listener (an outage that refuses connections).
    pub(crate) refuse: Notify,
}

impl Sim {
    /// Counts a call (or a fault) in `stats.calls`.
    pub(crate) fn count(&self, call: &str) {
        *self
            .stats
            .lock()
            .expect("lock")
            .calls
            .entry(call.to_owned())
            .or_default() += 1;
    }

    /// The phase of the outage at `now`.
    pub(crate) fn phase(&self, now: Instant) -> Phase {
        let Some((start, o)) = self.outage.lock().expect("lock").clone() else {
            return Phase::Up;
        };
        let t = now.saturating_duration_since(start);
        if t < o.refuse_for {
            Phase::Refusing
        } else if t < o.refuse_for + o.fail_for {
            Phase::Failing
        } else if t < o.refuse_for + o.fail_for + o.hang_for {
            Phase::Hanging
        } else {
            Phase::Up
        }
    }

    /// When connections are taken again, if they are refused now.
    fn refusing_until(&self) -> Option<Instant> {
        let (start, o) = self.outage.lock().expect("lock").clone()?;
        let end = start + o.refuse_for;
        (end > Instant::now()).then_some(end)
    }
}

/// The unique property HubSpot defines itself for an object type (contacts: `email`).
fn builtin_unique(object_type: &str) -> Option<&'static str> {
    matches!(object_type, "contacts" | "0-1").then_some("email")
}

impl Sim {
    /// Every property with unique values of an object type: HubSpot's own, then those
    /// created with `hasUniqueValue`.
    pub(crate) fn unique_properties(&self, object_type: &str) -> Vec<String> {
        let mut out: Vec<String> = builtin_unique(object_type)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if let Some(created) = self.schema.lock().expect("lock").get(object_type) {
            out.extend(
                created
                    .values()
                    .filter(|p| p.unique)
                    .map(|p| p.name.clone()),
            );
        }
        out
    }

    /// Whether a property exists for the object type. Every name exists but those the
    /// simulator treats as unknown: starting with `unknown` or holding an uppercase letter,
    /// and the daemon's own `hubspot_outbox*` names until they are created.
    pub(crate) fn property_exists(&self, object_type: &str, name: &str) -> bool {
        if name.starts_with("unknown") || name.chars().any(|c| c.is_ascii_uppercase()) {
            return false;
        }
        !name.starts_with("hubspot_outbox")
            || self
                .schema
                .lock()
                .expect("lock")
                .get(object_type)
                .is_some_and(|p| p.contains_key(name))
    }
}

const KNOWN_TYPES: [&str; 16] = [
    "contacts",
    "companies",
    "deals",
    "tickets",
    "products",
    "line_items",
    "quotes",
    "calls",
    "emails",
    "meetings",
    "notes",
    "tasks",
    "communications",
    "postal_mail",
    "leads",
    "goal_targets",
];

pub(crate) fn known_type(t: &str) -> bool {
    KNOWN_TYPES.contains(&t)
        || t.strip_prefix("0-")
            .or_else(|| t.strip_prefix("2-"))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The simulator's routes.
pub fn router(options: SimOptions) -> Router {
    build(options).0
}

/// The routes and the state behind them.
fn build(options: SimOptions) -> (Router, Arc<Sim>) {
    let sim = Arc::new(Sim {
        token: Mutex::new(options.token.clone()),
        faults: Mutex::new(options.faults.clone()),
        options,
        window: Mutex::new(VecDeque::new()),
        daily_used: Mutex::new(0),
        objects: Mutex::new(HashMap::new()),
        unique_index: Mutex::new(HashMap::new()),
        schema: Mutex::new(HashMap::new()),
        next_id: Mutex::new(1000),
        stats: Mutex::new(SimStats::default()),
        associations: Mutex::new(Vec::new()),
        outage: Mutex::new(None),
        refuse: Notify::new(),
    });
    let router = Router::new()
        .route(
            "/crm/v3/objects/{object_type}/batch/{action}",
            post(create::create_v3),
        )
        .route(
            "/crm/objects/{version}/{object_type}/batch/{action}",
            post(create::create_dated),
        )
        .route(
            "/crm/v4/associations/{from}/{to}/batch/create",
            post(associate::associate),
        )
        .route("/_sim/associations", get(associations))
        .route("/crm/v3/objects/{object_type}", get(list))
        .route("/_sim/stats", get(stats))
        .route("/_sim/token", post(set_token))
        .route("/_sim/faults", post(set_faults))
        .route("/_sim/outage", post(set_outage))
        .route(
            "/crm/v3/objects/{object_type}/batch/read",
            post(read::read_v3),
        )
        .route(
            "/crm/objects/{version}/{object_type}/batch/read",
            post(read::read_dated),
        )
        .route(
            "/crm/v3/properties/{object_type}",
            post(schema::create_property),
        )
        .route(
            "/crm/v3/properties/{object_type}/groups",
            get(schema::groups),
        )
        .route(
            "/crm/v3/properties/{object_type}/{name}",
            get(schema::get_property),
        )
        .with_state(sim.clone());
    (router, sim)
}

/// Serves the simulator on `listener` until `shutdown`. While an outage refuses
/// connections the listener is closed, and bound again on the same address after.
pub async fn serve(
    listener: tokio::net::TcpListener,
    options: SimOptions,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    let (app, sim) = build(options);
    let mut listener = Some(listener);
    loop {
        let current = match listener.take() {
            Some(l) => l,
            None => tokio::net::TcpListener::bind(addr).await?,
        };
        let stop = shutdown.clone();
        let until_refusing = sim.clone();
        axum::serve(current, app.clone())
            .with_graceful_shutdown(async move {
                tokio::select! {
                    _ = stop.cancelled() => {}
                    _ = until_refusing.refuse.notified() => {}
                }
            })
            .await?;
        if shutdown.is_cancelled() {
            return Ok(());
        }
        if let Some(until) = sim.refusing_until() {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tokio::time::sleep_until(until.into()) => {}
            }
        }
    }
}

async fn list(State(sim): State<Arc<Sim>>, Path(object_type): Path<String>) -> Response {
    let objects = sim
        .objects
        .lock()
        .expect("lock")
        .get(&object_type)
        .cloned()
        .unwrap_or_default();
    axum::Json(json!({"results": objects})).into_response()
}

async fn associations(State(sim): State<Arc<Sim>>) -> Response {
    let all = sim.associations.lock().expect("lock").clone();
    axum::Json(json!({"results": all})).into_response()
}

async fn stats(State(sim): State<Arc<Sim>>) -> Response {
    axum::Json(sim.stats.lock().expect("lock").clone()).into_response()
}

async fn set_token(State(sim): State<Arc<Sim>>, axum::Json(v): axum::Json<Value>) -> Response {
    match v.get("token").and_then(Value::as_str) {
        Some(t) => {
            *sim.token.lock().expect("lock") = t.to_owned();
            StatusCode::NO_CONTENT.into_response()
        }
        None => (StatusCode::BAD_REQUEST, "token is required").into_response(),
    }
}

async fn set_faults(
    State(sim): State<Arc<Sim>>,
    axum::Json(faults): axum::Json<SimFaults>,
) -> Response {
    *sim.faults.lock().expect("lock") = faults;
    StatusCode::NO_CONTENT.into_response()
}

async fn set_outage(
    State(sim): State<Arc<Sim>>,
    axum::Json(outage): axum::Json<SimOutage>,
) -> Response {
    let refuse = !outage.refuse_for.is_zero();
    *sim.outage.lock().expect("lock") = Some((Instant::now(), outage));
    if refuse {
        sim.refuse.notify_one();
    }
    StatusCode::NO_CONTENT.into_response()
}
