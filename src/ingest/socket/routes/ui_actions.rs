//! The dashboard's actions (issue 13): retry, discard and edit-then-retry one write, and
//! retry or discard everything a filter matches after its count. Every post must come
//! from a visitor who may act, carry their CSRF token and not come from another site
//! ([`crate::ui::csrf`]); its body is read under the socket's limits. Each change is one
//! store transaction with its audit line. A refusal changes nothing and says why.

use axum::Extension;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::Utc;
use serde::de::DeserializeOwned;

use super::error::ApiError;
use super::ui::{Visitor, no_such_write, page};
use super::{ApiState, read_body};
use crate::operator::OpsError;
use crate::operator::change::edit_write;
use crate::store::ops::Selection;
use crate::ui::actions::{self, ACTIONABLE, BulkForm};
use crate::ui::csrf;
use crate::ui::writes::encode;

/// A post's fields that every action has.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct TokenForm {
    csrf: Option<String>,
}

/// The edit form's fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct EditForm {
    csrf: Option<String>,
    properties: String,
    record_key: Option<String>,
    /// The write's `updated_at` when the form was served (see [`actions::edit_form`]).
    seen: Option<String>,
}

/// A refusal page: nothing changed, and why.
fn refuse(state: &ApiState, visitor: &Visitor, status: StatusCode, reason: &str) -> Response {
    page(
        state,
        visitor,
        status,
        ("Refused", "refused"),
        actions::refused(reason),
    )
}

/// A refusal, answered instead of what was asked.
type Refusal = Box<Response>;

/// Whether `visitor` may look at an action's form at all.
fn may_act(state: &ApiState, visitor: &Visitor) -> Result<(), Refusal> {
    if visitor.viewer.may_act {
        return Ok(());
    }
    let why = match visitor.viewer.login {
        Some(_) => "your login is read-only: you may look, not change writes",
        None => {
            "only operators may change writes over the socket: the daemon's own user, root, \
             and the users and groups in socket.operators"
        }
    };
    Err(Box::new(refuse(state, visitor, StatusCode::FORBIDDEN, why)))
}

/// Reads a post's form (under the socket's body limits) and checks it may act.
async fn posted<T: DeserializeOwned>(
    state: &ApiState,
    visitor: &Visitor,
    headers: &HeaderMap,
    body: Body,
    token: impl Fn(&T) -> Option<&str>,
) -> Result<T, Refusal> {
    may_act(state, visitor)?;
    let held = read_body(state, body)
        .await
        .map_err(|e| Box::new(e.into_response()))?;
    let form: T = serde_urlencoded::from_bytes(&held.bytes).map_err(|e| {
        let why = format!("the form could not be read: {e}");
        Box::new(refuse(state, visitor, StatusCode::BAD_REQUEST, &why))
    })?;
    let post = csrf::Post::from_headers(headers, token(&form));
    csrf::check(&visitor.viewer.csrf, &post)
        .map_err(|why| Box::new(refuse(state, visitor, StatusCode::FORBIDDEN, why)))?;
    Ok(form)
}

/// Back to the write's page after a change (303: the page is fetched, not re-posted).
fn to_write(trace_id: &str) -> Response {
    Redirect::to(&format!("/ui/writes/{}", encode(trace_id))).into_response()
}

/// `POST /ui/writes/{trace_id}/retry`.
pub async fn retry_one(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Err(r) = posted(&state, &visitor, &headers, body, |f: &TokenForm| {
        f.csrf.as_deref()
    })
    .await
    {
        return Ok(*r);
    }
    let selection = Selection::TraceIds(vec![trace_id.clone()]);
    let n = state.store.retry_writes(&selection, &visitor.actor).await?;
    one_done(&state, &visitor, &trace_id, n).await
}

/// `GET /ui/writes/{trace_id}/discard`: asks first.
pub async fn discard_one_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    if let Err(r) = may_act(&state, &visitor) {
        return Ok(*r);
    }
    let Some(write) = state.store.get_write(&trace_id).await? else {
        return Ok(no_such_write(&state, &visitor, &trace_id));
    };
    if !actions::discardable(&write.state) {
        let why = format!(
            "`{trace_id}` is {}: only failed, unconfirmed and waiting writes may be discarded",
            write.state
        );
        return Ok(refuse(&state, &visitor, StatusCode::CONFLICT, &why));
    }
    let content = actions::confirm_discard(&write, &visitor.viewer);
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Discard", "write"),
        content,
    ))
}

/// `POST /ui/writes/{trace_id}/discard`.
pub async fn discard_one(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Err(r) = posted(&state, &visitor, &headers, body, |f: &TokenForm| {
        f.csrf.as_deref()
    })
    .await
    {
        return Ok(*r);
    }
    let selection = Selection::TraceIds(vec![trace_id.clone()]);
    let n = state
        .store
        .discard_writes(&selection, &visitor.actor)
        .await?;
    one_done(&state, &visitor, &trace_id, n).await
}

/// After an action on one write: its page, or why nothing changed.
async fn one_done(
    state: &ApiState,
    visitor: &Visitor,
    trace_id: &str,
    changed: u64,
) -> Result<Response, ApiError> {
    if changed == 1 {
        return Ok(to_write(trace_id));
    }
    Ok(match state.store.get_write(trace_id).await? {
        None => no_such_write(state, visitor, trace_id),
        Some(w) => {
            let why = format!("`{trace_id}` is {}: that action does not apply", w.state);
            refuse(state, visitor, StatusCode::CONFLICT, &why)
        }
    })
}

/// `GET /ui/writes/{trace_id}/edit`: the edit form with the write's properties.
pub async fn edit_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    if let Err(r) = may_act(&state, &visitor) {
        return Ok(*r);
    }
    let Some(write) = state.store.get_write(&trace_id).await? else {
        return Ok(no_such_write(&state, &visitor, &trace_id));
    };
    if !ACTIONABLE.contains(&write.state.as_str()) {
        let why = format!(
            "`{trace_id}` is {}: only failed or unconfirmed writes are edited",
            write.state
        );
        return Ok(refuse(&state, &visitor, StatusCode::CONFLICT, &why));
    }
    let properties = serde_json::from_str::<serde_json::Value>(&write.properties)
        .and_then(|v| serde_json::to_string_pretty(&v))
        .unwrap_or_else(|_| write.properties.clone());
    let content = actions::edit_form(
        &write,
        &visitor.viewer,
        &properties,
        write.record_key.as_deref(),
        None,
    );
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Edit", "write"),
        content,
    ))
}

/// `POST /ui/writes/{trace_id}/edit`: check, save and queue again; a refused edit shows
/// the form again with what was posted and why.
pub async fn edit(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = match posted(&state, &visitor, &headers, body, |f: &EditForm| {
        f.csrf.as_deref()
    })
    .await
    {
        Ok(f) => f,
        Err(r) => return Ok(*r),
    };
    let Some(write) = state.store.get_write(&trace_id).await? else {
        return Ok(no_such_write(&state, &visitor, &trace_id));
    };
    let record_key = form
        .record_key
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let result = match serde_json::from_str::<serde_json::Value>(&form.properties) {
        // The form was made from an older state of the write: show the edit again over the
        // write as it is now, to be looked at and saved again.
        _ if form
            .seen
            .as_ref()
            .is_some_and(|seen| *seen != write.updated_at) =>
        {
            Err(OpsError::Usage(format!(
                "`{trace_id}` changed since this form was loaded (it is {} now); check the \
                 write and save again",
                write.state
            )))
        }
        Ok(serde_json::Value::Object(properties)) => {
            edit_write(&state.store, &write, properties, record_key, &visitor.actor).await
        }
        Ok(_) => Err(OpsError::Usage(
            "the properties must be a JSON object".into(),
        )),
        Err(e) => Err(OpsError::Usage(format!("the properties are not JSON: {e}"))),
    };
    match result {
        Ok(()) => Ok(to_write(&trace_id)),
        Err(OpsError::Usage(why)) => {
            let content = actions::edit_form(
                &write,
                &visitor.viewer,
                &form.properties,
                record_key,
                Some(&why),
            );
            Ok(page(
                &state,
                &visitor,
                StatusCode::UNPROCESSABLE_ENTITY,
                ("Edit", "write"),
                content,
            ))
        }
        Err(e) => Err(e.into()),
    }
}

/// `GET /ui/bulk?action=retry|discard&<the list's filters>`: the dry run, the count and
/// the form that confirms it.
pub async fn bulk_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Query(form): Query<BulkForm>,
) -> Result<Response, ApiError> {
    if let Err(r) = may_act(&state, &visitor) {
        return Ok(*r);
    }
    let (action, query) = match form.query(Utc::now()) {
        Ok(q) => q,
        Err(why) => return Ok(refuse(&state, &visitor, StatusCode::BAD_REQUEST, &why)),
    };
    let selection = Selection::Matching(query.clone());
    let count = match action {
        "retry" => state.store.count_selection(&selection).await?,
        _ => state.store.count_discard(&selection).await?,
    };
    // Taken after the count: every write counted changed before it.
    let counted_at = Utc::now();
    let content = actions::bulk_confirm(action, &query, count, counted_at, &visitor.viewer);
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Confirm", "bulk"),
        content,
    ))
}

/// `POST /ui/bulk`: the confirmed action on everything the filter matches now.
pub async fn bulk(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let form = match posted(&state, &visitor, &headers, body, |f: &BulkForm| {
        f.csrf.as_deref()
    })
    .await
    {
        Ok(f) => f,
        Err(r) => return Ok(*r),
    };
    let (action, query) = match form.query(Utc::now()) {
        Ok(q) => q,
        Err(why) => return Ok(refuse(&state, &visitor, StatusCode::BAD_REQUEST, &why)),
    };
    let selection = Selection::Matching(query);
    let (n, verb) = match action {
        "retry" => (
            state.store.retry_writes(&selection, &visitor.actor).await?,
            "Requeued",
        ),
        _ => (
            state
                .store
                .discard_writes(&selection, &visitor.actor)
                .await?,
            "Discarded",
        ),
    };
    let back = format!(
        "/ui/writes?state={}",
        form.state.as_deref().map(str::trim).unwrap_or("failed")
    );
    let content = actions::done(&format!("{verb} {n} write(s)."), &back);
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Done", "bulk"),
        content,
    ))
}
