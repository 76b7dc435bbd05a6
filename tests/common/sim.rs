//! The HubSpot simulator on 127.0.0.1:0 and a daemon in this process pointed at it, with
//! quick settings, for the end-to-end sending tests.

use std::net::SocketAddr;

use hubspot_outbox::simulator::SimOptions;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::{InProcess, eventually};

/// A simulator on a free port; dropped with the test's runtime.
pub struct Simulator {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    _stop: tokio_util::sync::DropGuard,
}

impl Simulator {
    pub async fn start(options: SimOptions) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(hubspot_outbox::simulator::serve(
            listener,
            options,
            stop.clone(),
        ));
        Self {
            addr,
            http: reqwest::Client::new(),
            _stop: stop.drop_guard(),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The associations the simulator holds (`GET /_sim/associations`).
    pub async fn associations(&self) -> Vec<Value> {
        self.get("/_sim/associations").await["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    async fn get(&self, path: &str) -> Value {
        serde_json::from_slice(
            &self
                .http
                .get(format!("{}{path}", self.url()))
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap(),
        )
        .unwrap()
    }

    pub async fn objects(&self, object_type: &str) -> Vec<Value> {
        self.get(&format!("/crm/v3/objects/{object_type}")).await["results"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    pub async fn stats(&self) -> Value {
        self.get("/_sim/stats").await
    }

    pub async fn control(&self, path: &str, body: Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.url()))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
}

/// Daemon settings for fast tests, pointed at `sim`.
pub fn fast(sim: &Simulator, extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = vec![
        ("HUBSPOT_ACCESS_TOKEN".into(), "sim-token".into()),
        ("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL".into(), sim.url()),
        (
            "HUBSPOT_OUTBOX__HUBSPOT__REQUEST_TIMEOUT".into(),
            "2s".into(),
        ),
        (
            "HUBSPOT_OUTBOX__HUBSPOT__AUTH_RETRY_INTERVAL".into(),
            "200ms".into(),
        ),
        (
            "HUBSPOT_OUTBOX__RATE_LIMIT__REQUESTS_PER_INTERVAL".into(),
            "50".into(),
        ),
        ("HUBSPOT_OUTBOX__RATE_LIMIT__INTERVAL".into(), "1s".into()),
        ("HUBSPOT_OUTBOX__BATCHING__LINGER".into(), "20ms".into()),
        (
            "HUBSPOT_OUTBOX__RETRY__INITIAL_BACKOFF".into(),
            "100ms".into(),
        ),
        ("HUBSPOT_OUTBOX__RETRY__MAX_BACKOFF".into(), "400ms".into()),
        (
            "HUBSPOT_OUTBOX__RETRY__MAX_PROBE_INTERVAL".into(),
            "200ms".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    env
}

pub async fn start_daemon(env: &[(String, String)]) -> InProcess {
    start_daemon_on(&super::Backend::Sqlite, env).await
}

/// [`start_daemon`] on `backend`'s outbox.
pub async fn start_daemon_on(backend: &super::Backend, env: &[(String, String)]) -> InProcess {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    InProcess::start_on_backend(backend, &pairs).await
}

pub async fn enqueue(d: &InProcess, writes: Vec<Value>) {
    let mut c = d.client().await;
    let a = c.post_json(Value::Array(writes).to_string()).await.unwrap();
    assert_eq!(a.status, 202, "{:?}", a.body);
}

pub async fn sql_count(d: &InProcess, filter: &str) -> i64 {
    d.sql(&format!("SELECT count(*) FROM outbox WHERE {filter}"))
        .parse()
        .unwrap()
}

pub async fn sql(d: &InProcess, query: &str) -> String {
    d.sql(query)
}

pub async fn settled(d: &InProcess, total: i64) {
    eventually("every write settled", || async {
        sql_count(d, "state IN ('succeeded', 'failed')").await == total
    })
    .await;
}
