//! A minimal HTTP/1.1 client for the daemon's Unix socket: one kept-alive connection,
//! one request at a time. Used by `hubspot-outbox enqueue`, the tests and the benchmarks.

use std::path::Path;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to `{path}`: {source} (is the daemon running?)")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("request to the daemon failed: {0}")]
    Http(#[from] hyper::Error),
    #[error("bad request: {0}")]
    Request(#[from] hyper::http::Error),
}

/// One connection to the daemon.
pub struct SocketClient {
    sender: SendRequest<Full<Bytes>>,
}

/// A response: status and whole body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
    /// `Retry-After` in seconds, when the daemon sent one (every 503 has it).
    pub retry_after: Option<u64>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

impl SocketClient {
    pub async fn connect(path: &Path) -> Result<Self, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|source| ClientError::Connect {
                path: path.display().to_string(),
                source,
            })?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // The connection task drives the socket; it ends when `sender` is dropped.
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(Self { sender })
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        content_type: Option<&str>,
        body: impl Into<Bytes>,
    ) -> Result<Answer, ClientError> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, "localhost");
        if let Some(ct) = content_type {
            request = request.header(hyper::header::CONTENT_TYPE, ct);
        }
        let request = request.body(Full::new(body.into()))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            body,
            retry_after,
        })
    }

    pub async fn get(&mut self, path: &str) -> Result<Answer, ClientError> {
        self.send(Method::GET, path, None, Bytes::new()).await
    }

    /// `POST /v1/writes` with an NDJSON body.
    pub async fn post_ndjson(&mut self, body: impl Into<Bytes>) -> Result<Answer, ClientError> {
        self.send(
            Method::POST,
            "/v1/writes",
            Some("application/x-ndjson"),
            body,
        )
        .await
    }

    /// `POST /v1/writes` with a JSON body.
    pub async fn post_json(&mut self, body: impl Into<Bytes>) -> Result<Answer, ClientError> {
        self.send(Method::POST, "/v1/writes", Some("application/json"), body)
            .await
    }
}
