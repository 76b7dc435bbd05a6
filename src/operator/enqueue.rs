//! `hubspot-outbox enqueue`: reads writes (one JSON object per line) and sends them to the
//! daemon in NDJSON chunks. The daemon takes a request all or nothing, so when it names bad
//! lines the chunk is sent again without them; those lines are reported as rejected.

use std::path::Path;

use serde::Serialize;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::client::{ClientError, SocketClient};

/// Most bytes per request, well under the daemon's default 16 MiB limit. A daemon with a
/// lower limit answers 413 and the chunk is halved.
const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// What happened to the input.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub lines_read: usize,
    pub queued: usize,
    pub duplicates: usize,
    pub rejected: Vec<Rejected>,
}

/// A line the daemon (or the local JSON check) refused.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Rejected {
    pub line: usize,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EnqueueError {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("reading the input failed: {0}")]
    Read(#[from] std::io::Error),
    #[error("the daemon answered {status} for the chunk starting at line {line}: {message}")]
    Daemon {
        status: u16,
        line: usize,
        message: String,
    },
}

/// Reads `input` to the end, sending chunks of at most `chunk_size` writes. `progress` is
/// called after every chunk. On error the summary so far is returned with it: every line
/// before the failed chunk was handled, none after.
pub async fn enqueue(
    socket: &Path,
    input: impl AsyncBufRead + Unpin,
    chunk_size: usize,
    mut progress: impl FnMut(&Summary),
) -> Result<Summary, (Summary, EnqueueError)> {
    let mut summary = Summary::default();
    let mut client = match SocketClient::connect(socket).await {
        Ok(c) => c,
        Err(e) => return Err((summary, e.into())),
    };
    let mut lines = input.lines();
    let mut chunk: Vec<(usize, String)> = Vec::new();
    let mut chunk_bytes = 0;
    loop {
        let next = match lines.next_line().await {
            Ok(next) => next,
            Err(e) => return Err((summary, e.into())),
        };
        let full = chunk.len() >= chunk_size.max(1) || chunk_bytes >= MAX_CHUNK_BYTES;
        if (next.is_none() || full) && !chunk.is_empty() {
            let sent = std::mem::take(&mut chunk);
            chunk_bytes = 0;
            if let Err(e) = send_chunk(&mut client, sent, &mut summary).await {
                return Err((summary, e));
            }
            progress(&summary);
        }
        let Some(text) = next else { break };
        summary.lines_read += 1;
        let line = summary.lines_read;
        if text.trim().is_empty() {
            continue;
        }
        if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            summary.rejected.push(Rejected {
                line,
                message: format!("not valid JSON: {e}"),
            });
            continue;
        }
        chunk_bytes += text.len() + 1;
        chunk.push((line, text));
    }
    Ok(summary)
}

/// Sends one chunk, dropping lines the daemon names as bad and halving on 413, until what
/// is left is stored.
async fn send_chunk(
    client: &mut SocketClient,
    chunk: Vec<(usize, String)>,
    summary: &mut Summary,
) -> Result<(), EnqueueError> {
    let mut todo = vec![chunk];
    while let Some(chunk) = todo.pop() {
        if chunk.is_empty() {
            continue;
        }
        let mut body = String::with_capacity(chunk.iter().map(|(_, t)| t.len() + 1).sum());
        for (_, text) in &chunk {
            body.push_str(text);
            body.push('\n');
        }
        let answer = client.post_ndjson(body).await?;
        let json = answer.json();
        match answer.status.as_u16() {
            200..=299 => {
                summary.queued += json["new"].as_u64().unwrap_or(0) as usize;
                summary.duplicates += json["duplicates"].as_u64().unwrap_or(0) as usize;
            }
            400 | 409 | 422 if bad_lines(&json).next().is_some() => {
                let mut bad = std::collections::BTreeMap::new();
                for (line, message) in bad_lines(&json) {
                    if let Some((file_line, _)) = chunk.get(line.wrapping_sub(1)) {
                        bad.entry(*file_line).or_insert(message);
                    }
                }
                if bad.is_empty() {
                    return Err(daemon_error(answer.status.as_u16(), &chunk, &json));
                }
                summary
                    .rejected
                    .extend(bad.iter().map(|(line, message)| Rejected {
                        line: *line,
                        message: message.clone(),
                    }));
                todo.push(
                    chunk
                        .into_iter()
                        .filter(|(l, _)| !bad.contains_key(l))
                        .collect(),
                );
            }
            413 if chunk.len() > 1 => {
                let mut first = chunk;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
            }
            // The queue is full: wait as the daemon asks (at most 30 s at a time) and send
            // again, in halves, in case the chunk is larger than the room left.
            503 if json["error"] == "queue_full" => {
                let wait = answer.retry_after.unwrap_or(5).clamp(1, 30);
                tracing::warn!(
                    wait_s = wait,
                    message = json["message"].as_str().unwrap_or(""),
                    "the daemon's queue is full; waiting"
                );
                tokio::time::sleep(std::time::Duration::from_secs(wait)).await;
                let mut first = chunk;
                let second = first.split_off(first.len() / 2);
                todo.push(second);
                todo.push(first);
            }
            413 => summary.rejected.push(Rejected {
                line: chunk[0].0,
                message: json["message"].as_str().unwrap_or("too large").to_owned(),
            }),
            status => return Err(daemon_error(status, &chunk, &json)),
        }
    }
    Ok(())
}

/// `(chunk line, "field: message")` for every error the daemon named by line.
fn bad_lines(json: &serde_json::Value) -> impl Iterator<Item = (usize, String)> + '_ {
    json["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let line = e["line"].as_u64()? as usize;
            let field = e["field"].as_str().unwrap_or("");
            let message = e["message"].as_str().unwrap_or("");
            Some((
                line,
                if field.is_empty() {
                    message.to_owned()
                } else {
                    format!("{field}: {message}")
                },
            ))
        })
}

fn daemon_error(status: u16, chunk: &[(usize, String)], json: &serde_json::Value) -> EnqueueError {
    EnqueueError::Daemon {
        status,
        line: chunk.first().map(|(l, _)| *l).unwrap_or(0),
        message: json["message"].as_str().unwrap_or("no message").to_owned(),
    }
}
