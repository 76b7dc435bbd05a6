//! The dashboard on the socket (issue 13, first part): the overview page over a real
//! socket, its figures against the database, its headers, and that it loads nothing from
//! anywhere but the daemon. On both backends.

mod common;

use common::InProcess;
use common::sim::{Simulator, enqueue, fast, settled, sql_count, start_daemon_on};
use common::web::{To, request};
use hubspot_outbox::simulator::SimOptions;
use serde_json::json;

/// `GET path` over the daemon's socket, as `curl --unix-socket` sends it: the status
/// line, the headers (lower-cased names) and the body.
async fn get(d: &InProcess, path: &str) -> (String, Vec<(String, String)>, String) {
    let r = request(&To::Socket(&d.config.socket.path), "GET", path, &[], "").await;
    (format!("HTTP/1.1 {}", r.status), r.headers, r.body)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> &'a str {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

crate::on_both_backends! {
async fn the_overview_shows_the_queue_as_the_database_holds_it(db) {
    // No token: writes are stored and stay pending, so the figures hold still.
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut writes: Vec<_> = (0..3)
        .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("c{i}@example.com")}}))
        .collect();
    writes.push(json!({"objectType": "deals", "properties": {"dealname": "d"}}));
    enqueue(&d, writes).await;
    assert_eq!(sql_count(&d, "state = 'pending'").await, 4);

    let (status, headers, page) = get(&d, "/ui/").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert_eq!(header(&headers, "content-type"), "text/html; charset=utf-8");
    assert!(header(&headers, "content-security-policy").contains("default-src 'none'"));
    assert_eq!(header(&headers, "x-content-type-options"), "nosniff");
    assert!(page.starts_with("<!DOCTYPE html>"), "{page}");
    // Row by row: contacts 3 pending, deals 1, 4 in all.
    let row = |name: &str| -> String {
        let start = page.find(&format!("<th scope=\"row\">{name}</th>")).unwrap();
        page[start..start + page[start..].find("</tr>").unwrap()].to_owned()
    };
    assert!(row("contacts").starts_with("<th scope=\"row\">contacts</th><td class=\"n\">3</td>"), "{}", row("contacts"));
    assert!(row("deals").contains("<td class=\"n\">1</td>"));
    assert!(row("all types").starts_with("<th scope=\"row\">all types</th><td class=\"n\">4</td>"));
    assert!(page.contains("Not paused."));
    // Everything it loads comes from the daemon: no other host is named.
    assert!(!page.contains("http://") && !page.contains("https://") && !page.contains("//cdn"));
    assert!(page.contains("src=\"/ui/app.js\"") && page.contains("href=\"/ui/app.css\""));

    // The part the script refreshes follows the database.
    let more: Vec<_> = (3..5)
        .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("c{i}@example.com")}}))
        .collect();
    enqueue(&d, more).await;
    let (status, _, part) = get(&d, "/ui/overview").await;
    assert!(status.starts_with("HTTP/1.1 200"));
    assert!(part.contains("<th scope=\"row\">contacts</th><td class=\"n\">5</td>"), "{part}");
    assert!(!part.contains("<html"), "a fragment, not a page");

    // The charts draw the batch log: nothing yet, then a request of 7 writes this minute.
    assert!(part.contains("Writes sent per minute, last hour: 0 writes in 0 requests"), "{part}");
    let now = match db {
        common::Backend::Sqlite => "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
        common::Backend::Postgres(_) => "now()",
    };
    d.sql(&format!(
        "INSERT INTO batch_log (batch_id, object_type, size, http_status, outcome, duration_ms, sent_at, finished_at)
         VALUES ('b-1', 'contacts', 7, 201, 'created', 12, {now}, {now})"
    ));
    let (_, _, part) = get(&d, "/ui/overview").await;
    assert!(part.contains("Writes sent per minute, last hour: 7 writes in 1 requests"), "{part}");
    assert!(part.contains("Writes sent per hour, last day: 7 writes in 1 requests"), "{part}");
    assert_eq!(part.matches("<rect").count(), 2, "one bar in each chart");

    for (path, kind) in [("/ui/app.css", "text/css"), ("/ui/app.js", "text/javascript")] {
        let (status, headers, body) = get(&d, path).await;
        assert!(status.starts_with("HTTP/1.1 200"), "{path}: {status}");
        assert!(header(&headers, "content-type").starts_with(kind), "{path}");
        assert!(!body.is_empty());
    }
    let (status, headers, _) = get(&d, "/ui").await;
    assert!(status.starts_with("HTTP/1.1 308"), "{status}");
    assert_eq!(header(&headers, "location"), "/ui/");
    d.stop().await;
}
}

/// How many writes a list page shows (each links to its own page).
fn listed(page: &str) -> Vec<String> {
    page.match_indices("<td><a href=\"/ui/writes/")
        .map(|(i, m)| {
            let rest = &page[i + m.len()..];
            rest[..rest.find('"').unwrap()].to_owned()
        })
        .collect()
}

crate::on_both_backends! {
async fn the_writes_pages_filter_group_page_and_escape(db) {
    let sim = Simulator::start(SimOptions::default()).await;
    let d = start_daemon_on(&db, &fast(&sim, &[])).await;
    let contact = |i: usize| json!({"objectType": "contacts", "objectWriteTraceId": format!("ok-{i:02}"),
                                    "properties": {"email": format!("ok{i}@example.com")}});
    enqueue(&d, (0..55).map(contact).collect()).await;
    enqueue(&d, vec![
        json!({"objectType": "contacts", "objectWriteTraceId": "bad-1",
               "properties": {"email": "b1@example.com", "unknown_colour": "<script>alert(1)</script>"}}),
        json!({"objectType": "contacts", "objectWriteTraceId": "bad-2",
               "properties": {"email": "b2@example.com", "unknown_colour": "red"}}),
    ]).await;
    settled(&d, 57).await;

    // Newest first, 50 a page, then the rest by the "older" link (keyed, filters kept).
    let (status, _, page) = get(&d, "/ui/writes").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let first = listed(&page);
    assert_eq!(first.len(), 50);
    assert_eq!(&first[..3], ["bad-2", "bad-1", "ok-54"]);
    let end = page.find("\" rel=\"next\"").expect("a link to older writes");
    let start = page[..end].rfind("href=\"").unwrap() + 6;
    let next = page[start..end].replace("&amp;", "&");
    let (_, _, older) = get(&d, &next).await;
    let second = listed(&older);
    assert_eq!(second.len(), 7);
    assert_eq!(second.last().map(String::as_str), Some("ok-00"));
    assert!(!older.contains("Older writes"), "the last page has no older link");

    // Filters: failed ones, grouped by their error; a property value; a HubSpot id.
    let (_, _, failed) = get(&d, "/ui/writes?state=failed").await;
    assert_eq!(listed(&failed), ["bad-2", "bad-1"]);
    assert!(failed.contains("Failed writes by error"), "{failed}");
    assert!(failed.contains("<td class=\"n\">2</td>"), "both in one group: {failed}");
    let (_, _, found) = get(&d, "/ui/writes?q=ok7%40example.com").await;
    assert_eq!(listed(&found), ["ok-07"]);
    let id = d.sql("SELECT hubspot_id FROM outbox WHERE trace_id = 'ok-03'");
    let (_, _, found) = get(&d, &format!("/ui/writes?q={id}")).await;
    assert_eq!(listed(&found), ["ok-03"]);
    let (_, _, none) = get(&d, "/ui/writes?type=deals").await;
    assert!(none.contains("No write matches."));

    // One write: its properties (escaped), its error history; an unknown one is 404.
    let (status, _, one) = get(&d, "/ui/writes/bad-1").await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(one.contains("&lt;script&gt;alert(1)&lt;/script&gt;") && !one.contains("<script>alert"), "{one}");
    assert!(one.contains("unknown_colour") && one.contains("Every error it met"), "{one}");
    let (status, _, _) = get(&d, "/ui/writes/nope").await;
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    // A form that makes no sense: 400, saying what is wrong, nothing else happens.
    for (query, why) in [("state=lost", "state `lost`"), ("since=soon", "since `soon`"), ("before=abc", "before")] {
        let (status, _, page) = get(&d, &format!("/ui/writes?{query}")).await;
        assert!(status.starts_with("HTTP/1.1 400"), "{query}: {status}");
        assert!(page.contains(why) && page.contains("role=\"alert\""), "{query}: {page}");
    }
    d.stop().await;
}
}

crate::on_both_backends! {
/// The overview's counts are kept, not counted (SQLite's row triggers; PostgreSQL's
/// statement triggers and the daemon's fold): they follow inserts, updates, deletes and a
/// rollback as a count of the rows would, and on PostgreSQL a count that drifted (rows
/// changed with the triggers off) heals when the daemon starts.
async fn the_kept_counts_follow_every_change_as_a_count_would(db) {
    let d = InProcess::start_on_backend(&db, &[]).await;
    let mut writes: Vec<_> = (0..5)
        .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("k{i}@example.com")}}))
        .collect();
    writes.extend((0..2).map(|i| json!({"objectType": "deals", "properties": {"dealname": format!("d{i}")}})));
    enqueue(&d, writes).await;
    let counted = "SELECT object_type, operation, state, count(*) FROM outbox
                   GROUP BY object_type, operation, state ORDER BY 1, 2, 3";
    let kept = "SELECT object_type, operation, state, writes FROM queue_depth ORDER BY 1, 2, 3";
    let same = |d: &InProcess, when: &str| {
        assert_eq!(d.sql(kept), d.sql(counted), "{when}");
    };
    same(&d, "after the inserts");
    d.sql("UPDATE outbox SET state = 'failed', last_error = 'x' WHERE object_type = 'deals'");
    d.sql("DELETE FROM outbox WHERE trace_id = (SELECT min(trace_id) FROM outbox WHERE object_type = 'contacts')");
    d.sql("BEGIN; UPDATE outbox SET state = 'discarded' WHERE object_type = 'contacts'; ROLLBACK;");
    same(&d, "after an update, a delete and a rollback");
    // The overview reads through the daemon (on PostgreSQL, it folds the changes first).
    let (_, _, part) = get(&d, "/ui/overview").await;
    assert!(part.contains("<th scope=\"row\">contacts</th><td class=\"n\">4</td>"), "{part}");
    same(&d, "after the daemon read them");
    if let common::Backend::Postgres(_) = db {
        assert_eq!(d.sql("SELECT count(*) FROM write_count_changes"), "0", "folded");
        d.sql("ALTER TABLE outbox DISABLE TRIGGER USER;
               UPDATE outbox SET state = 'succeeded', hubspot_id = '1' WHERE object_type = 'contacts';
               ALTER TABLE outbox ENABLE TRIGGER USER;");
        assert_ne!(d.sql(kept), d.sql(counted), "the triggers were off");
        let d = d.restart().await;
        same(&d, "after a start");
        d.stop().await;
    } else {
        d.stop().await;
    }
}
}
