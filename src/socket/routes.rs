//! The HTTP API on the Unix socket:
//!
//! - `POST /v1/writes`: enqueue writes (JSON object, JSON array, or NDJSON); all or nothing.
//! - `GET /v1/writes/{traceId}`: one stored write and its state.
//! - `GET /v1/writes?state=&objectType=&limit=`: writes, most recently changed first.
//! - `POST /v1/retry`: put failed or unconfirmed writes back in the queue.
//! - `GET /v1/status`: what `hubspot-outbox status --json` prints.
//! - `GET /metrics`: Prometheus text.
//! - `GET /healthz`: 200 when the store answers.
//!
//! Every error is JSON: `{"error": CODE, "message": ONE_LINE, "errors": [...]?}`.

use axum::Router;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Serialize;
use serde_json::{Value, json};

use super::body::{BodyError, BodyFormat, WriteError, parse_body};
use crate::committer::{CommitError, Committer};
use crate::config::Limits;
use crate::ingest::{Accepted, WriteResult, prepare};
use crate::store::Store;
use crate::store::read::StoredWrite;

/// Bodies up to this size are parsed on the request's own task.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub committer: Committer,
    pub limits: Limits,
    pub config: std::sync::Arc<crate::config::Config>,
    pub metrics: std::sync::Arc<crate::metrics::Metrics>,
}

pub fn router(state: ApiState) -> Router {
    // One byte over the limit is enough to know the body is too large.
    let body_limit = state.limits.max_request_bytes;
    Router::new()
        .route("/v1/writes", post(post_writes).get(list_writes))
        .route("/v1/retry", post(post_retry))
        .route("/v1/status", get(status))
        .route("/metrics", get(metrics))
        .route("/v1/writes/{trace_id}", get(get_write))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(body_limit))
        .with_state(state)
}

/// A JSON error answer.
fn error(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    errors: Option<Value>,
) -> Response {
    let mut body = json!({"error": code, "message": message.into()});
    if let Some(errors) = errors {
        body["errors"] = errors;
    }
    (status, axum::Json(body)).into_response()
}

async fn not_found() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        "no such endpoint; see the README for the API",
        None,
    )
}

#[derive(Serialize)]
struct PostAnswer {
    accepted: usize,
    new: usize,
    duplicates: usize,
    writes: Vec<Accepted>,
}

async fn post_writes(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = match BodyFormat::from_content_type(content_type) {
        Ok(f) => f,
        Err(e) => return body_error(e),
    };
    let body = match body {
        Ok(b) => b,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "request body is larger than limits.max_request_bytes ({} bytes); send fewer writes per request",
                    state.limits.max_request_bytes
                ),
                None,
            );
        }
        Err(rejection) => {
            return error(rejection.status(), "bad_body", rejection.body_text(), None);
        }
    };
    let body_len = body.len();
    // Parsing and validating a large body is CPU work: keep it off the I/O threads. A small
    // one is parsed in place; the hop to a blocking thread would cost more than the work.
    let max = state.limits.max_writes_per_request;
    let parse = move || parse_body(format, &body, max).map(|p| (prepare(p.writes), p.lines));
    let parsed = if body_len <= INLINE_PARSE_BYTES {
        Ok(parse())
    } else {
        tokio::task::spawn_blocking(parse).await
    };
    let (writes, lines) = match parsed {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(e)) => return body_error(e),
        Err(_) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validation task failed",
                None,
            );
        }
    };
    match state.committer.submit(writes).await {
        Ok(accepted) => {
            let new = accepted
                .iter()
                .filter(|a| a.result == WriteResult::New)
                .count();
            let answer = PostAnswer {
                accepted: accepted.len(),
                new,
                duplicates: accepted.len() - new,
                writes: accepted,
            };
            (StatusCode::ACCEPTED, axum::Json(answer)).into_response()
        }
        Err(CommitError::Conflict(conflicts)) => {
            let errors: Vec<WriteError> = conflicts
                .iter()
                .map(|c| WriteError {
                    index: c.index,
                    line: lines.get(c.index).copied().flatten(),
                    field: "objectWriteTraceId".into(),
                    message: format!(
                        "objectWriteTraceId `{}` is already used by a different write",
                        c.trace_id
                    ),
                })
                .collect();
            let first = &errors[0];
            let message = format!(
                "at {}: {}; nothing from this request was stored",
                first.position(),
                first.message
            );
            let errors = serde_json::to_value(&errors).unwrap_or(Value::Null);
            error(
                StatusCode::CONFLICT,
                "trace_id_conflict",
                message,
                Some(errors),
            )
        }
        Err(e @ CommitError::Store(_)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
        Err(e @ CommitError::ShuttingDown) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            e.to_string(),
            None,
        ),
    }
}

fn body_error(e: BodyError) -> Response {
    match e {
        BodyError::UnsupportedMediaType(m) => error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            m,
            None,
        ),
        BodyError::Malformed { line, message } => error(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            message,
            line.map(|l| json!([{"line": l, "field": "", "message": "not valid JSON"}])),
        ),
        BodyError::Empty => error(
            StatusCode::BAD_REQUEST,
            "empty_request",
            "the request holds no writes",
            None,
        ),
        BodyError::TooManyWrites { count, max } => error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_writes",
            format!("the request holds {count} writes; limits.max_writes_per_request is {max}"),
            None,
        ),
        BodyError::Invalid(errors) => {
            let first = &errors[0];
            let message = format!(
                "{} invalid field(s); first at {}: {}: {}; nothing from this request was stored",
                errors.len(),
                first.position(),
                if first.field.is_empty() {
                    "(write)"
                } else {
                    &first.field
                },
                first.message
            );
            let errors = serde_json::to_value::<&[WriteError]>(&errors).unwrap_or(Value::Null);
            error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_writes",
                message,
                Some(errors),
            )
        }
    }
}

async fn get_write(State(state): State<ApiState>, Path(trace_id): Path<String>) -> Response {
    match state.store.get_write(&trace_id).await {
        Ok(Some(w)) => axum::Json(write_json(&w)).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no write with objectWriteTraceId `{trace_id}`"),
            None,
        ),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}

/// A stored write as the API shows it (camelCase like HubSpot; JSON columns as JSON).
pub fn write_json(w: &StoredWrite) -> Value {
    let as_json =
        |text: &str| serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
    json!({
        "id": w.id,
        "objectWriteTraceId": w.trace_id,
        "objectType": w.object_type,
        "properties": as_json(&w.properties),
        "associations": as_json(&w.associations),
        "state": w.state,
        "hubspotId": w.hubspot_id,
        "attempts": w.attempts,
        "lastError": w.last_error,
        "validated": w.validated,
        "nextAttemptAt": w.next_attempt_at,
        "createdAt": w.created_at,
        "updatedAt": w.updated_at,
    })
}

async fn healthz(State(state): State<ApiState>) -> Response {
    match state.store.ping().await {
        Ok(()) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}

/// Query of `GET /v1/writes`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ListQuery {
    state: Option<String>,
    object_type: Option<String>,
    limit: Option<i64>,
}

async fn list_writes(
    State(state): State<ApiState>,
    query: Result<axum::extract::Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match query {
        Ok(q) => q.0,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_query", e.body_text(), None),
    };
    if let Some(s) = &q.state
        && crate::model::WriteState::parse(s).is_none()
    {
        return error(
            StatusCode::BAD_REQUEST,
            "bad_query",
            format!("state `{s}` is not a state of a write"),
            None,
        );
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    match state
        .store
        .list_writes(q.state.as_deref(), q.object_type.as_deref(), limit)
        .await
    {
        Ok(rows) => axum::Json(json!({"writes": rows.iter().map(write_json).collect::<Vec<_>>()}))
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}

/// Body of `POST /v1/retry`: `{"traceIds": [...]}` or `{"failed": true, ...filters}` or
/// `{"unconfirmed": true, ...filters}`, with `"dryRun": true` to only count.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct RetryBody {
    trace_ids: Vec<String>,
    failed: bool,
    unconfirmed: bool,
    object_type: Option<String>,
    category: Option<String>,
    since: Option<String>,
    limit: Option<i64>,
    dry_run: bool,
}

async fn post_retry(
    State(state): State<ApiState>,
    body: Result<axum::Json<RetryBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let b = match body {
        Ok(b) => b.0,
        Err(e) => return error(e.status(), "bad_body", e.body_text(), None),
    };
    let since = match b
        .since
        .as_deref()
        .map(|s| crate::ops::parse_since(s, chrono::Utc::now()))
        .transpose()
    {
        Ok(s) => s,
        Err(e) => return error(StatusCode::BAD_REQUEST, "bad_body", e.to_string(), None),
    };
    let filter = crate::store::ops::Filter {
        object_type: b.object_type,
        category: b.category,
        since,
        limit: b.limit,
    };
    use crate::store::ops::Selection;
    let selection = match (b.trace_ids.is_empty(), b.failed, b.unconfirmed) {
        (false, false, false) => Selection::TraceIds(b.trace_ids),
        (true, true, false) => Selection::Failed(filter),
        (true, false, true) => Selection::Unconfirmed(filter),
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                "choose the writes: traceIds, or failed: true, or unconfirmed: true",
                None,
            );
        }
    };
    let result = if b.dry_run {
        state.store.count_selection(&selection).await
    } else {
        state.store.retry_writes(&selection).await
    };
    match result {
        Ok(n) => axum::Json(json!({"writes": n, "dryRun": b.dry_run})).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}

async fn status(State(state): State<ApiState>) -> Response {
    match crate::ops::status_value(&state.store, &state.config).await {
        Ok(v) => axum::Json(v).into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}

async fn metrics(State(state): State<ApiState>) -> Response {
    let gauges = async {
        let depth = state.store.queue_depth().await?;
        let oldest = state.store.oldest_pending().await?;
        let now = chrono::Utc::now();
        let now_text = crate::store::timestamp(now);
        let paused = state
            .store
            .pauses()
            .await?
            .iter()
            .any(|p| p.until.as_deref().is_none_or(|u| u > now_text.as_str()));
        Ok::<_, crate::store::StoreError>(crate::metrics::Gauges {
            depth: depth
                .into_iter()
                .map(|d| (d.object_type, d.state, d.writes))
                .collect(),
            oldest_pending_seconds: oldest
                .and_then(|t| t.parse::<chrono::DateTime<chrono::Utc>>().ok())
                .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
            paused,
        })
    };
    match gauges.await {
        Ok(g) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            state.metrics.render(&g),
        )
            .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
            None,
        ),
    }
}
