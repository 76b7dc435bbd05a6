//! What the benchmarks share: the release daemon as a child process on a directory of its
//! own, waiting for it to answer, its resident memory, the simulator on 127.0.0.1:0, and
//! the scheduler's cost per batch ([`cost`]).
#![allow(dead_code)]

pub mod cost;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use hubspot_outbox::operator::client::SocketClient;
use hubspot_outbox::simulator::SimOptions;
use tokio_util::sync::CancellationToken;

pub const BIN: &str = env!("CARGO_BIN_EXE_hubspot-outbox");

/// `hubspot-outbox run` with its database and socket in `dir`, a clean environment, and no
/// free-disk check (benchmarks must not depend on the machine's disk). Callers add the rest.
pub fn daemon_command(dir: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("run")
        .env_clear()
        .env("HOME", dir)
        .env("HUBSPOT_OUTBOX__DATABASE__PATH", dir.join("outbox.db"))
        .env("HUBSPOT_OUTBOX__SOCKET__PATH", dir.join("outbox.sock"))
        .env("HUBSPOT_OUTBOX__QUEUE__MIN_FREE_DISK", "0")
        .stdin(Stdio::null());
    cmd
}

/// A client once the daemon on `socket` answers `/healthz`; `None` after 10 s.
pub async fn ready(socket: &Path) -> Option<SocketClient> {
    for _ in 0..2000 {
        if let Ok(mut c) = SocketClient::connect(socket).await
            && c.get("/healthz").await.is_ok_and(|a| a.status == 200)
        {
            return Some(c);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Resident memory of process `pid` in KiB, from /proc (0 when it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The simulator on 127.0.0.1:0 until `stop`; returns its URL.
pub async fn simulator(options: SimOptions, stop: &CancellationToken) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(hubspot_outbox::simulator::serve(
        listener,
        options,
        stop.clone(),
    ));
    url
}

/// `n × interval ÷ mean(t[k+n] − t[k])` over sorted departure times (ms): how much of
/// every rolling window was used.
pub fn window_utilisation(times: &[i64], n: usize, interval: Duration) -> f64 {
    let gaps: Vec<i64> = times.windows(n + 1).map(|w| w[n] - w[0]).collect();
    if gaps.is_empty() {
        return 0.0;
    }
    let mean = gaps.iter().sum::<i64>() as f64 / gaps.len() as f64;
    interval.as_millis() as f64 / mean
}

/// The most departures within any `interval` (half-open) of each other.
pub fn most_in_window(times: &[i64], interval: Duration) -> usize {
    let span = interval.as_millis() as i64;
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= span {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}
