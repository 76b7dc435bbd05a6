//! The dashboard on the socket (issue 13): `GET /ui/` (the overview page), `GET
//! /ui/overview` (its content alone, which the page's script fetches to refresh), `GET
//! /ui/writes` (the list) and `GET /ui/writes/{traceId}` (one write), and the embedded
//! `GET /ui/app.css` and `GET /ui/app.js`. Read-only: anyone who may
//! connect to the socket may look, as with `GET /v1/status`. Every answer carries
//! [`crate::ui::SECURITY_HEADERS`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use chrono::Utc;
use maud::Markup;

use super::ApiState;
use super::error::ApiError;
use crate::operator::status::status_value;
use crate::store::browse::WriteQuery;
use crate::store::ops::Bucket;
use crate::ui;
use crate::ui::chart::fill;
use crate::ui::writes::WriteForm;

/// `GET /ui`: the dashboard lives at `/ui/`.
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// `GET /ui/`: the overview page.
pub async fn overview_page(State(state): State<ApiState>) -> Result<Response, ApiError> {
    let page = ui::page(
        "Overview",
        &state.config.database.name(),
        "overview",
        overview(&state).await?,
    );
    Ok(html(page.into_string()))
}

/// `GET /ui/overview`: the overview's content, for the page's script.
pub async fn overview_part(State(state): State<ApiState>) -> Result<Response, ApiError> {
    Ok(html(overview(&state).await?.into_string()))
}

/// What the overview shows, read now: the status and the last hour's and day's sending.
async fn overview(state: &ApiState) -> Result<Markup, ApiError> {
    let now = Utc::now();
    let status = status_value(&state.store, &state.config).await?;
    let minutes = state
        .store
        .sent_by(now - chrono::Duration::minutes(60), Bucket::Minute)
        .await?;
    let hours = state
        .store
        .sent_by(now - chrono::Duration::hours(24), Bucket::Hour)
        .await?;
    Ok(ui::overview::overview(
        &status,
        &fill(&minutes, now, Bucket::Minute, 60),
        &fill(&hours, now, Bucket::Hour, 24),
    ))
}

/// `GET /ui/writes?state=&type=&category=&since=&until=&q=&before=`: the list of writes
/// and the failed ones' errors grouped. A form that makes no sense is answered 400 with
/// the page and what is wrong.
pub async fn writes_page(
    State(state): State<ApiState>,
    form: Result<Query<WriteForm>, QueryRejection>,
) -> Result<Response, ApiError> {
    let database = state.config.database.name();
    let page = |status: StatusCode, content: Markup| {
        let mut r = html(ui::page("Writes", &database, "writes", content).into_string());
        *r.status_mut() = status;
        r
    };
    let form = match form {
        Ok(Query(form)) => form,
        Err(e) => {
            let content = ui::writes::list(&WriteForm::default(), Some(&e.body_text()), &[], &[]);
            return Ok(page(StatusCode::BAD_REQUEST, content));
        }
    };
    let query = match form.query(Utc::now()) {
        Ok(q) => q,
        Err(e) => {
            let content = ui::writes::list(&form, Some(&e), &[], &[]);
            return Ok(page(StatusCode::BAD_REQUEST, content));
        }
    };
    let lines = state.store.find_writes(&query).await?;
    let groups = state
        .store
        .error_groups(&WriteQuery {
            limit: 20,
            ..query.clone()
        })
        .await?;
    Ok(page(
        StatusCode::OK,
        ui::writes::list(&form, None, &lines, &groups),
    ))
}

/// `GET /ui/writes/{trace_id}`: one write and its history (404 when unknown).
pub async fn write_page(
    State(state): State<ApiState>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    let database = state.config.database.name();
    let Some(write) = state.store.get_write(&trace_id).await? else {
        let content = maud::html! {
            h2 { "No such write" }
            p { "No write has the trace id " code { (trace_id) } "." }
            p { a href="/ui/writes" { "← All writes" } }
        };
        let mut r = html(ui::page("No such write", &database, "write", content).into_string());
        *r.status_mut() = StatusCode::NOT_FOUND;
        return Ok(r);
    };
    let history = state.store.error_history(&trace_id).await?;
    let content = ui::writes::one(&write, &history);
    Ok(html(
        ui::page(&write.trace_id, &database, "write", content).into_string(),
    ))
}

/// `GET /ui/app.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", ui::CSS)
}

/// `GET /ui/app.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", ui::JS)
}

fn html(body: String) -> Response {
    asset_owned("text/html; charset=utf-8", body)
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    asset_owned(content_type, body.to_owned())
}

fn asset_owned(content_type: &'static str, body: String) -> Response {
    let mut response = ([(header::CONTENT_TYPE, content_type)], body).into_response();
    for (name, value) in ui::SECURITY_HEADERS {
        response.headers_mut().insert(
            name,
            value
                .parse()
                .expect("the security headers are valid header values"),
        );
    }
    response
}
