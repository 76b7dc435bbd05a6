//! The HTTP API on the Unix socket, one file per resource:
//!
//! - [`writes`]: `POST /v1/writes` (enqueue: a JSON object, a JSON array, or NDJSON; all
//!   or nothing), `GET /v1/writes/{traceId}` (one stored write), and
//!   `GET /v1/writes?state=&objectType=&limit=` (most recently changed first).
//! - [`operator`]: `POST /v1/retry`, `GET /v1/status` (what `status --json` prints),
//!   `GET /metrics` (Prometheus text), `GET /healthz` (200 when the store answers).
//! - [`ui`] and [`ui_actions`]: the operators' dashboard under `/ui/` (HTML; see
//!   `crate::ui`), also served on `ui.listen` with a login (`crate::ingest::web`).
//! - [`error`]: the one error type; every error answer is JSON.

mod browser;
pub mod error;
pub mod operator;
pub mod ui;
pub mod ui_actions;
pub mod writes;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::routing::{get, post};

use crate::config::{Config, Limits};
use crate::ingest::committer::Committer;
use crate::ingest::socket::budget::{BodyBudget, HeldBody, ReadError};
use crate::ingest::socket::peer::Operators;
use crate::runtime::metrics::Metrics;
use crate::store::Store;
use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    /// The group committer every `POST /v1/writes` hands its writes to.
    pub committer: Committer,
    pub limits: Limits,
    pub config: Arc<Config>,
    /// Counted by the dispatcher, rendered by `GET /metrics`.
    pub metrics: Arc<Metrics>,
    /// Who may change writes over the socket.
    pub operators: Arc<Operators>,
    /// The memory all request bodies may take at once.
    pub budget: BodyBudget,
    /// The dashboard's CSRF token on the socket, new each time the daemon starts.
    pub ui_token: Arc<str>,
}

pub fn router(state: ApiState) -> Router {
    // One byte over the limit is enough to know the body is too large.
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route(
            "/v1/writes",
            post(writes::post_writes).get(writes::list_writes),
        )
        .route("/v1/writes/{trace_id}", get(writes::get_write))
        .route("/v1/retry", post(operator::post_retry))
        .route("/v1/status", get(operator::status))
        .route("/metrics", get(operator::metrics))
        .route("/healthz", get(operator::healthz))
        .merge(
            ui::routes().route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                ui::socket_visitor,
            )),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            browser::guard,
        ))
        .with_state(state)
}

/// Reads a request body under the socket's limits: `limits.max_request_bytes` (413),
/// `socket.body_timeout` (408) and the body budget (503 with `Retry-After`).
pub async fn read_body(state: &ApiState, body: Body) -> Result<HeldBody, ApiError> {
    let max_bytes = state.limits.max_request_bytes;
    let timeout = state.config.socket.body_timeout;
    state
        .budget
        .read(body, max_bytes, timeout)
        .await
        .map_err(|e| match e {
            ReadError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "request body is larger than limits.max_request_bytes ({max_bytes} bytes); send fewer writes per request"
                ),
            ),
            ReadError::TimedOut => ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within socket.body_timeout ({}); nothing was stored",
                    humantime::format_duration(timeout)
                ),
            ),
            ReadError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_busy",
                "other requests' bodies fill limits.max_buffered_bytes; nothing was stored, try again shortly",
            )
            .retry_after(1),
            ReadError::Broken(e) => {
                ApiError::bad_body(format!("the request body could not be read: {e}"))
            }
        })
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see the README for the API")
}
