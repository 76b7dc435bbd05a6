//! One socket connection's life as the server's limits see it: is a request being
//! answered, since when has it been idle, since when has it been sending a request's
//! headers, and what that means against `socket.idle_timeout` and `socket.header_timeout`.
//!
//! A connection is *busy* from the moment its request's headers are read until the
//! handler has produced the answer (reading the body is the handler's job, under
//! `socket.body_timeout`). A connection that is not busy is either idle (no byte of a next
//! request yet) or reading headers; it may stay idle for `idle_timeout` and take
//! `header_timeout` to send a request's headers, then it is closed. Only connections that
//! are not busy may be closed to make room for a new one (see `server`): closing one never
//! loses a request that was read.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// The timeouts a connection that is not busy is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub idle: Duration,
    pub header: Duration,
}

/// What a connection is doing, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Requests being answered (HTTP/1.1 answers one at a time; a count keeps it honest).
    Busy(usize),
    /// Waiting for the first byte of a request since then.
    Idle(Instant),
    /// Receiving a request's headers since the first byte arrived.
    Headers(Instant),
}

/// Why a connection was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    Idle,
    SlowHeaders,
}

/// The verdict on a connection at `now`: closed, or looked at again at the instant it
/// would expire.
pub fn verdict(phase: Phase, now: Instant, timeouts: Timeouts) -> Result<Option<Instant>, Expired> {
    let (since, limit, reason) = match phase {
        Phase::Busy(_) => return Ok(None),
        Phase::Idle(since) => (since, timeouts.idle, Expired::Idle),
        Phase::Headers(since) => (since, timeouts.header, Expired::SlowHeaders),
    };
    let deadline = since + limit;
    if now >= deadline {
        Err(reason)
    } else {
        Ok(Some(deadline))
    }
}

/// Among connections that are not busy, which one to close to make room: the one that has
/// gone the longest without a request being answered (idle since its last answer, or
/// sending headers since long ago). A client that has just connected is the last to go,
/// so a normal client is not closed before it could send. `None` when every connection
/// is answering a request.
pub fn evictee<K: Copy>(phases: impl IntoIterator<Item = (K, Phase)>) -> Option<K> {
    phases
        .into_iter()
        .filter_map(|(key, phase)| match phase {
            Phase::Busy(_) => None,
            Phase::Idle(since) | Phase::Headers(since) => Some((since, key)),
        })
        .min_by_key(|(since, _)| *since)
        .map(|(_, key)| key)
}

/// The shared, updated record of one connection's phase.
#[derive(Debug, Clone)]
pub struct ConnState(Arc<Mutex<Phase>>);

impl ConnState {
    pub fn new(now: Instant) -> Self {
        Self(Arc::new(Mutex::new(Phase::Idle(now))))
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // A panic elsewhere cannot leave a Phase half-written.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn phase(&self) -> Phase {
        *self.lock()
    }

    /// A request's headers are read: its handler runs. Ends when the guard is dropped.
    pub fn begin(&self) -> BusyGuard {
        let mut phase = self.lock();
        *phase = match *phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            _ => Phase::Busy(1),
        };
        BusyGuard(self.clone())
    }

    /// Bytes arrived: if the connection was idle, a request's headers have begun.
    fn bytes_read(&self) {
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Headers(Instant::now());
        }
    }
}

/// Ends a busy spell when dropped (the handler finished or was cancelled).
#[derive(Debug)]
pub struct BusyGuard(ConnState);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        let mut phase = self.0.lock();
        *phase = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        };
    }
}

/// The connection's stream, telling its [`ConnState`] when bytes arrive.
pub struct Tracked<S> {
    inner: S,
    state: ConnState,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, state: ConnState) -> Self {
        Self { inner, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.state.bytes_read();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timeouts = Timeouts {
        idle: Duration::from_secs(60),
        header: Duration::from_secs(10),
    };

    #[test]
    fn idle_and_slow_headers_expire_busy_never() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        assert_eq!(
            verdict(Phase::Idle(t0), t0 + 59 * s, T),
            Ok(Some(t0 + 60 * s))
        );
        assert_eq!(verdict(Phase::Idle(t0), t0 + 60 * s, T), Err(Expired::Idle));
        assert_eq!(
            verdict(Phase::Headers(t0), t0 + 10 * s, T),
            Err(Expired::SlowHeaders)
        );
        assert_eq!(verdict(Phase::Busy(1), t0 + 3600 * s, T), Ok(None));
    }

    #[test]
    fn the_longest_without_an_answer_goes_first_never_a_busy_one() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let conns = [
            (1, Phase::Headers(t0 + 3 * s)),
            (2, Phase::Idle(t0 + 5 * s)),
            (3, Phase::Idle(t0 + 2 * s)),
            (4, Phase::Busy(1)),
        ];
        assert_eq!(evictee(conns), Some(3));
        // A slow sender of headers goes before a client that has just connected.
        assert_eq!(
            evictee([(1, Phase::Idle(t0 + 9 * s)), (2, Phase::Headers(t0))]),
            Some(2)
        );
        assert_eq!(evictee([(4, Phase::Busy(1))]), None);
    }

    #[tokio::test]
    async fn a_busy_spell_ends_when_its_guard_drops_and_bytes_start_headers() {
        let state = ConnState::new(Instant::now());
        state.bytes_read();
        assert!(matches!(state.phase(), Phase::Headers(_)));
        let guard = state.begin();
        state.bytes_read();
        assert_eq!(state.phase(), Phase::Busy(1));
        drop(guard);
        assert!(matches!(state.phase(), Phase::Idle(_)));
    }
}
