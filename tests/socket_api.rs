//! The socket API as a producer sees it: what is accepted, what is refused and why, and
//! that a refused request stores nothing.

mod common;

use common::InProcess;
use hubspot_outbox::operator::client::SocketClient;
use hyper::Method;
use serde_json::{Value, json};

fn contact(email: &str) -> Value {
    json!({"objectType": "contacts", "properties": {"email": email}})
}

fn with_trace(mut w: Value, trace: &str) -> Value {
    w["objectWriteTraceId"] = json!(trace);
    w
}

/// Sends `body` as JSON and returns (status, answer).
async fn post(c: &mut SocketClient, body: &Value) -> (u16, Value) {
    let a = c.post_json(body.to_string()).await.unwrap();
    (a.status.as_u16(), a.json())
}

crate::on_both_backends! {
async fn one_object_an_array_and_ndjson_are_accepted_in_input_order(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut c = d.client().await;

    let (status, a) = post(&mut c, &with_trace(contact("a@example.com"), "one")).await;
    assert_eq!(status, 202, "{a}");
    assert_eq!(
        a["writes"],
        json!([{"objectWriteTraceId": "one", "result": "new"}])
    );

    let (status, a) = post(
        &mut c,
        &json!([
            contact("b@example.com"),
            with_trace(contact("c@example.com"), "three")
        ]),
    )
    .await;
    assert_eq!(status, 202, "{a}");
    assert_eq!(
        (a["accepted"].as_u64(), a["new"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(a["writes"][1]["objectWriteTraceId"], "three");
    let generated = a["writes"][0]["objectWriteTraceId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(generated.len(), 36, "a generated id is a UUID: {generated}");

    let nd = format!(
        "{}\n\n{}\n",
        contact("d@example.com"),
        with_trace(contact("e@example.com"), "five")
    );
    let a = c.post_ndjson(nd).await.unwrap();
    assert_eq!(a.status, 202);
    assert_eq!(a.json()["writes"][1]["objectWriteTraceId"], "five");

    assert_eq!(d.rows().await, 5);
    let got = c.get(&format!("/v1/writes/{generated}")).await.unwrap();
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["properties"], json!({"email": "b@example.com"}));
    d.stop().await;
}
}

crate::on_both_backends! {
async fn numbers_and_booleans_are_stored_as_strings_and_shown_with_their_state(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut c = d.client().await;
    let w = json!({
        "objectType": "contacts",
        "properties": {"email": "a@example.com", "age": 42, "vip": false},
        "associations": [{"to": {"id": "77"}, "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}],
        "objectWriteTraceId": "typed"
    });
    assert_eq!(post(&mut c, &w).await.0, 202);
    let got = c.get("/v1/writes/typed").await.unwrap().json();
    assert_eq!(
        got["properties"],
        json!({"email": "a@example.com", "age": "42", "vip": "false"})
    );
    assert_eq!(got["associations"][0]["types"][0]["associationTypeId"], 279);
    assert_eq!(got["state"], "pending");
    assert_eq!(got["attempts"], 0);
    assert_eq!(got["hubspotId"], Value::Null);
    assert_eq!(c.get("/v1/writes/nope").await.unwrap().status, 404);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn resending_a_write_is_a_duplicate_and_reusing_its_id_is_a_conflict(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut c = d.client().await;
    let w = with_trace(contact("a@example.com"), "order-1");
    assert_eq!(post(&mut c, &w).await.0, 202);

    let (status, a) = post(
        &mut c,
        &json!([w, with_trace(contact("b@example.com"), "order-2")]),
    )
    .await;
    assert_eq!(status, 202, "{a}");
    assert_eq!(
        a["writes"][0],
        json!({"objectWriteTraceId": "order-1", "result": "duplicate"})
    );
    assert_eq!(a["writes"][1]["result"], "new");
    assert_eq!(a["duplicates"], 1);
    assert_eq!(d.rows().await, 2);

    let other = with_trace(contact("someone-else@example.com"), "order-1");
    let (status, a) = post(
        &mut c,
        &json!([with_trace(contact("c@example.com"), "order-3"), other]),
    )
    .await;
    assert_eq!(status, 409, "{a}");
    assert!(a["message"].as_str().unwrap().contains("order-1"), "{a}");
    assert_eq!(a["errors"][0]["index"], 1);
    assert_eq!(
        d.rows().await,
        2,
        "the valid write beside the conflict is not stored either"
    );
    assert_eq!(c.get("/v1/writes/order-3").await.unwrap().status, 404);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn an_invalid_write_refuses_the_whole_request_naming_index_and_field(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut c = d.client().await;
    let mut writes: Vec<Value> = (0..99)
        .map(|i| contact(&format!("{i}@example.com")))
        .collect();
    writes.insert(
        57,
        json!({"objectType": "contacts", "properties": {"email": "x", "age": null}}),
    );
    let (status, a) = post(&mut c, &Value::Array(writes)).await;
    assert_eq!(status, 422, "{a}");
    assert_eq!(
        a["errors"],
        json!([{"index": 57, "field": "properties.age", "message": "must be a string, number or boolean, not null"}])
    );
    assert_eq!(d.rows().await, 0);

    let nd = format!(
        "{}\n{}\n",
        contact("ok@example.com"),
        json!({"objectType": "contacts", "properties": {"tags": ["a"]}})
    );
    let a = c.post_ndjson(nd).await.unwrap();
    assert_eq!(a.status, 422);
    assert_eq!(a.json()["errors"][0]["line"], 2);
    assert_eq!(a.json()["errors"][0]["field"], "properties.tags");
    assert_eq!(d.rows().await, 0);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn each_kind_of_invalid_write_gets_its_field_named_and_stores_nothing(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut c = d.client().await;
    let assoc = |cat: Value, id: Value| {
        json!({"objectType": "contacts", "properties": {"email": "a"},
               "associations": [{"to": {"id": "1"}, "types": [{"associationCategory": cat, "associationTypeId": id}]}]})
    };
    let cases: Vec<(Value, &str)> = vec![
        (json!({"properties": {"email": "a"}}), "objectType"),
        (
            json!({"objectType": "Contacts", "properties": {}}),
            "objectType",
        ),
        (
            json!({"objectType": "contacts/../x", "properties": {}}),
            "objectType",
        ),
        (json!({"objectType": "contacts"}), "properties"),
        (
            json!({"objectType": "contacts", "properties": "email=a"}),
            "properties",
        ),
        (
            json!({"objectType": "contacts", "properties": {"a": null}}),
            "properties.a",
        ),
        (
            json!({"objectType": "contacts", "properties": {"a": {"b": 1}}}),
            "properties.a",
        ),
        (
            json!({"objectType": "contacts", "properties": {"a": [1]}}),
            "properties.a",
        ),
        (
            json!({"objectType": "contacts", "properties": {}, "associations": {}}),
            "associations",
        ),
        (
            json!({"objectType": "contacts", "properties": {}, "associations": [{"types": []}]}),
            "associations[0].to",
        ),
        (
            assoc(json!("FRIENDS"), json!(1)),
            "associations[0].types[0].associationCategory",
        ),
        (
            assoc(json!("HUBSPOT_DEFINED"), json!("279")),
            "associations[0].types[0].associationTypeId",
        ),
        (
            json!({"objectType": "contacts", "properties": {}, "objectWriteTraceId": ""}),
            "objectWriteTraceId",
        ),
        (
            json!({"objectType": "contacts", "properties": {}, "idProperty": "email"}),
            "idProperty",
        ),
        (json!(["not a write"]), ""),
    ];
    for (write, field) in cases {
        let body = if write.is_array() {
            write.clone()
        } else {
            json!([contact("fine@example.com"), write.clone()])
        };
        let (status, a) = post(&mut c, &body).await;
        assert_eq!(status, 422, "{write}: {a}");
        let named: Vec<&str> = a["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        assert!(
            named.contains(&field),
            "{write}: expected {field:?} in {named:?}"
        );
    }
    assert_eq!(d.rows().await, 0);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn malformed_empty_oversized_and_mistyped_bodies_get_their_status(db) {
    let d = InProcess::start_on_backend(&db, &[
        ("HUBSPOT_OUTBOX__LIMITS__MAX_REQUEST_BYTES", "4096"),
        ("HUBSPOT_OUTBOX__LIMITS__MAX_WRITES_PER_REQUEST", "3"),
    ])
    .await;
    let mut c = d.client().await;
    let cases: Vec<(Option<&str>, String, u16, &str)> = vec![
        (
            Some("application/json"),
            "{\"objectType\": ".into(),
            400,
            "malformed_json",
        ),
        (
            Some("application/json"),
            "\u{0}\u{1}".into(),
            400,
            "malformed_json",
        ),
        (
            Some("application/json"),
            "\"contacts\"".into(),
            400,
            "malformed_json",
        ),
        (
            Some("application/x-ndjson"),
            format!("{}\n{{oops\n", contact("a")),
            400,
            "malformed_json",
        ),
        (Some("application/json"), "[]".into(), 400, "empty_request"),
        (Some("application/json"), "".into(), 400, "malformed_json"),
        (
            Some("text/plain"),
            contact("a").to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            None,
            contact("a").to_string(),
            415,
            "unsupported_media_type",
        ),
        (
            Some("application/json"),
            json!([{"objectType": "contacts", "properties": {"bio": "x".repeat(5000)}}])
                .to_string(),
            413,
            "body_too_large",
        ),
        (
            Some("application/json"),
            json!([contact("a"), contact("b"), contact("c"), contact("d")]).to_string(),
            413,
            "too_many_writes",
        ),
    ];
    for (ct, body, status, code) in cases {
        let a = c
            .send(Method::POST, "/v1/writes", ct, body.clone())
            .await
            .unwrap();
        assert_eq!(a.status.as_u16(), status, "{ct:?} {body:.60}: {:?}", a.body);
        assert_eq!(a.json()["error"], code, "{body:.60}");
        assert!(a.json()["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    assert_eq!(d.rows().await, 0);
    // The daemon is still serving after all of that.
    assert_eq!(c.get("/healthz").await.unwrap().status, 200);
    assert_eq!(c.get("/no/such/thing").await.unwrap().status, 404);
    d.stop().await;
}
}

crate::on_both_backends! {
async fn concurrent_clients_are_committed_together_and_all_acknowledged(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut tasks = Vec::new();
    for client in 0..16 {
        let path = d.config.socket.path.clone();
        tasks.push(tokio::spawn(async move {
            let mut c = SocketClient::connect(&path).await.unwrap();
            for i in 0..25 {
                let w = with_trace(
                    contact(&format!("{client}-{i}@example.com")),
                    &format!("c{client}-{i}"),
                );
                let a = c.post_json(w.to_string()).await.unwrap();
                assert_eq!(a.status, 202);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(d.rows().await, 16 * 25);
    d.stop().await;
}
}

crate::on_both_backends! {
/// `POST /v1/retry` from a user who is neither the daemon's nor root nor listed in
/// `socket.operators` is refused with 403 and changes nothing; reading and enqueueing stay
/// open to anyone who may connect. Needs root (to connect as another user); skipped
/// otherwise.
async fn operator_actions_are_refused_to_users_who_are_not_operators(db) {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root to connect as another user");
        return;
    }
    let d = InProcess::start_on_backend(&db, &[("HUBSPOT_OUTBOX__SOCKET__MODE", "0666")]).await;
    // The socket's directory must be reachable by the other user.
    std::fs::set_permissions(
        d.dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let socket = d.config.socket.path.clone();
    // As `nobody` (uid 65534): one request over the socket, the status line and body back.
    let as_nobody = |method: &'static str, path: &'static str, body: &'static str| {
        let socket = socket.clone();
        let script = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
body = sys.argv[4].encode()
s.sendall(f"{sys.argv[2]} {sys.argv[3]} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
out = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    out += chunk
print(out.decode())
"#;
        async move {
            tokio::task::spawn_blocking(move || {
                let out = std::os::unix::process::CommandExt::uid(
                    // The system's python (a per-user one under /root is out of reach).
                    std::process::Command::new(
                        ["/usr/bin/python3", "/usr/local/bin/python3"]
                            .into_iter()
                            .find(|p| std::path::Path::new(p).exists())
                            .unwrap_or("python3"),
                    )
                    .args(["-c", script])
                    .arg(&socket)
                    .args([method, path, body]),
                    65534,
                )
                .output()
                .unwrap();
                assert!(
                    out.status.success(),
                    "{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            })
            .await
            .unwrap()
        }
    };
    let enqueued = as_nobody(
        "POST",
        "/v1/writes",
        r#"{"objectType":"contacts","properties":{"email":"a@example.com"},"objectWriteTraceId":"n-1"}"#,
    )
    .await;
    assert!(enqueued.starts_with("HTTP/1.1 202"), "{enqueued}");
    let refused = as_nobody("POST", "/v1/retry", r#"{"traceIds":["n-1"]}"#).await;
    assert!(refused.starts_with("HTTP/1.1 403"), "{refused}");
    assert!(
        refused.contains("not_an_operator") && refused.contains("uid 65534 is not among them"),
        "{refused}"
    );
    // The daemon's own user (this test runs as it) may.
    let mut c = d.client().await;
    let a = c
        .send(
            hyper::Method::POST,
            "/v1/retry",
            Some("application/json"),
            r#"{"traceIds":["n-1"],"dryRun":true}"#,
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    d.stop().await;
}
}

crate::on_both_backends! {
/// Past `queue.max_queued` new writes are refused, by the socket (503 with Retry-After,
/// nothing stored) and by the database for SQL producers; once writes finish, there is room
/// again.
async fn a_full_queue_refuses_new_writes_until_there_is_room(db) {
    let d = InProcess::start_on_backend(&db, &[("HUBSPOT_OUTBOX__QUEUE__MAX_QUEUED", "5")]).await;
    let mut c = d.client().await;
    let writes: Vec<Value> = (0..5)
        .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("q{i}@example.com")}}))
        .collect();
    assert_eq!(post(&mut c, &Value::Array(writes)).await.0, 202);
    let one = json!({"objectType": "contacts", "properties": {"email": "late@example.com"}});
    let a = c.post_json(one.to_string()).await.unwrap();
    assert_eq!(a.status, 503);
    assert_eq!(a.retry_after, Some(30));
    let body = a.json();
    assert_eq!(body["error"], "queue_full");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("queue.max_queued (5)"),
        "{body}"
    );
    assert_eq!(
        d.rows().await,
        5,
        "nothing of the refused request was stored"
    );
    let out = d.sql_output(
        r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email":"sql@example.com"}');"#,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the queue is full"),
        "a producer's insert is refused by the database: {out:?}"
    );
    let status = c.get("/v1/status").await.unwrap().json();
    assert_eq!(status["queue"]["queued"], 5);
    assert_eq!(status["queue"]["maxQueued"], 5);
    assert!(status["queue"]["full"].is_string());
    let metrics = String::from_utf8_lossy(&c.get("/metrics").await.unwrap().body).into_owned();
    assert!(metrics.contains("hubspot_outbox_queue_full 1"), "{metrics}");
    // One write finishes: there is room for one more.
    d.sql("UPDATE outbox SET state = 'failed' WHERE id = (SELECT min(id) FROM outbox)");
    let a = c.post_json(one.to_string()).await.unwrap();
    assert_eq!(a.status, 202, "{:?}", a.json());
    d.stop().await;
}
}

/// The disk's free space is SQLite's own check (PostgreSQL manages its own disk).
// Multi-threaded: the test blocks its thread in the sqlite3 shell while the daemon (in
// this process) must keep committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_short_of_space_refuses_new_writes_by_socket_and_sql() {
    let one = json!({"objectType": "contacts", "properties": {"email": "late@example.com"}});
    let d = InProcess::start_with(&[("HUBSPOT_OUTBOX__QUEUE__MIN_FREE_DISK", "1000000TiB")]).await;
    let mut c = d.client().await;
    let a = c.post_json(one.to_string()).await.unwrap();
    assert_eq!(a.status, 503);
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("queue.min_free_disk"),
        "{:?}",
        a.json()
    );
    common::eventually("SQL producers see the disk's state", || async {
        let out = common::sqlite3(
            &d.db_path(),
            r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{}');"#,
        );
        String::from_utf8_lossy(&out.stderr).contains("the queue is full")
    })
    .await;
    // Inserts made before the daemon's first look at the disk were taken; from then on
    // none is.
    let before = d.rows().await;
    let out = common::sqlite3(
        &d.db_path(),
        r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{}');"#,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("the queue is full"));
    assert_eq!(d.rows().await, before);
    d.stop().await;
}

crate::on_both_backends! {
/// Succeeded writes past `retention.succeeded` are purged with their history; their trace
/// ids are remembered, so a producer retrying one (socket or SQL) still gets "duplicate",
/// until `retention.trace_ids` has passed. Failed writes are never purged.
async fn retention_purges_old_writes_and_remembers_their_trace_ids(db) {
    use hubspot_outbox::runtime::retention;
    // The daemon's own retention loop keeps everything (it would race this test's pass);
    // the pass below uses the defaults.
    let d = InProcess::start_on_backend(&db, &[
        ("HUBSPOT_OUTBOX__RETENTION__SUCCEEDED", "0s"),
        ("HUBSPOT_OUTBOX__RETENTION__DISCARDED", "0s"),
        ("HUBSPOT_OUTBOX__RETENTION__TRACE_IDS", "0s"),
    ])
    .await;
    let mut c = d.client().await;
    let write = |trace: &str| {
        json!({"objectType": "contacts", "properties": {"email": format!("{trace}@example.com")},
               "objectWriteTraceId": trace})
    };
    let both = json!([write("r-1"), write("r-2")]);
    assert_eq!(post(&mut c, &both).await.0, 202);
    let sql = |q: &str| d.sql(q);
    sql("UPDATE outbox SET state = 'succeeded', hubspot_id = '1', updated_at = '2020-01-01T00:00:00.000Z' WHERE trace_id = 'r-1';
         UPDATE outbox SET state = 'failed', updated_at = '2020-01-01T00:00:00.000Z' WHERE trace_id = 'r-2';
         INSERT INTO error_history (trace_id, attempt, http_status, message) VALUES ('r-1', 1, 503, 'x');");
    let config = hubspot_outbox::config::RetentionConfig::default();
    let never = tokio_util::sync::CancellationToken::new();
    let (purged, forgotten) = retention::pass(&d.store, &config, &never).await.unwrap();
    assert_eq!((purged, forgotten), (1, 0));
    assert_eq!(
        sql("SELECT trace_id FROM outbox"),
        "r-2",
        "failed writes stay"
    );
    assert_eq!(
        sql("SELECT count(*) FROM error_history WHERE trace_id = 'r-1'"),
        "0"
    );
    // A retry of the purged write is a duplicate, by the socket and by SQL.
    let (status, body) = post(&mut c, &write("r-1")).await;
    assert_eq!(status, 202);
    assert_eq!(body["writes"][0]["result"], "duplicate", "{body}");
    let out = d.sql_output(
        r#"INSERT INTO outbox (trace_id, object_type, properties) VALUES ('r-1', 'contacts', '{}');"#,
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has since been purged"),
        "{out:?}"
    );
    assert_eq!(sql("SELECT count(*) FROM outbox"), "1");
    // Once retention.trace_ids has passed, the id is forgotten and new again.
    sql("UPDATE purged_traces SET purged_at = '2020-01-01T00:00:00.000Z'");
    // ("0s": remembered for ever.)
    let for_ever = hubspot_outbox::config::RetentionConfig {
        trace_ids: std::time::Duration::ZERO,
        ..config.clone()
    };
    assert_eq!(
        retention::pass(&d.store, &for_ever, &never).await.unwrap(),
        (0, 0)
    );
    assert_eq!(
        retention::pass(&d.store, &config, &never).await.unwrap(),
        (0, 1)
    );
    let (_, body) = post(&mut c, &write("r-1")).await;
    assert_eq!(body["writes"][0]["result"], "new", "{body}");
    d.stop().await;
}
}

/// A full disk in the middle of a request (made reproducible with `database.max_size`,
/// SQLite's `max_page_count`): the client gets 507 naming it, nothing of the request is
/// stored, the daemon stays up, and it takes writes again once space is freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_the_request_whole_and_the_daemon_recovers_when_space_is_freed() {
    let d = InProcess::start_with(&[("HUBSPOT_OUTBOX__DATABASE__MAX_SIZE", "512KiB")]).await;
    let mut c = d.client().await;
    let big = "x".repeat(2000);
    let mut stored = 0;
    let full = loop {
        let batch: Vec<Value> = (0..20)
            .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("f{stored}-{i}@example.com"), "note": big}}))
            .collect();
        let a = c.post_json(Value::Array(batch).to_string()).await.unwrap();
        if a.status != 202 {
            break a;
        }
        stored += 20;
        assert!(stored < 10_000, "the database never filled");
    };
    assert_eq!(full.status, 507, "{:?}", full.json());
    assert_eq!(full.json()["error"], "database_full");
    assert_eq!(full.retry_after, Some(30));
    assert_eq!(
        d.rows().await,
        stored as i64,
        "nothing of the refused request was stored"
    );
    assert_eq!(
        c.get("/healthz").await.unwrap().status,
        200,
        "the daemon is up"
    );
    // Space is freed (the operator discards and purges, or the disk is cleaned); the
    // failed request left SQLite's write lock free for it.
    let out = common::sqlite3(&d.db_path(), "DELETE FROM outbox WHERE id % 2 = 0");
    assert!(out.status.success(), "{out:?}");
    let one = json!({"objectType": "contacts", "properties": {"email": "after@example.com"}});
    let a = c.post_json(one.to_string()).await.unwrap();
    assert_eq!(a.status, 202, "{:?}", a.json());
    d.stop().await;
}
