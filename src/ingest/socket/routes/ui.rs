//! The dashboard on the socket (issue 13): `GET /ui/` (the overview page), `GET
//! /ui/overview` (its content alone, which the page's script fetches to refresh), and
//! the embedded `GET /ui/app.css` and `GET /ui/app.js`. Read-only: anyone who may
//! connect to the socket may look, as with `GET /v1/status`. Every answer carries
//! [`crate::ui::SECURITY_HEADERS`].

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};

use chrono::Utc;
use maud::Markup;

use super::ApiState;
use super::error::ApiError;
use crate::operator::status::status_value;
use crate::store::ops::Bucket;
use crate::ui;
use crate::ui::chart::fill;

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
