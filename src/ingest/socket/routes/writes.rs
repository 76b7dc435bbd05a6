//! The writes resource: enqueue (`POST /v1/writes`), look one up
//! (`GET /v1/writes/{traceId}`), and list them (`GET /v1/writes`).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiState, read_body};
use crate::ingest::capacity;
use crate::ingest::committer::CommitError;
use crate::ingest::group::{Accepted, WriteResult, prepare};
use crate::ingest::socket::body::{BodyFormat, WriteError, parse_body};
use crate::ingest::socket::budget::HeldBody;
use crate::model::WriteState;
use crate::operator::render::write_json;

/// Bodies up to this size are parsed on the request's own task.
const INLINE_PARSE_BYTES: usize = 64 * 1024;

#[derive(Serialize)]
struct PostAnswer {
    accepted: usize,
    new: usize,
    duplicates: usize,
    writes: Vec<Accepted>,
}

/// `POST /v1/writes`: 202 once every write of the body is durably stored; nothing is
/// stored when any of them is refused.
pub async fn post_writes(
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let format = BodyFormat::from_content_type(content_type)?;
    let held = read_body(&state, body).await?;
    let body_len = held.bytes.len();
    // Parsing and validating a large body is CPU work: keep it off the I/O threads. A small
    // one is parsed in place; the hop to a blocking thread would cost more than the work.
    let max = state.limits.max_writes_per_request;
    // The body's share of the budget is handed back with the result and held until the
    // request is answered: the prepared writes take about as much as the body.
    let config = state.config.clone();
    let parse = move |held: HeldBody| {
        let unique = |t: &str| config.policy(t).unique_property;
        let parsed =
            parse_body(format, &held.bytes, max).map(|p| (prepare(p.writes, &unique), p.lines));
        (parsed, held)
    };
    let (parsed, _held) = if body_len <= INLINE_PARSE_BYTES {
        parse(held)
    } else {
        // One large parse per CPU at a time: the JSON values of a body take several times
        // its size, and the budget only counts the bytes. The turn and the body's share go
        // into the blocking task, so a client that hangs up mid-parse frees neither early.
        let turn = state.budget.parse_turn().await;
        tokio::task::spawn_blocking(move || {
            let parsed = parse(held);
            drop(turn);
            parsed
        })
        .await
        .map_err(|_| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "validation task failed",
            )
        })?
    };
    let (writes, lines) = parsed?;
    if let Some(reason) = capacity::check(
        &state.store,
        &state.config.queue,
        &state.config.database.path,
        writes.len() as u64,
    )
    .await?
    {
        return Err(
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "queue_full", reason).retry_after(30),
        );
    }
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
            Ok((StatusCode::ACCEPTED, axum::Json(answer)).into_response())
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
            Err(
                ApiError::new(StatusCode::CONFLICT, "trace_id_conflict", message)
                    .with_errors(errors),
            )
        }
        // No room on the disk (or database.max_size reached): nothing of the request was
        // stored, and the daemon goes on; writes are taken again once there is room.
        Err(CommitError::Store(e)) if e.is_full() => Err(ApiError::new(
            StatusCode::INSUFFICIENT_STORAGE,
            "database_full",
            format!(
                "the outbox has no room (the disk is full, or database.max_size is reached): \
                 nothing of this request was stored; try again once space is freed ({e})"
            ),
        )
        .retry_after(30)),
        Err(e @ CommitError::Store(_)) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "store_unavailable",
            e.to_string(),
        )),
        Err(e @ CommitError::ShuttingDown) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            e.to_string(),
        )),
    }
}

/// `GET /v1/writes/{traceId}`.
pub async fn get_write(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    match state.store.get_write(&trace_id).await? {
        Some(w) => Ok(axum::Json(write_json(&w)).into_response()),
        None => Err(ApiError::not_found(format!(
            "no write with objectWriteTraceId `{trace_id}`"
        ))),
    }
}

/// Query of `GET /v1/writes`.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListQuery {
    state: Option<String>,
    object_type: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/writes?state=&objectType=&limit=`: most recently changed first.
pub async fn list_writes(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query.map_err(|e| ApiError::bad_query(e.body_text()))?.0;
    if let Some(s) = &q.state
        && WriteState::parse(s).is_none()
    {
        return Err(ApiError::bad_query(format!(
            "state `{s}` is not a state of a write"
        )));
    }
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    let rows = state
        .store
        .list_writes(q.state.as_deref(), q.object_type.as_deref(), limit)
        .await?;
    Ok(
        axum::Json(json!({"writes": rows.iter().map(write_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}
