//! The socket's accept loop and connections, with the limits a daemon on a shared host
//! needs against clients that are slow, idle, or many (issue 9):
//!
//! - At most `socket.max_connections` connections. A new one past the cap closes the
//!   connection that has gone the longest without a request answered (idle since long
//!   ago, or sending its headers since long ago); a connection answering a request is
//!   never closed for room (one caught becoming busy as it is chosen finishes its answer
//!   first). When every connection is answering, the new one gets
//!   `503 too_many_connections` with `Retry-After` and is closed (at most 64 are being
//!   answered so at once; past that, closed unanswered). So a flood of idle or byte-a-second clients costs a bounded number of
//!   connections and never keeps a normal client waiting.
//! - A connection may be idle for `socket.idle_timeout` and take `socket.header_timeout`
//!   to send a request's headers (see `conn`); reading the body is bounded by
//!   `socket.body_timeout` in the handler.
//! - Closing a connection (idle, slow, evicted, at shutdown) lets hyper finish the answer
//!   it is writing; one not answering a request is dropped after at most 1 s.
//! - At shutdown, the listener closes, idle connections close at once, requests being
//!   answered get their answer (and the connection closes after it), and whatever is
//!   left after `socket.shutdown_timeout` is dropped.
//!
//! hyper serves each connection (HTTP/1.1); the router answers the requests.
//!
//! The dashboard's TCP listener (`ui.listen`, see `crate::ingest::web`) is served by the
//! same loop under the same `socket.*` limits, with a count of its own (see [`Accept`]).

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
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

/// How long a connection being closed (idle, evicted, at shutdown) has to flush what it
/// was sending before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// Refused connections being answered at once; past it, more are closed unanswered (each
/// holds a file descriptor for up to 1.2 s).
const MAX_REFUSING: usize = 64;

/// A listener the server accepts connections from: the Unix socket, or the dashboard's
/// TCP address.
pub trait Accept: Send + 'static {
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// What handlers learn of the other end, as `ConnectInfo<Self::Info>`.
    type Info: Clone + Send + Sync + 'static;
    fn accept_one(
        &self,
    ) -> impl Future<Output = std::io::Result<(Self::Stream, Self::Info)>> + Send;
}

impl Accept for UnixListener {
    type Stream = UnixStream;
    /// The peer's credentials (who may act is decided from them).
    type Info = Peer;
    async fn accept_one(&self) -> std::io::Result<(UnixStream, Peer)> {
        let (stream, _) = self.accept().await?;
        let peer = Peer::of(&stream);
        Ok((stream, peer))
    }
}

impl Accept for TcpListener {
    type Stream = TcpStream;
    /// The client's address (named in the log of a refused login).
    type Info = SocketAddr;
    async fn accept_one(&self) -> std::io::Result<(TcpStream, SocketAddr)> {
        self.accept().await
    }
}

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
    /// Cancelled to close the connection: at once when it is idle, after its answer when
    /// a request is being answered.
    close: CancellationToken,
    /// Cancelled to drop the connection at once (the shutdown deadline passed).
    kill: CancellationToken,
}

type Registry = Arc<Mutex<HashMap<u64, Entry>>>;

/// Counts in `metrics`, when these connections are counted.
fn count(metrics: &Option<Arc<Metrics>>, f: impl FnOnce(&Metrics)) {
    if let Some(m) = metrics {
        f(m);
    }
}

fn lock(registry: &Registry) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
    registry.lock().unwrap_or_else(|e| e.into_inner())
}

/// Serves `app` on `listener` until `shutdown`, then drains as described above. `metrics`
/// counts the socket's connections (`None` for the dashboard's TCP listener, whose
/// connections are not the socket's).
pub async fn serve<L: Accept>(
    listener: L,
    app: Router,
    limits: ServerLimits,
    metrics: Option<Arc<Metrics>>,
    shutdown: CancellationToken,
) {
    let registry: Registry = Arc::default();
    let tasks = TaskTracker::new();
    // Cancelled at shutdown: each connection finishes the request it is answering.
    let draining = CancellationToken::new();
    let refusing = Arc::new(tokio::sync::Semaphore::new(MAX_REFUSING));
    let mut next_id = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept_one() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let entry = Entry {
            state: ConnState::new(Instant::now()),
            close: CancellationToken::new(),
            kill: CancellationToken::new(),
        };
        let (state, close, kill) = (entry.state.clone(), entry.close.clone(), entry.kill.clone());
        {
            let mut open = lock(&registry);
            if open.len() >= limits.max_connections {
                match evictee(open.iter().map(|(id, e)| (*id, e.state.phase()))) {
                    Some(id) => {
                        if let Some(old) = open.remove(&id) {
                            old.close.cancel();
                            count(&metrics, |m| m.connection_closed("evicted"));
                        }
                    }
                    None => {
                        drop(open);
                        count(&metrics, |m| m.connection_closed("refused"));
                        if let Ok(turn) = refusing.clone().try_acquire_owned() {
                            tasks.spawn(async move {
                                refuse(stream).await;
                                drop(turn);
                            });
                        }
                        continue;
                    }
                }
            }
            next_id += 1;
            open.insert(next_id, entry);
        }
        count(&metrics, |m| m.connections(1));
        let conn = Connection {
            id: next_id,
            peer,
            state,
            close,
            kill,
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
            lock(&registry).values().map(|e| e.kill.clone()).collect();
        warn!(
            connections = left.len(),
            "socket.shutdown_timeout passed; dropping the connections still open"
        );
        for kill in left {
            kill.cancel();
        }
        tasks.wait().await;
    }
}

/// One accepted connection.
struct Connection<I> {
    id: u64,
    peer: I,
    state: ConnState,
    close: CancellationToken,
    kill: CancellationToken,
    draining: CancellationToken,
    timeouts: Timeouts,
    registry: Registry,
    metrics: Option<Arc<Metrics>>,
}

/// Takes a connection out of the registry and the gauge when its task ends, however it
/// ends (a panic in a handler included).
struct Deregister {
    id: u64,
    registry: Registry,
    metrics: Option<Arc<Metrics>>,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        lock(&self.registry).remove(&self.id);
        count(&self.metrics, |m| m.connections(-1));
    }
}

impl<I: Clone + Send + Sync + 'static> Connection<I> {
    async fn serve<S>(self, stream: S, app: Router)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (peer, busy) = (self.peer.clone(), self.state.clone());
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            // Busy from here until the handler has its answer.
            let guard = busy.begin();
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
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
        let _deregister = Deregister {
            id: self.id,
            registry: self.registry.clone(),
            metrics: self.metrics.clone(),
        };
        let recheck = self.timeouts.idle.min(self.timeouts.header);
        // Once closing: hyper finishes the answer in progress (or closes at once when
        // idle), and a connection that is not answering is dropped after CLOSE_GRACE.
        let mut closing: Option<Instant> = None;
        loop {
            let now = Instant::now();
            let phase = self.state.phase();
            let next = match closing {
                Some(since) => {
                    // The grace runs from the later of the close and the end of the last
                    // answer's handler: an answer finished after the close still gets
                    // CLOSE_GRACE to be written.
                    let from = match phase {
                        Phase::Busy(_) => now,
                        Phase::Idle(answered) => since.max(answered),
                        Phase::Headers(_) => since,
                    };
                    if !matches!(phase, Phase::Busy(_)) && now >= from + CLOSE_GRACE {
                        break;
                    }
                    (from + CLOSE_GRACE).max(now + Duration::from_millis(50))
                }
                None => match verdict(phase, now, self.timeouts) {
                    Ok(deadline) => deadline.map_or(now + recheck, |d| d.min(now + recheck)),
                    Err(expired) => {
                        let reason = match expired {
                            Expired::Idle => "idle",
                            Expired::SlowHeaders => "slow_headers",
                        };
                        count(&self.metrics, |m| m.connection_closed(reason));
                        debug!(reason, "closing a socket connection");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(now);
                        continue;
                    }
                },
            };
            tokio::select! {
                ended = conn.as_mut() => {
                    if let Err(e) = ended {
                        debug!(error = %e, "socket connection ended with an error");
                    }
                    break;
                }
                // Past the shutdown deadline.
                _ = self.kill.cancelled() => break,
                // Evicted for room (already counted): a request being answered still is.
                _ = self.close.cancelled(), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = self.draining.cancelled(), if closing.is_none() => {
                    count(&self.metrics, |m| m.connection_closed("shutdown"));
                    conn.as_mut().graceful_shutdown();
                    closing = Some(Instant::now());
                }
                _ = tokio::time::sleep_until(next) => {}
            }
        }
    }
}

/// Answers a connection there is no room for: reads what the client sent of its request
/// (briefly), answers 503 with `Retry-After`, and closes.
async fn refuse<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
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
