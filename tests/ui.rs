//! The dashboard on the socket (issue 13, first part): the overview page over a real
//! socket, its figures against the database, its headers, and that it loads nothing from
//! anywhere but the daemon. On both backends.

mod common;

use common::InProcess;
use common::sim::{enqueue, sql_count};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// `GET path` over the daemon's socket, as `curl --unix-socket` sends it: the status
/// line, the headers (lower-cased names) and the body.
async fn get(d: &InProcess, path: &str) -> (String, Vec<(String, String)>, String) {
    let mut s = UnixStream::connect(&d.config.socket.path).await.unwrap();
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    (status, headers, body.to_owned())
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
