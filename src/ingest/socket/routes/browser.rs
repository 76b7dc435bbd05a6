//! What the socket answers a browser (any request carrying `Origin` or `Sec-Fetch-*`,
//! which browsers send and programs do not), and every request for the dashboard: only
//! requests addressed to the socket by a name it answers to (`crate::ui::host`: loopback
//! names and `ui.allowed_hosts`), so a page whose own name was made to resolve to
//! 127.0.0.1 (DNS rebinding, behind `ssh -L`) gets nothing; and, outside the dashboard
//! (whose forms have their own check, `crate::ui::csrf`), no change sent from another
//! site's page: a form of `text/plain` may carry a JSON body to `POST /v1/retry` without
//! the browser asking first. Programs (curl, producers, the command line) send neither
//! header and are not affected.

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::ui::{csrf, host};

/// The layer described above.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let from_browser = ["origin", "sec-fetch-site", "sec-fetch-mode"]
        .iter()
        .any(|name| headers.contains_key(*name));
    let path = request.uri().path();
    let dashboard = path == "/ui" || path.starts_with("/ui/");
    if !(from_browser || dashboard) {
        return next.run(request).await;
    }
    let addressed_to = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !host::allowed(addressed_to, &state.config.ui.allowed_hosts) {
        let why = format!(
            "this socket answers browsers only when they address it as localhost, 127.0.0.1 \
             or [::1] (or a name in ui.allowed_hosts); this request was addressed to `{}`\n",
            addressed_to.unwrap_or("no host").escape_debug()
        );
        return (StatusCode::MISDIRECTED_REQUEST, why).into_response();
    }
    if from_browser && !dashboard && !matches!(*request.method(), Method::GET | Method::HEAD) {
        let post = csrf::Post::from_headers(headers, None);
        if let Err(why) = csrf::same_origin(&post) {
            return (StatusCode::FORBIDDEN, format!("{why}\n")).into_response();
        }
    }
    next.run(request).await
}
