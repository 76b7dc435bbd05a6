//! The dashboard's actions over the socket (issue 13): retry, edit-then-retry and discard
//! one write, retry everything a filter matches after its count, each in the audit log;
//! and posts without the page's token, or from another site, refused with nothing
//! changed. On both backends, against the simulator.

mod common;

use common::sim::{Simulator, enqueue, fast, settled, sql_count, start_daemon_on};
use common::web::{Reply, To, form, request};
use common::{InProcess, eventually};
use hubspot_outbox::simulator::SimOptions;
use serde_json::json;

async fn get(d: &InProcess, path: &str) -> Reply {
    request(&To::Socket(&d.config.socket.path), "GET", path, &[], "").await
}

async fn post(d: &InProcess, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    request(
        &To::Socket(&d.config.socket.path),
        "POST",
        path,
        headers,
        body,
    )
    .await
}

fn state_of(d: &InProcess, trace_id: &str) -> String {
    d.sql(&format!(
        "SELECT state FROM outbox WHERE trace_id = '{trace_id}'"
    ))
}

crate::on_both_backends! {
async fn operators_retry_edit_and_discard_and_every_change_is_audited(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let bad = |t: &str| json!({"objectType": "contacts", "objectWriteTraceId": t,
                               "properties": {"email": format!("{t}@example.com"), "unknown_colour": "red"}});
    enqueue(&d, vec![bad("bad-1"), bad("bad-2"), bad("bad-3"), bad("bad-4")]).await;
    settled(&d, 4).await;
    assert_eq!(sql_count(&d, "state = 'failed'").await, 4);

    // The write's page offers the actions, with the daemon's token.
    let page = get(&d, "/ui/writes/bad-1").await;
    assert_eq!(page.status, 200);
    assert!(page.body.contains("Edit and retry") && page.body.contains("Discard…"), "{}", page.body);
    let token = page.csrf();

    // No token, a wrong one, or a post another site's page made: refused, nothing changed.
    for (headers, body) in [
        (vec![], String::new()),
        (vec![], form(&[("csrf", "0123")])),
        (vec![("Sec-Fetch-Site", "cross-site")], form(&[("csrf", &token)])),
        (vec![("Origin", "http://evil.example")], form(&[("csrf", &token)])),
    ] {
        let r = post(&d, "/ui/writes/bad-1/retry", &headers, &body).await;
        assert_eq!(r.status, 403, "{headers:?} {body}: {}", r.body);
        assert!(r.body.contains("Nothing was changed."), "{}", r.body);
    }
    assert_eq!(state_of(&d, "bad-1"), "failed");
    assert!(get(&d, "/ui/audit").await.body.contains("Nothing has been changed yet."));

    // Edit: the bad property removed; the write is sent again and succeeds.
    let edit = get(&d, "/ui/writes/bad-1/edit").await;
    assert!(edit.body.contains("unknown_colour"), "{}", edit.body);
    let invalid = post(&d, "/ui/writes/bad-1/edit", &[], &form(&[("csrf", &token), ("properties", "[1]")])).await;
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert!(invalid.body.contains("must be a JSON object"));
    let fixed = r#"{"email": "bad-1@example.com"}"#;
    // A form loaded before the write last changed: refused, the form shown again.
    assert!(edit.body.contains("name=\"seen\""), "{}", edit.body);
    let stale = post(&d, "/ui/writes/bad-1/edit", &[], &form(&[("csrf", &token), ("properties", fixed), ("seen", "2000-01-01T00:00:00.000Z")])).await;
    assert_eq!(stale.status, 422, "{}", stale.body);
    assert!(stale.body.contains("changed since this form was loaded"), "{}", stale.body);
    assert_eq!(state_of(&d, "bad-1"), "failed");
    let r = post(&d, "/ui/writes/bad-1/edit", &[("Origin", "http://localhost"), ("Sec-Fetch-Site", "same-origin")],
                 &form(&[("csrf", &token), ("properties", fixed)])).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(r.header("location"), "/ui/writes/bad-1");
    eventually("the edited write succeeded", || async { state_of(&d, "bad-1") == "succeeded" }).await;

    // Retry one as it is: it fails again, the same way.
    let r = post(&d, "/ui/writes/bad-2/retry", &[], &form(&[("csrf", &token)])).await;
    assert_eq!(r.status, 303, "{}", r.body);
    eventually("bad-2 failed again", || async {
        d.sql("SELECT attempts || state FROM outbox WHERE trace_id = 'bad-2'") == "1failed"
    }).await;

    // Discard one, after the page that asks.
    let ask = get(&d, "/ui/writes/bad-4/discard").await;
    assert!(ask.body.contains("Discard this write"), "{}", ask.body);
    let r = post(&d, "/ui/writes/bad-4/discard", &[], &form(&[("csrf", &token)])).await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert_eq!(state_of(&d, "bad-4"), "discarded");
    let again = post(&d, "/ui/writes/bad-4/discard", &[], &form(&[("csrf", &token)])).await;
    assert_eq!(again.status, 409, "{}", again.body);
    let succeeded = get(&d, "/ui/writes/bad-1/discard").await;
    assert_eq!(succeeded.status, 409, "a succeeded write is not offered: {}", succeeded.body);

    // Everything the filter matches: the count first (nothing changes), then the action.
    let list = get(&d, "/ui/writes?state=failed&q=bad").await;
    assert!(list.body.contains("Retry all matching"), "{}", list.body);
    let count = get(&d, "/ui/bulk?action=retry&state=failed&q=bad").await;
    assert_eq!(count.status, 200, "{}", count.body);
    assert!(count.body.contains("<strong>2</strong> write(s) match"), "{}", count.body);
    assert_eq!(sql_count(&d, "state = 'failed'").await, 2);
    let token_here = count.csrf();
    assert_eq!(token_here, token, "one token on the socket for the daemon's life");
    let not_failed = get(&d, "/ui/bulk?action=retry&state=succeeded").await;
    assert_eq!(not_failed.status, 400, "{}", not_failed.body);
    // The form holds the time of the count: a write that comes to match after it (bad-5
    // fails now) is not taken by the confirmed action.
    let until = count.body.split("name=\"until\" value=\"").nth(1).and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no until in {}", count.body)).to_owned();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    enqueue(&d, vec![bad("bad-5")]).await;
    eventually("bad-5 failed", || async { state_of(&d, "bad-5") == "failed" }).await;
    let r = post(&d, "/ui/bulk", &[], &form(&[("csrf", &token), ("action", "retry"), ("state", "failed"), ("q", "bad"), ("until", &until)])).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("Requeued 2 write(s)."), "{}", r.body);
    eventually("both failed again", || async {
        sql_count(&d, "state = 'failed' AND attempts = 1 AND trace_id IN ('bad-2', 'bad-3')").await == 2
    }).await;
    assert_eq!(d.sql("SELECT attempts FROM outbox WHERE trace_id = 'bad-5'"), "1", "bad-5 not retried");

    // The audit log: who, through what, which writes, how many; newest first.
    let audit = get(&d, "/ui/audit").await;
    let rows: Vec<&str> = audit.body.split("<tr>").skip(2).collect();
    assert_eq!(rows.len(), 5, "{}", audit.body);
    assert!(rows[0].contains(">retry<") && rows[0].contains(&format!("state=failed until={until} text=&quot;bad&quot;")) && rows[0].contains("<td class=\"n\">2</td>"), "{}", rows[0]);
    // An action that found nothing to change is recorded too, with 0 writes.
    assert!(rows[1].contains(">discard<") && rows[1].contains("<td class=\"n\">0</td>"), "{}", rows[1]);
    assert!(rows[2].contains(">discard<") && rows[2].contains("bad-4") && rows[2].contains("<td class=\"n\">1</td>"), "{}", rows[2]);
    assert!(rows[3].contains(">retry<") && rows[3].contains("bad-2"), "{}", rows[3]);
    assert!(rows[4].contains(">edit<") && rows[4].contains("unset unknown_colour"), "{}", rows[4]);
    assert!(!rows[4].contains("red"), "values are not logged: {}", rows[4]);
    for row in &rows {
        assert!(row.contains("uid ") && row.contains(">dashboard<"), "{row}");
    }

    // The counts the overview shows (kept by triggers on SQLite) are the table's, after
    // all of that and a careless producer's insert the guard rewrites to pending.
    d.sql("INSERT INTO outbox (object_type, properties, state, attempts) VALUES ('deals', '{\"dealname\":\"x\"}', 'succeeded', 7)");
    let counted = "SELECT object_type || ' ' || operation || ' ' || state || ' ' || sum(writes) FROM queue_depth
                   GROUP BY object_type, operation, state ORDER BY 1";
    let counts = "SELECT object_type || ' ' || operation || ' ' || state || ' ' || count(*) FROM outbox
                  GROUP BY object_type, operation, state ORDER BY 1";
    eventually("the counts are the table's", || async { d.sql(counted) == d.sql(counts) }).await;
    assert!(d.sql(counted).contains("deals create pending 1") || d.sql(counted).contains("deals create failed 1"), "{}", d.sql(counted));
    d.stop().await;
}
}

/// A browser's request to the socket is answered only when addressed to it by a loopback
/// name or one in `ui.allowed_hosts` (a page whose own name was made to resolve to
/// 127.0.0.1 behind `ssh -L` gets nothing, not even a page with its form token), and
/// another site's page cannot post JSON to the API as a `text/plain` form. Programs,
/// which send no `Origin` or `Sec-Fetch-*`, are not affected.
// Multi-threaded: the sqlite3 shell blocks while the daemon in this process writes.
#[tokio::test(flavor = "multi_thread")]
async fn browsers_must_address_the_socket_by_its_own_name_and_not_post_from_elsewhere() {
    let d = InProcess::start_with(&[]).await;
    enqueue(
        &d,
        vec![json!({"objectType": "contacts", "objectWriteTraceId": "t-1", "properties": {"email": "a@example.com"}})],
    )
    .await;
    d.sql("UPDATE outbox SET state = 'failed', last_error = 'x' WHERE trace_id = 't-1'");
    let to = To::Socket(&d.config.socket.path);
    let rebound = [
        ("Host", "evil.example:8080"),
        ("Sec-Fetch-Site", "same-origin"),
    ];
    for path in ["/ui/", "/ui/writes/t-1", "/v1/writes/t-1"] {
        let r = request(&to, "GET", path, &rebound, "").await;
        assert_eq!(r.status, 421, "{path}: {}", r.body);
        assert!(r.body.contains("ui.allowed_hosts") && !r.body.contains("a@example.com"));
    }
    // The dashboard, even without browser headers, answers only its own names.
    let r = request(&to, "GET", "/ui/", &[("Host", "evil.example")], "").await;
    assert_eq!(r.status, 421);
    for host in ["localhost:8080", "127.0.0.1:8080", "[::1]:8080"] {
        let r = request(
            &to,
            "GET",
            "/ui/",
            &[("Host", host), ("Sec-Fetch-Site", "none")],
            "",
        )
        .await;
        assert_eq!(r.status, 200, "{host}");
    }
    // Another site's form, its body made to read as JSON.
    let r = request(
        &to,
        "POST",
        "/v1/retry",
        &[
            ("Content-Type", "text/plain"),
            ("Origin", "http://evil.example"),
            ("Sec-Fetch-Site", "cross-site"),
        ],
        r#"{"traceIds":["t-1","="]}"#,
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(state_of(&d, "t-1"), "failed", "nothing changed");
    // A program (no browser headers) is answered whatever its Host says.
    let r = request(&to, "GET", "/v1/status", &[("Host", "whatever")], "").await;
    assert_eq!(r.status, 200, "{}", r.body);
    d.stop().await;
}
