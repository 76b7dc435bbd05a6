//! The dashboard on TCP (`ui.listen`) without a browser: the login's refusals and its
//! cookie, what is served there and what is not, and the users file's checks by the daemon
//! and `check-config` (the browser test, tests/browser.rs, drives the same pages in
//! Chromium).

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::web::{To, form, request};
use common::{Daemon, daemon_command};

const ADA: &str = "correct horse battery staple";
const CAROL: &str = "carol's long passphrase";

/// `password` hashed by `hubspot-outbox hash-password`, as an operator makes one.
fn hashed(password: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new(common::BIN)
        .arg("hash-password")
        .env_clear()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(
        hash.starts_with("$argon2id$") && !hash.contains(password),
        "{hash}"
    );
    hash
}

/// ada and bob with their passwords in the file, carol with hers hashed.
fn users_file(dir: &Path, mode: u32) -> String {
    let path = dir.join("ui-users");
    std::fs::write(
        &path,
        format!(
            "# who\nada:operator:{ADA}\nbob:read-only:another long secret\ncarol:operator:{}\n",
            hashed(CAROL)
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path.display().to_string()
}

/// A daemon serving the dashboard on TCP to the users of [`users_file`], with `extra`.
async fn start_dashboard(dir: &Path, extra: &[(&str, &str)]) -> Daemon {
    let users = users_file(dir, 0o600);
    let mut env = vec![
        ("HUBSPOT_OUTBOX__UI__LISTEN", "127.0.0.1:0"),
        ("HUBSPOT_OUTBOX__UI__USERS_FILE", users.as_str()),
    ];
    env.extend_from_slice(extra);
    Daemon::start_with(dir, &env).await
}

fn dashboard_addr(d: &Daemon) -> std::net::SocketAddr {
    let log = d.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("dashboard listening on TCP"))
        .unwrap_or_else(|| panic!("no dashboard line in {log}"));
    line.split("addr=")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn the_tcp_dashboard_needs_a_login_and_serves_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let d = start_dashboard(dir.path(), &[("HUBSPOT_OUTBOX__UI__SECURE_COOKIE", "true")]).await;
    let to = To::Tcp(dashboard_addr(&d));

    // Without a session: pages send to the login, posts are refused, the API is not here.
    let r = request(&to, "GET", "/ui/writes", &[], "").await;
    assert_eq!((r.status, r.header("location")), (303, "/ui/login"));
    let r = request(
        &to,
        "POST",
        "/ui/bulk",
        &[],
        &form(&[("action", "retry"), ("state", "failed")]),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.body);
    for path in ["/v1/status", "/metrics", "/healthz"] {
        assert_eq!(
            request(&to, "GET", path, &[], "").await.status,
            404,
            "{path}"
        );
    }
    assert_eq!(
        request(&to, "POST", "/v1/writes", &[], "{}").await.status,
        404
    );
    let css = request(&to, "GET", "/ui/app.css", &[], "").await;
    assert_eq!(
        css.status, 200,
        "the login page's stylesheet needs no login"
    );

    // A wrong password, an unknown user, another site's form: refused, no cookie.
    for (fields, headers, status) in [
        (
            vec![("user", "ada"), ("password", "wrong password!")],
            vec![],
            401,
        ),
        (vec![("user", "eve"), ("password", ADA)], vec![], 401),
        (
            vec![("user", "ada"), ("password", ADA)],
            vec![("Sec-Fetch-Site", "cross-site")],
            403,
        ),
    ] {
        let r = request(&to, "POST", "/ui/login", &headers, &form(&fields)).await;
        assert_eq!(r.status, status, "{fields:?}: {}", r.body);
        assert_eq!(r.header("set-cookie"), "");
    }

    // The right one: a session cookie no script reads and no other site sends.
    let r = request(
        &to,
        "POST",
        "/ui/login",
        &[],
        &form(&[("user", "ada"), ("password", ADA)]),
    )
    .await;
    assert_eq!((r.status, r.header("location")), (303, "/ui/"));
    let cookie = r.header("set-cookie").to_owned();
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui", "Secure"] {
        assert!(cookie.contains(attribute), "{cookie}");
    }
    let session = cookie.split(';').next().unwrap().to_owned();
    let page = request(&to, "GET", "/ui/", &[("Cookie", &session)], "").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(
        page.body.contains("ada") && page.body.contains("Log out"),
        "{}",
        page.body
    );

    // A user whose password the file holds hashed logs in the same way.
    let r = request(
        &to,
        "POST",
        "/ui/login",
        &[],
        &form(&[("user", "carol"), ("password", CAROL)]),
    )
    .await;
    assert_eq!(
        (r.status, r.header("location")),
        (303, "/ui/"),
        "{}",
        r.body
    );

    // Logged out: the session is over.
    let token = page.csrf();
    let r = request(
        &to,
        "POST",
        "/ui/logout",
        &[("Cookie", &session)],
        &form(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.body);
    let r = request(&to, "GET", "/ui/", &[("Cookie", &session)], "").await;
    assert_eq!((r.status, r.header("location")), (303, "/ui/login"));
    // A form larger than a login needs is refused unread; then, tried too often from one
    // address, logins are refused at once with a time to wait.
    let big = "x".repeat(64 * 1024);
    let r = request(
        &to,
        "POST",
        "/ui/login",
        &[],
        &form(&[("user", "ada"), ("password", &big)]),
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = request(
            &to,
            "POST",
            "/ui/login",
            &[],
            &form(&[("user", "ada"), ("password", "wrong password!")]),
        )
        .await;
        if r.status == 429 {
            assert!(
                r.header("retry-after").parse::<u64>().is_ok_and(|s| s >= 1),
                "{:?}",
                r.headers
            );
        }
        statuses.push(r.status);
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    let log = d.log_text();
    assert!(!log.contains(ADA), "a password never reaches the log");
    assert!(
        log.lines()
            .any(|l| l.contains("dashboard login refused") && l.contains("client=127.0.0.1:")),
        "a refused login names the client's address: {log}"
    );
    d.terminate();
}

/// The TCP listener is held to the socket's connection limits: a client that sends its
/// headers too slowly, or stays idle, is closed; its connections are not the socket's.
#[tokio::test]
async fn slow_and_idle_tcp_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let d = start_dashboard(
        dir.path(),
        &[
            ("HUBSPOT_OUTBOX__SOCKET__HEADER_TIMEOUT", "500ms"),
            ("HUBSPOT_OUTBOX__SOCKET__IDLE_TIMEOUT", "1s"),
        ],
    )
    .await;
    let addr = dashboard_addr(&d);
    let started = std::time::Instant::now();
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /ui/login HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    for (what, stream) in [("slow headers", &mut slow), ("idle", &mut idle)] {
        let read = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{what}: still open after 10 s"));
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "{what}: closed without an answer, got {read:?}"
        );
    }
    assert!(started.elapsed() >= std::time::Duration::from_millis(500));
    // A normal request still gets its answer.
    let page = request(&To::Tcp(addr), "GET", "/ui/login", &[], "").await;
    assert_eq!(page.status, 200);
    let metrics = request(&To::Socket(&d.socket), "GET", "/metrics", &[], "").await;
    assert!(
        !metrics.body.contains("reason=\"slow_headers\"")
            && !metrics.body.contains("reason=\"idle\""),
        "the dashboard's connections are not counted as the socket's: {}",
        metrics.body
    );
    d.terminate();
}

#[test]
fn a_users_file_every_user_may_read_is_refused_and_check_config_lists_users_not_passwords() {
    let dir = tempfile::tempdir().unwrap();
    let run = |users: &str, args: &[&str]| {
        daemon_command(dir.path(), args)
            .env("HUBSPOT_OUTBOX__UI__LISTEN", "127.0.0.1:0")
            .env("HUBSPOT_OUTBOX__UI__USERS_FILE", users)
            .output()
            .unwrap()
    };
    let open = users_file(dir.path(), 0o644);
    for args in [&["check-config"][..], &["run"]] {
        let out = run(&open, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(
            stderr.contains("ui.users_file") && stderr.contains("chmod o-rwx"),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains(ADA));
    }
    let closed = users_file(dir.path(), 0o600);
    let out = run(&closed, &["check-config", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(r#"{"name":"ada","role":"operator"}"#)
            && text.contains(r#"{"name":"bob","role":"read-only"}"#),
        "{text}"
    );
    assert!(!text.contains(ADA) && !text.contains("$argon2"), "{text}");
    // Commands that do not serve the dashboard never read it (an operator may not be able to).
    std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = run(&closed, &["failed"]);
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("ui.users_file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
