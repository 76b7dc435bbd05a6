//! The socket's accept loop and connections, with the limits a daemon on a shared host
//! needs against clients that are slow, idle, or many (issue 9):
//!
//! - At most `socket.max_connections` connections. A new one past the cap closes the
//!   connection that has gone the longest without a request answered (idle since long
//!   ago, or sending its headers since long ago); a connection answering a request is
//!   never closed for room. When every connection is
//!   answering, the new one gets `503 too_many_connections` with `Retry-After` and is
//!   closed. So a flood of idle or byte-a-second clients costs a bounded number of
//!   connections and never keeps a normal client waiting.
//! - A connection may be idle for `socket.idle_timeout` and take `socket.header_timeout`
//!   to send a request's headers (see `conn`); reading the body is bounded by
//!   `socket.body_timeout` in the handler.
//! - At shutdown, the listener closes, idle connections close at once, requests being
//!   answered get their answer (and the connection closes after it), and whatever is
//!   left after `socket.shutdown_timeout` is dropped.
//!
//! hyper serves each connection (HTTP/1.1); the router answers the requests.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, warn};

use super::conn::{ConnState, Expired, Phase, Timeouts, Tracked, evictee, verdict};
use super::peer::Peer;
use crate::runtime::metrics::Metrics;

/// The largest request head (start line and headers) read; larger gets 431.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How the server treats connections; from `socket.*`.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub max_connections: usize,
    pub timeouts: Timeouts,
    pub shutdown_timeout: Duration,
}

/// One open connection, as the accept loop sees it.
struct Entry {
    state: ConnState,
    /// Cancelled to drop the connection at once.
    close: CancellationToken,
}

type Registry = Arc<Mutex<HashMap<u64, Entry>>>;

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `app` on `listener` until `shutdown`, then drains as described above.
pub async fn serve(
    listener: UnixListener,
    app: Router,
    limits: ServerLimits,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) {
    let registry: Registry = Arc::default();
    let tasks = TaskTracker::new();
    // Cancelled at shutdown: each connection finishes the request it is answering.
    let draining = CancellationToken::new();
    let mut next_id = 0u64;
    loop {
        let stream = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "accepting a socket connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let peer = Peer::of(&stream);
        let entry = Entry {
            state: ConnState::new(Instant::now()),
            close: CancellationToken::new(),
        };
        let (state, close) = (entry.state.clone(), entry.close.clone());
        {
            let mut open = lock(&registry);
            if open.len() >= limits.max_connections {
                match evictee(open.iter().map(|(id, e)| (*id, e.state.phase()))) {
                    Some(id) => {
                        if let Some(old) = open.remove(&id) {
                            old.close.cancel();
                            metrics.connection_closed("evicted");
                        }
                    }
                    None => {
                        drop(open);
                        metrics.connection_closed("refused");
                        tasks.spawn(refuse(stream));
                        continue;
                    }
                }
            }
            next_id += 1;
            open.insert(next_id, entry);
        }
        metrics.connections(1);
        let conn = Connection {
            id: next_id,
            peer,
            state,
            close,
            draining: draining.clone(),
            timeouts: limits.timeouts,
            registry: registry.clone(),
            metrics: metrics.clone(),
        };
        tasks.spawn(conn.serve(stream, app.clone()));
    }
    // New connections are refused from here on (the socket file goes with the caller).
    drop(listener);
    draining.cancel();
    tasks.close();
    if tokio::time::timeout(limits.shutdown_timeout, tasks.wait())
        .await
        .is_err()
    {
        let left: Vec<CancellationToken> =
            lock(&registry).values().map(|e| e.close.clone()).collect();
        warn!(
            connections = left.len(),
            "socket.shutdown_timeout passed; dropping the connections still open"
        );
        for close in left {
            close.cancel();
        }
        tasks.wait().await;
    }
}

/// One accepted connection.
struct Connection {
    id: u64,
    peer: Peer,
    state: ConnState,
    close: CancellationToken,
    draining: CancellationToken,
    timeouts: Timeouts,
    registry: Registry,
    metrics: Arc<Metrics>,
}

impl Connection {
    async fn serve(self, stream: UnixStream, app: Router) {
        let (peer, busy) = (self.peer, self.state.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // Busy from here until the handler has its answer.
            let guard = busy.begin();
            request.extensions_mut().insert(ConnectInfo(peer));
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(axum::body::Body::new)).await;
                drop(guard);
                Ok::<_, Infallible>(response.unwrap_or_else(|never| match never {}))
            }
        });
        let mut builder = http1::Builder::new();
        // Our own deadlines (see `conn`) cover the headers and the idle time.
        builder
            .header_read_timeout(None)
            .max_buf_size(MAX_HEADER_BYTES.max(8192 + 1));
        let io = TokioIo::new(Tracked::new(stream, self.state.clone()));
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let recheck = self.timeouts.idle.min(self.timeouts.header);
        let mut graceful = false;
        let reason = loop {
            let now = Instant::now();
            let phase = self.state.phase();
            let deadline = match verdict(phase, now, self.timeouts) {
                Ok(deadline) => deadline.map_or(now + recheck, |d| d.min(now + recheck)),
                Err(Expired::Idle) => break Some("idle"),
                Err(Expired::SlowHeaders) => break Some("slow_headers"),
            };
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        debug!(error = %e, "socket connection ended with an error");
                    }
                    break None;
                }
                // Evicted (already counted) or past the shutdown deadline.
                _ = self.close.cancelled() => break None,
                _ = self.draining.cancelled(), if !graceful => {
                    if !matches!(self.state.phase(), Phase::Busy(_)) {
                        break Some("shutdown");
                    }
                    // Answer the request being handled, then close.
                    conn.as_mut().graceful_shutdown();
                    graceful = true;
                }
                _ = tokio::time::sleep_until(deadline) => {}
            }
        };
        if let Some(reason) = reason {
            debug!(reason, "closing a socket connection");
            self.metrics.connection_closed(reason);
        }
        lock(&self.registry).remove(&self.id);
        self.metrics.connections(-1);
    }
}

/// Answers a connection there is no room for: reads what the client sent of its request
/// (briefly), answers 503 with `Retry-After`, and closes.
async fn refuse(mut stream: UnixStream) {
    const BODY: &str = r#"{"error":"too_many_connections","message":"the daemon is answering socket.max_connections requests already; try again shortly"}"#;
    let mut head = [0u8; 4096];
    let _ = tokio::time::timeout(Duration::from_millis(200), stream.read(&mut head)).await;
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{BODY}",
        BODY.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await
    })
    .await;
}
