//! The socket's limits against slow, idle and many clients (issue 9), on the real binary:
//! a flood of idle and byte-a-second connections does not keep a normal client waiting or
//! grow the daemon's memory; idle and slow connections are closed on time; a full house of
//! busy connections gets 503; a slow body gets 408; shutdown does not wait for idle
//! connections. On both backends: the socket is the same whichever database is behind it.

mod common;

use std::time::{Duration, Instant};

use common::{Daemon, Shell};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

const WRITE: &str = r#"{"objectType":"contacts","properties":{"email":"a@example.com"}}"#;

/// The daemon's resident memory, in KiB.
fn rss_kib(daemon: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// One enqueue on a fresh connection; returns the status and how long the answer took.
async fn enqueue_once(daemon: &Daemon, n: usize) -> (u16, Duration) {
    let started = Instant::now();
    let mut client = daemon.client().await;
    let body = WRITE.replace("a@example.com", &format!("w{n}@example.com"));
    let answer = client.post_json(body).await.unwrap();
    (answer.status.as_u16(), started.elapsed())
}

/// Reads whatever the daemon sends until it closes the connection (or `within` passes).
async fn read_until_closed(stream: &mut UnixStream, within: Duration) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(within, stream.read_to_end(&mut got)).await;
    read.ok()
        .map(|_| String::from_utf8_lossy(&got).into_owned())
}

/// A `POST /v1/writes` whose body is on its way: the head announces `length` bytes with
/// `Expect: 100-continue`; the `100 Continue` says the handler is reading the body (the
/// connection is busy); then `first` bytes of the body are sent.
async fn body_on_its_way(daemon: &Daemon, length: usize, first: &[u8]) -> UnixStream {
    let mut s = UnixStream::connect(&daemon.socket).await.unwrap();
    let head = format!(
        "POST /v1/writes HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {length}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut cont = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut cont))
        .await
        .expect("100 Continue")
        .unwrap();
    assert!(cont.starts_with(b"HTTP/1.1 100 Continue"), "{cont:?}");
    s.write_all(first).await.unwrap();
    s
}

crate::on_both_backends! {
async fn a_thousand_idle_or_slow_connections_neither_delay_a_normal_client_nor_grow_memory(backend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_on(&backend, dir.path(), &[]).await;
    // Warm up: the first requests size the daemon's pools.
    for n in 0..20 {
        assert_eq!(enqueue_once(&daemon, n).await.0, 202);
    }
    let before = rss_kib(&daemon);

    // 500 connections that say nothing, and 500 that send a request's headers a byte a
    // second: four times socket.max_connections (256).
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(UnixStream::connect(&daemon.socket).await.unwrap());
    }
    let mut trickles = Vec::new();
    let (connected, mut all_connected) = tokio::sync::mpsc::channel::<()>(500);
    for _ in 0..500 {
        let path = daemon.socket.clone();
        let connected = connected.clone();
        trickles.push(tokio::spawn(async move {
            let mut stream = UnixStream::connect(&path).await.unwrap();
            let _ = connected.send(()).await;
            for byte in b"POST /v1/writes HTTP/1.1\r\nhost: x\r\n".iter().cycle() {
                if stream.write_all(&[*byte]).await.is_err() {
                    return; // closed by the daemon: as it should be
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }

    // Once they are all connected (a client connecting during the burst could be the
    // oldest idle one when hundreds more arrive), and while they hold on, a normal client
    // is answered at once, every time.
    drop(connected);
    for _ in 0..500 {
        all_connected.recv().await.unwrap();
    }
    let mut slowest = Duration::ZERO;
    for n in 100..130 {
        let (status, took) = enqueue_once(&daemon, n).await;
        assert_eq!(status, 202);
        slowest = slowest.max(took);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        slowest < Duration::from_secs(1),
        "a normal client waited {slowest:?} behind the flood"
    );
    let after = rss_kib(&daemon);
    eprintln!("daemon RSS: {before} KiB before the flood, {after} KiB during it");
    assert!(
        after < before + 16 * 1024,
        "memory grew from {before} KiB to {after} KiB with 1,000 idle or slow connections"
    );

    let metrics = daemon.client().await.get("/metrics").await.unwrap().body;
    let metrics = String::from_utf8_lossy(&metrics);
    let open: i64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hubspot_outbox_socket_connections "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(open <= 256, "{open} connections open, past max_connections");
    assert!(
        metrics.contains("hubspot_outbox_socket_connections_closed_total{reason=\"evicted\"}"),
        "{metrics}"
    );
    for t in trickles {
        t.abort();
    }
    drop(idle);
}
}

crate::on_both_backends! {
async fn idle_and_slow_header_connections_are_closed_on_time(backend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_on(
        &backend,
        dir.path(),
        &[
            ("HUBSPOT_OUTBOX__SOCKET__IDLE_TIMEOUT", "1s"),
            ("HUBSPOT_OUTBOX__SOCKET__HEADER_TIMEOUT", "1s"),
        ],
    )
    .await;
    // Idle from the start.
    let mut silent = UnixStream::connect(&daemon.socket).await.unwrap();
    let started = Instant::now();
    assert!(
        read_until_closed(&mut silent, Duration::from_secs(5))
            .await
            .is_some()
    );
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Idle after a request on a kept-alive connection.
    let mut client = daemon.client().await;
    assert_eq!(client.get("/healthz").await.unwrap().status, 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        client.get("/healthz").await.is_err(),
        "an idle keep-alive connection outlived socket.idle_timeout"
    );

    // Headers that never end: the 1 s header timeout closes it even though bytes keep
    // coming (every 300 ms, well within the idle timeout).
    let mut slow = UnixStream::connect(&daemon.socket).await.unwrap();
    let started = Instant::now();
    let mut closed = false;
    for byte in b"GET /healthz HTTP/1.1\r\nx-a: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb".iter() {
        if slow.write_all(&[*byte]).await.is_err() {
            closed = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(300), slow.read(&mut probe)).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a client trickling headers was never cut off");
    assert!(started.elapsed() < Duration::from_secs(5));
}
}

crate::on_both_backends! {
async fn when_every_connection_is_busy_a_new_one_gets_503_and_a_slow_body_gets_408(backend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_on(
        &backend,
        dir.path(),
        &[
            ("HUBSPOT_OUTBOX__SOCKET__MAX_CONNECTIONS", "2"),
            ("HUBSPOT_OUTBOX__SOCKET__BODY_TIMEOUT", "2s"),
        ],
    )
    .await;
    // Two requests whose bodies are on their way (busy).
    let mut busy = Vec::new();
    for _ in 0..2 {
        busy.push(body_on_its_way(&daemon, WRITE.len(), &WRITE.as_bytes()[..5]).await);
    }
    let mut third = UnixStream::connect(&daemon.socket).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut third, Duration::from_secs(2))
        .await
        .expect("the refused connection is answered and closed at once");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");

    // The slow bodies never finish: 408 after socket.body_timeout, nothing stored.
    for mut s in busy {
        // Whatever followed the 100 Continue's blank line.
        let mut got = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut got))
            .await
            .expect("answered within the body timeout")
            .unwrap();
        let text = String::from_utf8_lossy(&got[..n]);
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(text.contains("body_timeout"), "{text}");
    }
    assert_eq!(Shell::new(&backend, &daemon.database).count("true"), 0);
    // And the daemon takes normal requests again.
    assert_eq!(enqueue_once(&daemon, 1).await.0, 202);
}
}

crate::on_both_backends! {
async fn shutdown_does_not_wait_for_idle_or_slow_connections(backend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_on(
        &backend,
        dir.path(),
        &[("HUBSPOT_OUTBOX__SOCKET__SHUTDOWN_TIMEOUT", "60s")],
    )
    .await;
    let _idle = UnixStream::connect(&daemon.socket).await.unwrap();
    let mut half = UnixStream::connect(&daemon.socket).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhos")
        .await
        .unwrap();
    let mut kept = daemon.client().await;
    // Answered: the two connections made before it were accepted first.
    assert_eq!(kept.get("/healthz").await.unwrap().status, 200);
    let started = Instant::now();
    let status = daemon.terminate();
    assert!(status.success(), "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown took {:?} with idle connections open",
        started.elapsed()
    );
}
}

crate::on_both_backends! {
/// Bodies together may hold `limits.max_buffered_bytes`: a request whose bytes find it
/// spent is refused at once with 503 `server_busy` (it never waits on a slow client), and
/// the retry endpoint's body is read under the same limits and timeout.
async fn bodies_share_one_memory_budget_and_every_body_has_a_deadline(backend) {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start_on(
        &backend,
        dir.path(),
        &[
            ("HUBSPOT_OUTBOX__LIMITS__MAX_REQUEST_BYTES", "1024"),
            ("HUBSPOT_OUTBOX__LIMITS__MAX_BUFFERED_BYTES", "1024"),
            ("HUBSPOT_OUTBOX__SOCKET__BODY_TIMEOUT", "1s"),
        ],
    )
    .await;
    // A slow client holds 900 of the 1,024 bytes, once the daemon has read them: a
    // request of 200 more is refused at once. A probe the daemon reads before the slow
    // bytes takes its share first, and then the slow body is the one refused: the slow
    // client is dropped and the scene set again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut slow, refused) = loop {
        let slow = body_on_its_way(&daemon, 1000, &[b' '; 900]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut c = daemon.client().await;
        let answer = c
            .post_json(WRITE.to_owned() + &" ".repeat(200))
            .await
            .unwrap();
        if answer.status.as_u16() == 503 || Instant::now() > deadline {
            break (slow, answer);
        }
    };
    assert_eq!(refused.status.as_u16(), 503);
    assert_eq!(refused.json()["error"], "server_busy");
    assert_eq!(refused.retry_after, Some(1));
    // The slow one times out (its 408 says so) and gives its share back: the same request
    // goes through.
    let answer = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("the slow body is answered");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let mut c = daemon.client().await;
    let answer = c
        .post_json(WRITE.to_owned() + &" ".repeat(200))
        .await
        .unwrap();
    assert_eq!(answer.status.as_u16(), 202);

    // A retry whose body never comes: 408, not a connection held for ever.
    let mut retry = UnixStream::connect(&daemon.socket).await.unwrap();
    retry
        .write_all(
            b"POST /v1/retry HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    let mut got = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), retry.read(&mut got))
        .await
        .expect("answered within the body timeout")
        .unwrap();
    let text = String::from_utf8_lossy(&got[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
}
}

crate::on_both_backends! {
/// A request being answered when SIGTERM comes gets its answer (and its write is stored)
/// before the daemon exits, even when its body is still arriving.
async fn at_shutdown_a_request_being_answered_gets_its_answer(backend) {
    let dir = tempfile::tempdir().unwrap();
    let mut daemon = Daemon::start_on(&backend, dir.path(), &[]).await;
    let mut s = body_on_its_way(&daemon, WRITE.len(), &WRITE.as_bytes()[..10]).await;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(daemon.child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    // Longer than the 1 s a closing connection that is not answering is given.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    s.write_all(&WRITE.as_bytes()[10..]).await.unwrap();
    let answer = read_until_closed(&mut s, Duration::from_secs(5))
        .await
        .expect("answered, then closed");
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
    let status = tokio::task::spawn_blocking(move || daemon.child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    let rows = Shell::new(&backend, &dir.path().join("outbox.db")).count("true");
    assert_eq!(rows, 1);
}
}
