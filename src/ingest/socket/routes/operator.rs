//! The operator endpoints served on the socket: replay (`POST /v1/retry`), status
//! (`GET /v1/status`), metrics (`GET /metrics`) and health (`GET /healthz`). Each is a thin
//! HTTP shell over the same function the `hubspot-outbox` command runs.

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::error::ApiError;
use super::{ApiState, read_body};
use crate::ingest::socket::peer::Peer;
use crate::operator::{self, FilterArgs, SelectArgs};
use crate::store::audit::Actor;

/// Body of `POST /v1/retry`: `{"traceIds": [...]}` or `{"failed": true, ...filters}` or
/// `{"unconfirmed": true, ...filters}`, with `"dryRun": true` to only count.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryBody {
    trace_ids: Vec<String>,
    failed: bool,
    unconfirmed: bool,
    object_type: Option<String>,
    category: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
    dry_run: bool,
}

/// `POST /v1/retry`: put failed or unconfirmed writes back in the queue.
pub async fn post_retry(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Body,
) -> Result<Response, ApiError> {
    // Who asks is checked before a byte of the body is read; the body is read under the
    // same limits as an enqueue's.
    state
        .operators
        .may_operate(peer)
        .map_err(|m| ApiError::new(StatusCode::FORBIDDEN, "not_an_operator", m))?;
    let held = read_body(&state, body).await?;
    let b: RetryBody = serde_json::from_slice(&held.bytes)
        .map_err(|e| ApiError::bad_body(format!("body is not a retry request: {e}")))?;
    let args = SelectArgs {
        trace_ids: b.trace_ids,
        failed: b.failed,
        unconfirmed: b.unconfirmed,
        filter: FilterArgs {
            object_type: b.object_type,
            category: b.category,
            since: b.since,
            limit: b.limit,
        },
        dry_run: b.dry_run,
        json: true,
    };
    let selection = operator::selection(
        &args,
        chrono::Utc::now(),
        "choose the writes: traceIds, or failed: true, or unconfirmed: true",
    )?;
    let n = if b.dry_run {
        state.store.count_selection(&selection).await?
    } else {
        state
            .store
            .retry_writes(&selection, &Actor::unix(peer.uid, "socket"))
            .await?
    };
    Ok(axum::Json(json!({"writes": n, "dryRun": b.dry_run})).into_response())
}

/// `GET /v1/status`: what `hubspot-outbox status --json` prints.
pub async fn status(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let value = operator::status::status_value(&state.store, &state.config).await?;
    Ok(axum::Json(value).into_response())
}

/// `GET /metrics`: Prometheus text.
pub async fn metrics(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let gauges = operator::status::gauges(&state.store).await?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(&gauges),
    )
        .into_response())
}

/// `GET /healthz`: 200 when the store answers.
pub async fn healthz(State(state): State<ApiState>) -> Result<Response, ApiError> {
    state.store.ping().await?;
    Ok(axum::Json(json!({"status": "ok"})).into_response())
}
