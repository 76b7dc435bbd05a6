//! How much memory request bodies may take, all together: `limits.max_buffered_bytes` of
//! body bytes held at once across every connection, and at most one large body being
//! parsed per CPU. A body takes its share as its bytes arrive (a client that announces a
//! large body and sends nothing holds nothing); a request whose next bytes find the budget
//! spent is refused at once with 503 and `Retry-After` rather than made to wait, so
//! requests holding part of the budget can never wait on each other. Reading a body is
//! bounded by `socket.body_timeout`. The daemon's memory never grows with the number of
//! clients.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::{Bytes, BytesMut};
use http_body::Body as _;
use http_body_util::BodyExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The shared allowance. Cheap to clone.
#[derive(Clone)]
pub struct BodyBudget {
    bytes: Arc<Semaphore>,
    parsers: Arc<Semaphore>,
}

/// Why a body could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadError {
    /// Larger than `limits.max_request_bytes`.
    TooLarge,
    /// Not received in full within `socket.body_timeout`.
    TimedOut,
    /// The budget is spent by other requests' bodies: try again shortly.
    Busy,
    /// The client broke the body off (or sent a broken chunked encoding).
    Broken(String),
}

/// A body read in full, with the share of the budget it holds until dropped.
pub struct HeldBody {
    pub bytes: Bytes,
    _share: Option<OwnedSemaphorePermit>,
}

impl BodyBudget {
    /// `max_buffered` bytes of bodies at once (at least one request's worth, which config
    /// loading checks); as many large parses at once as the machine has CPUs.
    pub fn new(max_buffered: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            bytes: Arc::new(Semaphore::new(max_buffered.min(Semaphore::MAX_PERMITS))),
            parsers: Arc::new(Semaphore::new(cpus)),
        }
    }

    /// Reads `body` whole, refusing it past `max_bytes`, past `timeout`, and when its next
    /// bytes find the budget spent.
    pub async fn read(
        &self,
        body: Body,
        max_bytes: usize,
        timeout: Duration,
    ) -> Result<HeldBody, ReadError> {
        if body
            .size_hint()
            .exact()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(ReadError::TooLarge);
        }
        tokio::time::timeout(timeout, self.read_within(body, max_bytes))
            .await
            .unwrap_or(Err(ReadError::TimedOut))
    }

    async fn read_within(&self, mut body: Body, max_bytes: usize) -> Result<HeldBody, ReadError> {
        let mut share: Option<OwnedSemaphorePermit> = None;
        let mut buf = BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue; // trailers
            };
            if buf.len() + data.len() > max_bytes {
                return Err(ReadError::TooLarge);
            }
            let n = u32::try_from(data.len()).map_err(|_| ReadError::TooLarge)?;
            let more = self
                .bytes
                .clone()
                .try_acquire_many_owned(n)
                .map_err(|_| ReadError::Busy)?;
            match &mut share {
                Some(s) => s.merge(more),
                None => share = Some(more),
            }
            buf.extend_from_slice(&data);
        }
        Ok(HeldBody {
            bytes: buf.freeze(),
            _share: share,
        })
    }

    /// A turn to parse a large body on a blocking thread; held while it parses.
    pub async fn parse_turn(&self) -> OwnedSemaphorePermit {
        self.parsers
            .clone()
            .acquire_owned()
            .await
            .expect("the parsers' semaphore is never closed")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_body_holds_its_share_until_dropped_and_others_are_refused_meanwhile() {
        let budget = BodyBudget::new(10);
        let held = budget
            .read(Body::from("12345678"), 100, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(&held.bytes[..], b"12345678");
        // 8 of 10 bytes are held: a 5-byte body is refused at once, not made to wait.
        assert_eq!(
            budget
                .read(Body::from("abcde"), 100, Duration::from_secs(1))
                .await
                .err(),
            Some(ReadError::Busy)
        );
        drop(held);
        assert!(
            budget
                .read(Body::from("abcde"), 100, Duration::from_secs(1))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn too_large_is_refused_before_reading() {
        let budget = BodyBudget::new(1000);
        assert_eq!(
            budget
                .read(Body::from("x".repeat(101)), 100, Duration::from_secs(1))
                .await
                .err(),
            Some(ReadError::TooLarge)
        );
    }
}
