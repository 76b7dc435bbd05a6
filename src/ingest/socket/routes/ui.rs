//! The dashboard's pages (issue 13): `GET /ui/` (the overview), `GET /ui/overview` (its
//! content alone, which the page's script fetches to refresh), `GET /ui/writes` (the
//! list), `GET /ui/writes/{traceId}` (one write), `GET /ui/audit` (the audit log), and
//! the embedded `GET /ui/app.css` and `GET /ui/app.js`. The actions are in
//! [`super::ui_actions`].
//!
//! These routes are served on the socket and, with a login, on `ui.listen`; each listener
//! puts a [`Visitor`] (who is looking, whether they may act, their CSRF token) in the
//! request before it reaches a handler. Every answer carries
//! [`crate::ui::SECURITY_HEADERS`].

use axum::extract::rejection::QueryRejection;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Extension, Router};

use chrono::Utc;
use maud::Markup;

use super::error::ApiError;
use super::{ApiState, ui_actions};
use crate::ingest::socket::peer::Peer;
use crate::operator::status::status_value;
use crate::store::audit::Actor;
use crate::store::browse::{WINDOW, WriteQuery, needs_window};
use crate::store::ops::Bucket;
use crate::ui;
use crate::ui::chart::fill;
use crate::ui::writes::{RecordLink, Window, WriteForm};

/// Who is looking at the dashboard: what the pages need ([`ui::Viewer`]) and whom the
/// audit log names for what they do.
#[derive(Debug, Clone)]
pub struct Visitor {
    pub viewer: ui::Viewer,
    pub actor: Actor,
}

/// The overview's figures alone, which the page's script fetches every few seconds.
pub const OVERVIEW_PART: &str = "/ui/overview";

/// Every dashboard route, for a listener to wrap in its own way of knowing the
/// [`Visitor`].
pub fn routes() -> Router<ApiState> {
    Router::new()
        .route("/ui", get(root))
        .route("/ui/", get(overview_page))
        .route(OVERVIEW_PART, get(overview_part))
        .route("/ui/writes", get(writes_page))
        .route("/ui/writes/{trace_id}", get(write_page))
        .route("/ui/writes/{trace_id}/retry", post(ui_actions::retry_one))
        .route(
            "/ui/writes/{trace_id}/discard",
            get(ui_actions::discard_one_page).post(ui_actions::discard_one),
        )
        .route(
            "/ui/writes/{trace_id}/edit",
            get(ui_actions::edit_page).post(ui_actions::edit),
        )
        .route(
            "/ui/bulk",
            get(ui_actions::bulk_page).post(ui_actions::bulk),
        )
        .route("/ui/audit", get(audit_page))
        .route("/ui/app.css", get(css))
        .route("/ui/app.js", get(js))
}

/// On the socket: the visitor is the Unix user who connected; operators
/// (`socket.operators`, the daemon's user, root) may act; the forms' token is the
/// daemon's for its life (only someone who can read a page has it).
pub async fn socket_visitor(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    mut request: Request,
    next: Next,
) -> Response {
    let visitor = Visitor {
        viewer: ui::Viewer {
            may_act: state.operators.may_operate(peer).is_ok(),
            csrf: state.ui_token.to_string(),
            login: None,
        },
        actor: Actor::unix(peer.uid, "dashboard"),
    };
    request.extensions_mut().insert(visitor);
    next.run(request).await
}

/// `GET /ui`: the dashboard lives at `/ui/`.
pub async fn root() -> Redirect {
    Redirect::permanent("/ui/")
}

/// A whole page with `content`, answered with `status`.
pub fn page(
    state: &ApiState,
    visitor: &Visitor,
    status: StatusCode,
    (title, main_id): (&str, &str),
    content: Markup,
) -> Response {
    let database = state.config.database.name();
    let mut r = html(ui::page(title, &database, main_id, &visitor.viewer, content).into_string());
    *r.status_mut() = status;
    r
}

/// `GET /ui/`: the overview page.
pub async fn overview_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
) -> Result<Response, ApiError> {
    let content = overview(&state).await?;
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Overview", "overview"),
        content,
    ))
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
    Extension(visitor): Extension<Visitor>,
    form: Result<Query<WriteForm>, QueryRejection>,
) -> Result<Response, ApiError> {
    let v = &visitor.viewer;
    let bad = |form: &WriteForm, e: &str| {
        let content = ui::writes::list(form, maud::html! {}, Some(e), &[], &[], None, &[]);
        page(
            &state,
            &visitor,
            StatusCode::BAD_REQUEST,
            ("Writes", "writes"),
            content,
        )
    };
    let form = match form {
        Ok(Query(form)) => form,
        Err(e) => return Ok(bad(&WriteForm::default(), &e.body_text())),
    };
    let mut query = match form.query(Utc::now()) {
        Ok(q) => q,
        Err(e) => return Ok(bad(&form, &e)),
    };
    // A filter no index serves looks among WINDOW writes at a time (see needs_window).
    let window = match needs_window(&query) {
        false => None,
        true => {
            let to = match query.before_id {
                Some(id) => id,
                None => state.store.last_write_id().await? + 1,
            };
            let from = (to - WINDOW).max(1);
            query.floor_id = Some(from);
            Some(Window { from, to })
        }
    };
    // Three independent reads, each on a connection of its own: the page takes as long
    // as the slowest, not the sum (on PostgreSQL at a million writes, a search's window
    // and the error groups took 60 and 25 ms).
    let groups_query = WriteQuery {
        limit: 20,
        ..query.clone()
    };
    let (lines, groups, exact) = tokio::try_join!(
        state.store.find_writes(&query),
        state.store.error_groups(&groups_query),
        async {
            match &query.text {
                Some(text) => state.store.exact_ids(text).await,
                None => Ok(Vec::new()),
            }
        },
    )?;
    let offer = ui::actions::bulk_offer(&form, v);
    let content = ui::writes::list(&form, offer, None, &lines, &groups, window, &exact);
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Writes", "writes"),
        content,
    ))
}

/// `GET /ui/writes/{trace_id}`: one write and its history (404 when unknown).
pub async fn write_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Path(trace_id): Path<String>,
) -> Result<Response, ApiError> {
    let Some(write) = state.store.get_write(&trace_id).await? else {
        return Ok(no_such_write(&state, &visitor, &trace_id));
    };
    let history = state.store.error_history(&trace_id).await?;
    let link = state.config.ui.portal_id.map(|portal_id| RecordLink {
        app_url: state.config.ui.app_url.clone(),
        portal_id,
    });
    let buttons = ui::actions::write_buttons(&write, &visitor.viewer);
    let content = ui::writes::one(&write, &history, buttons, link.as_ref());
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        (&write.trace_id, "write"),
        content,
    ))
}

/// The 404 page of a trace id no write has.
pub fn no_such_write(state: &ApiState, visitor: &Visitor, trace_id: &str) -> Response {
    let content = maud::html! {
        h2 { "No such write" }
        p { "No write has the trace id " code { (trace_id) } "." }
        p { a href="/ui/writes" { "← All writes" } }
    };
    page(
        state,
        visitor,
        StatusCode::NOT_FOUND,
        ("No such write", "write"),
        content,
    )
}

/// `GET /ui/audit?before=ID`: the audit log, newest first.
pub async fn audit_page(
    State(state): State<ApiState>,
    Extension(visitor): Extension<Visitor>,
    Query(at): Query<AuditForm>,
) -> Result<Response, ApiError> {
    let lines = state.store.audit_log(at.before, ui::audit::PAGE).await?;
    let content = ui::audit::audit(&lines);
    Ok(page(
        &state,
        &visitor,
        StatusCode::OK,
        ("Audit log", "audit"),
        content,
    ))
}

/// The audit page's query: `before` the last id of the page before.
#[derive(Debug, Default, serde::Deserialize)]
pub struct AuditForm {
    before: Option<i64>,
}

/// `GET /ui/app.css`.
pub async fn css() -> Response {
    asset("text/css; charset=utf-8", ui::CSS)
}

/// `GET /ui/app.js`.
pub async fn js() -> Response {
    asset("text/javascript; charset=utf-8", ui::JS)
}

/// An HTML answer with the dashboard's security headers.
pub fn html(body: String) -> Response {
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
