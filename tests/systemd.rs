//! The systemd side: the unit verifies and rates "OK" on `systemd-analyze security`, and
//! the daemon speaks the notification protocol (READY, WATCHDOG pings, STOPPING) to a
//! real `$NOTIFY_SOCKET` (on both backends: the watchdog's check covers the database).
//! The deploy guide's test installs its default config, which is SQLite's.

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

crate::on_both_backends! {
async fn the_daemon_reports_ready_pings_the_watchdog_and_reports_stopping(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(dir.path());
    let daemon = Daemon::start_on(
        &backend,
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
}

crate::on_both_backends! {
async fn no_watchdog_pings_when_systemd_asked_another_process(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (socket, path) = notify_socket(dir.path());
    let daemon = Daemon::start_on(
        &backend,
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
}

/// The deploy guide's steps into a scratch root, then the installed binary started the way
/// the unit starts it (systemd's directories, credential and notify socket), used against
/// the simulator with the installed config.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_per_the_deploy_guide_it_runs_as_the_unit_runs_it() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let install = |from: &str, to: &str, mode: &str| {
        let to = r.join(to.trim_start_matches('/'));
        let ok = Command::new("install")
            .args(["-D", "-m", mode, from, to.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(ok.success(), "install {from}");
        to
    };
    let manifest = env!("CARGO_MANIFEST_DIR");
    let bin = install(BIN, "/usr/local/bin/hubspot-outbox", "0755");
    install(
        &format!("{manifest}/deploy/hubspot-outbox.sysusers"),
        "/usr/lib/sysusers.d/hubspot-outbox.conf",
        "0644",
    );
    std::fs::create_dir_all(r.join("etc")).unwrap();
    for f in ["etc/group", "etc/passwd"] {
        std::fs::write(r.join(f), "").unwrap();
    }
    let ok = Command::new("systemd-sysusers")
        .arg(format!("--root={}", r.display()))
        .status()
        .unwrap();
    assert!(ok.success());
    assert!(
        std::fs::read_to_string(r.join("etc/group"))
            .unwrap()
            .starts_with("hubspot-outbox:x:")
    );
    let config = install(
        &format!("{manifest}/config/hubspot-outbox.toml"),
        "/etc/hubspot-outbox/config.toml",
        "0644",
    );
    let unit = install(UNIT, "/etc/systemd/system/hubspot-outbox.service", "0644");
    let text = std::fs::read_to_string(&unit)
        .unwrap()
        .replace("/usr/local/bin/hubspot-outbox", bin.to_str().unwrap());
    std::fs::write(&unit, text).unwrap();
    let out = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A simulator standing in for HubSpot, and the directories systemd would create.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(hubspot_outbox::simulator::serve(
        listener,
        Default::default(),
        stop.clone(),
    ));
    let state = r.join("var/lib/hubspot-outbox");
    let runtime = r.join("run/hubspot-outbox");
    let creds = r.join("run/credentials/hubspot-outbox.service");
    for d in [&state, &runtime, &creds] {
        std::fs::create_dir_all(d).unwrap();
    }
    std::fs::write(creds.join("hubspot-access-token"), "sim-token\n").unwrap();
    let (notify, notify_path) = notify_socket(r);
    let with_env = |cmd: &mut Command| {
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("STATE_DIRECTORY", &state)
            .env("RUNTIME_DIRECTORY", &runtime)
            .env("CREDENTIALS_DIRECTORY", &creds)
            .env("HUBSPOT_OUTBOX__HUBSPOT__BASE_URL", &url)
            .env("HUBSPOT_OUTBOX__BATCHING__LINGER", "10ms")
            .arg("--config")
            .arg(&config);
    };
    let mut run = Command::new(&bin);
    with_env(&mut run);
    let mut child = run
        .arg("run")
        .env("NOTIFY_SOCKET", &notify_path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let seen = read_until(&notify, "READY=1", Duration::from_secs(20));
    assert_eq!(seen.last().map(String::as_str), Some("READY=1"));
    assert!(runtime.join("outbox.sock").exists() && state.join("outbox.db").exists());

    let writes = r.join("writes.ndjson");
    std::fs::write(&writes, r#"{"objectType": "contacts", "properties": {"email": "a@example.com"}, "objectWriteTraceId": "w1"}"#).unwrap();
    let mut enqueue = Command::new(&bin);
    with_env(&mut enqueue);
    assert!(
        enqueue
            .arg("enqueue")
            .arg(&writes)
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut show = Command::new(&bin);
        with_env(&mut show);
        let out = show.args(["show", "w1", "--json"]).output().unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if v["state"] == "succeeded" {
            break;
        }
        assert!(Instant::now() < deadline, "not sent: {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
    stop.cancel();
}
