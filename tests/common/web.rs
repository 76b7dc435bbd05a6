//! Raw HTTP/1.1 to the dashboard, as `curl --unix-socket` or a browser sends it: one
//! request a connection, the answer read to its end.

use std::path::Path;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};

/// An answer: its status code, its headers (names lower-cased) and its body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name` (lower case), or "".
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// The value of the hidden `csrf` field of the page's first form.
    pub fn csrf(&self) -> String {
        let at = self
            .body
            .find("name=\"csrf\" value=\"")
            .unwrap_or_else(|| panic!("no CSRF field in {}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').unwrap()].to_owned()
    }
}

/// Where a request goes.
#[derive(Debug, Clone)]
pub enum To<'a> {
    Socket(&'a Path),
    Tcp(std::net::SocketAddr),
}

/// Sends `method path` with `headers` and a form `body` (when not empty), and reads the
/// answer.
pub async fn request(
    to: &To<'_>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    match to {
        To::Socket(p) => {
            exchange(
                UnixStream::connect(p).await.unwrap(),
                "localhost",
                method,
                path,
                headers,
                body,
            )
            .await
        }
        To::Tcp(addr) => {
            exchange(
                TcpStream::connect(addr).await.unwrap(),
                &addr.to_string(),
                method,
                path,
                headers,
                body,
            )
            .await
        }
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Reply {
    // A `Host` or `Content-Type` among `headers` replaces the one sent by default.
    let given = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name));
    let host = given("host").map_or(host, |(_, v)| *v);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (k, v) in headers {
        if !k.eq_ignore_ascii_case("host") {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    if method == "POST" {
        if given("content-type").is_none() {
            head.push_str("Content-Type: application/x-www-form-urlencoded\r\n");
        }
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).await.unwrap();
    // A server that refuses on the head alone may answer and close before the body is
    // sent: the body's write may then fail, and the answer is read all the same.
    let _ = s.write_all(body.as_bytes()).await;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    while let Ok(n) = s.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// A form body from its fields.
pub fn form(fields: &[(&str, &str)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}
