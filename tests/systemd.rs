//! The systemd side: the unit verifies and rates "OK" on `systemd-analyze security`, and
//! the daemon speaks the notification protocol (READY, WATCHDOG pings, STOPPING) to a
//! real `$NOTIFY_SOCKET`.

mod common;

use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{BIN, Daemon};

const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/hubspot-outbox.service");

fn systemd_analyze(args: &[&str]) -> std::process::Output {
    Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze is installed (Debian package systemd)")
}

#[test]
fn the_unit_rates_ok_on_systemd_analyze_security() {
    // --threshold=20: fail if the overall exposure is above 2.0 ("OK" is 2.0 or lower).
    let out = systemd_analyze(&["security", "--offline=true", "--threshold=20", UNIT]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exposure above 2.0:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("Overall exposure level"), "{text}");
}

#[test]
fn the_unit_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let unit = std::fs::read_to_string(UNIT)
        .unwrap()
        .replace("/usr/local/bin/hubspot-outbox", BIN);
    let path = dir.path().join("hubspot-outbox.service");
    std::fs::write(&path, unit).unwrap();
    let out = systemd_analyze(&["verify", path.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Reads notifications until `stop` is seen or `timeout` passes.
fn read_until(socket: &UnixDatagram, stop: &str, timeout: Duration) -> Vec<String> {
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let mut buf = [0u8; 512];
    while Instant::now() < deadline {
        if let Ok(n) = socket.recv(&mut buf) {
            let message = String::from_utf8_lossy(&buf[..n]).into_owned();
            let done = message == stop;
            seen.push(message);
            if done {
                break;
            }
        }
    }
    seen
}

fn notify_socket(dir: &Path) -> (UnixDatagram, String) {
    let path = dir.join("notify.sock");
    let socket = UnixDatagram::bind(&path).unwrap();
    (socket, path.display().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_reports_ready_pings_the_watchdog_and_reports_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(dir.path());
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "200000"),
        ],
    )
    .await;
    let seen = read_until(&socket, "never", Duration::from_millis(800));
    assert_eq!(
        seen.first().map(String::as_str),
        Some("READY=1"),
        "{seen:?}"
    );
    let pings = seen.iter().filter(|m| *m == "WATCHDOG=1").count();
    assert!(pings >= 4, "about one ping per 100 ms: {seen:?}");
    let stopping =
        std::thread::spawn(move || read_until(&socket, "STOPPING=1", Duration::from_secs(10)));
    assert!(daemon.terminate().success());
    let seen = stopping.join().unwrap();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("STOPPING=1"),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_watchdog_pings_when_systemd_asked_another_process() {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(dir.path());
    let daemon = Daemon::start_with(
        dir.path(),
        &[
            ("NOTIFY_SOCKET", path.as_str()),
            ("WATCHDOG_USEC", "200000"),
            ("WATCHDOG_PID", "1"),
        ],
    )
    .await;
    let seen = read_until(&socket, "never", Duration::from_millis(600));
    assert_eq!(seen, ["READY=1"]);
    assert!(daemon.terminate().success());
}
