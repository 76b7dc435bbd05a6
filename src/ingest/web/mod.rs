//! The dashboard on TCP (`ui.listen`, off by default): the same pages and actions as on
//! the socket (`crate::ingest::socket::routes::ui`), behind a login ([`login`], with
//! [`sessions`] in memory). Nothing else of the socket's API is served here: no enqueue,
//! no `/v1/*`, no metrics.
//!
//! The listener serves plain HTTP. Reach it through `ssh -L` or a proxy that ends TLS
//! (then set `ui.secure_cookie`). Its connections are served by the socket's own loop
//! (`crate::ingest::socket::server`) under the same `socket.*` limits (connections,
//! idle and header timeouts, shutdown), counted apart from the socket's; at most
//! [`MAX_REQUESTS`] requests are answered at once. It is not built to face the internet
//! directly (plain HTTP, passwords).

pub mod login;
pub mod sessions;
pub mod throttle;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::middleware::from_fn_with_state;
use axum::response::Redirect;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::UiUser;
use crate::ingest::socket::routes::ApiState;
use crate::ingest::socket::routes::ui;
use crate::ingest::socket::server::{self, ServerLimits};
use login::Logins;
use sessions::Sessions;

/// Requests answered at once; more wait.
pub const MAX_REQUESTS: usize = 64;

/// The TCP dashboard's routes, for `users`.
pub fn router(state: ApiState, users: Vec<UiUser>) -> Router {
    let logins = Logins {
        stand_in: UiUser::stand_in(users.iter().any(UiUser::is_hashed)),
        users: Arc::new(users),
        sessions: Arc::new(Sessions::new(state.config.ui.session_timeout)),
        throttle: Arc::new(throttle::Throttle::new()),
    };
    let behind_login = ui::routes()
        .route("/ui/logout", post(login::logout))
        .route_layer(from_fn_with_state(logins.clone(), login::require_login));
    Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/login", get(login::login_form).post(login::login))
        .merge(behind_login)
        .layer(axum::Extension(logins))
        // Global: one count for every route (a plain concurrency limit layered on a
        // router counts each route apart).
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(MAX_REQUESTS))
        .with_state(state)
}

/// Binds `addr` (an error stops the daemon at start: a dashboard asked for and not served
/// is a broken config).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the dashboard on `listener` to `users` until `shutdown`, under `limits`;
/// requests being answered finish.
pub async fn serve(
    listener: TcpListener,
    state: ApiState,
    users: Vec<UiUser>,
    limits: ServerLimits,
    shutdown: CancellationToken,
) {
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, users = users.len(), "dashboard listening on TCP");
        if !addr.ip().is_loopback() && !state.config.ui.secure_cookie {
            warn!(
                %addr,
                "the dashboard listens beyond this machine in plain HTTP and ui.secure_cookie \
                 is off: passwords and session cookies cross the network in clear unless a \
                 proxy that ends TLS is in front (then set ui.secure_cookie)"
            );
        }
    }
    let app = router(state, users);
    server::serve(listener, app, limits, None, shutdown).await;
}
