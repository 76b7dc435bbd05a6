//! Logging in to the dashboard on TCP: the login form, the session cookie, logging out,
//! and the layer that lets no dashboard request through without a live session.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Strict` (no other site's page
//! sends it), `Path=/ui`, and `Secure` with `ui.secure_cookie`. How often logins may be
//! tried is [`throttle`](super::throttle)'s; a try's form is read under a small limit of
//! its own, outside the socket's body budget, so guessers hold no memory producers need.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use subtle::ConstantTimeEq;
use tracing::info;

use super::sessions::Sessions;
use super::throttle::Throttle;
use crate::config::UiUser;
use crate::ingest::socket::routes::ui::OVERVIEW_PART;
use crate::ingest::socket::routes::ui::{Visitor, html};
use crate::ingest::socket::routes::{ApiState, read_body};
use crate::store::audit::Actor;
use crate::ui;
use crate::ui::csrf;

/// The session cookie's name.
pub const COOKIE: &str = "hubspot_outbox_session";

/// The largest login form read (a name and a password need far less).
const MAX_LOGIN_FORM: usize = 4096;

/// The longest user name written to the log as typed.
const LOGGED_NAME: usize = 64;

/// What the TCP dashboard's login needs beside the API's state.
#[derive(Clone)]
pub struct Logins {
    /// Who may log in (`ui.users_file`, read when the daemon started).
    pub users: Arc<Vec<UiUser>>,
    pub sessions: Arc<Sessions>,
    pub throttle: Arc<Throttle>,
    /// Whose password is checked when the name typed is nobody's: like the real users'
    /// (hashed when any is), so that takes as long.
    pub stand_in: UiUser,
}

/// The session id a request's cookie carries.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
}

/// Lets a request through only with a live session, which it puts in the request as its
/// [`Visitor`]; the stylesheet and script pass (the login page needs them). Without one,
/// a page asks to log in, anything else is 401.
pub async fn require_login(
    State(logins): State<Logins>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path();
    if matches!(path, "/ui/app.css" | "/ui/app.js") {
        return next.run(request).await;
    }
    // The overview's own refresh is not the user's doing: it does not keep a forgotten
    // tab's session alive.
    let touch = path != OVERVIEW_PART;
    let session = session_id(request.headers()).and_then(|id| logins.sessions.get(&id, touch));
    let Some(session) = session else {
        if request.method() == axum::http::Method::GET {
            return Redirect::to("/ui/login").into_response();
        }
        let mut r = html(login_page(Some("Log in first: your session ended.")));
        *r.status_mut() = StatusCode::UNAUTHORIZED;
        return r;
    };
    let visitor = Visitor {
        viewer: ui::Viewer {
            may_act: session.operator,
            csrf: session.csrf,
            login: Some(session.user.clone()),
        },
        actor: Actor {
            who: session.user,
            via: "dashboard-tcp",
        },
    };
    request.extensions_mut().insert(visitor);
    next.run(request).await
}

fn login_page(error: Option<&str>) -> String {
    ui::page(
        "Log in",
        "",
        "login",
        &ui::Viewer::default(),
        ui::login::login(error),
    )
    .into_string()
}

/// `GET /ui/login`.
pub async fn login_form() -> Response {
    html(login_page(None))
}

/// The login form's fields.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
pub struct LoginForm {
    user: String,
    password: String,
}

/// `POST /ui/login`: a session and its cookie for the right password; the form again,
/// after a second, for a wrong one (which does not say whether the user exists). Both
/// are logged with the client's address (behind a proxy, the proxy's) and the user name
/// as typed, quoted (so a name holding a line break cannot forge a log line).
pub async fn login(
    State(state): State<ApiState>,
    Extension(logins): Extension<Logins>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let refuse = |status: StatusCode, why: &str| {
        let mut r = html(login_page(Some(why)));
        *r.status_mut() = status;
        r
    };
    let post = csrf::Post::from_headers(&headers, None);
    if let Err(why) = csrf::same_origin(&post) {
        return refuse(StatusCode::FORBIDDEN, why);
    }
    if let Err(wait) = logins.throttle.take(client.ip()) {
        info!(%client, "dashboard login refused: too many tries");
        let mut r = refuse(
            StatusCode::TOO_MANY_REQUESTS,
            "Too many login tries; wait a few seconds and try again.",
        );
        let seconds = wait.as_secs() + 1;
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return r;
    }
    let read = tokio::time::timeout(
        state.config.socket.body_timeout,
        axum::body::to_bytes(body, MAX_LOGIN_FORM),
    )
    .await;
    let Ok(Ok(bytes)) = read else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the form could not be read (too large, or too slow)",
        );
    };
    let Ok(form) = serde_urlencoded::from_bytes::<LoginForm>(&bytes) else {
        return refuse(StatusCode::BAD_REQUEST, "the form could not be read");
    };
    // The name is looked for in constant time among all; one password is checked, off the
    // async threads (an Argon2 hash takes tens of milliseconds), a stand-in's when the
    // name is nobody's, so the time taken does not say which names exist.
    let mut named = None;
    for u in logins.users.iter() {
        if bool::from(u.name.as_bytes().ct_eq(form.user.as_bytes())) {
            named = Some(u.clone());
        }
    }
    let stand_in = named.is_none();
    let checked = named.unwrap_or_else(|| logins.stand_in.clone());
    let password = form.password;
    let found = tokio::task::spawn_blocking(move || {
        (!stand_in && checked.password_is(&password)).then_some(checked)
    })
    .await
    .ok()
    .flatten();
    let Some(user) = found else {
        let typed: String = form.user.chars().take(LOGGED_NAME).collect();
        info!(user = ?typed, %client, "dashboard login refused");
        return refuse(StatusCode::UNAUTHORIZED, "Wrong user or password.");
    };
    info!(user = %user.name, operator = user.operator, %client, "dashboard login");
    let id = logins.sessions.start(&user.name, user.operator);
    let secure = if state.config.ui.secure_cookie {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict{secure}");
    let mut r = Redirect::to("/ui/").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).expect("a hex id is a valid header value"),
    );
    r
}

/// `POST /ui/logout` (with the session's CSRF token): ends the session.
pub async fn logout(
    Extension(logins): Extension<Logins>,
    Extension(visitor): Extension<Visitor>,
    State(state): State<ApiState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let held = match read_body(&state, body).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    #[derive(serde::Deserialize)]
    struct Form {
        csrf: Option<String>,
    }
    let token = serde_urlencoded::from_bytes::<Form>(&held.bytes)
        .ok()
        .and_then(|f| f.csrf);
    let post = csrf::Post::from_headers(&headers, token.as_deref());
    if let Err(why) = csrf::check(&visitor.viewer.csrf, &post) {
        let mut r = html(login_page(Some(why)));
        *r.status_mut() = StatusCode::FORBIDDEN;
        return r;
    }
    if let Some(id) = session_id(&headers) {
        logins.sessions.end(&id);
    }
    let mut r = Redirect::to("/ui/login").into_response();
    r.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "hubspot_outbox_session=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0",
        ),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; hubspot_outbox_session=abc; b=2"),
        );
        assert_eq!(session_id(&h).as_deref(), Some("abc"));
        assert_eq!(session_id(&HeaderMap::new()), None);
    }
}
