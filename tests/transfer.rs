//! `export` and `import` (issue 12): a SQLite outbox moved to PostgreSQL with writes in
//! every state (and one not yet validated), then finished there by a PostgreSQL daemon: nothing lost, nothing sent
//! twice, the history kept. Skipped, saying so, where PostgreSQL is not installed.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use common::sim::{Simulator, enqueue, fast, sql_count, start_daemon, start_daemon_on};
use common::{Backend, daemon_command, eventually, sqlite3};
use hubspot_outbox::simulator::SimOptions;
use serde_json::{Value, json};

fn contact(trace: &str, properties: Value, associations: Vec<Value>) -> Value {
    json!({"objectType": "contacts", "objectWriteTraceId": trace, "properties": properties,
           "associations": associations})
}

/// `hubspot-outbox ARGS` on `dir`'s SQLite outbox, or on `url`'s PostgreSQL one.
fn cli(dir: &Path, url: Option<&str>, args: &[&str]) -> Output {
    let mut cmd = daemon_command(dir, args);
    if let Some(url) = url {
        cmd.env("HUBSPOT_OUTBOX__DATABASE__URL", url);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An export's rows with what only the database means taken out (ids, the header) and
/// the JSON columns parsed (PostgreSQL's jsonb spaces its text its own way).
fn comparable(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] != "header")
        .map(|mut v| {
            let row = v.as_object_mut().unwrap();
            row.remove("id");
            for column in [
                "properties",
                "associations",
                "referenced_associations",
                "associations_done",
            ] {
                if let Some(Value::String(text)) = row.get(column) {
                    let parsed: Value = serde_json::from_str(text).unwrap();
                    row.insert(column.into(), parsed);
                }
            }
            v
        })
        .collect()
}

/// The state, HubSpot id and attempts of every write, by trace id.
fn states(lines: &[Value]) -> HashMap<String, (String, Value)> {
    lines
        .iter()
        .filter(|v| v["kind"] == "write")
        .map(|v| {
            (
                v["trace_id"].as_str().unwrap().to_owned(),
                (
                    v["state"].as_str().unwrap().to_owned(),
                    v["hubspot_id"].clone(),
                ),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_outbox_moves_to_postgresql_with_nothing_lost_or_sent_twice() {
    let Some(Backend::Postgres(url)) = Backend::postgres() else {
        return;
    };
    let sim = Simulator::start(SimOptions::default()).await;
    let env = fast(&sim, &[]);

    // On SQLite: two contacts sent, one failed (HubSpot has no such property: the simulator knows none whose name starts `unknown`), then
    // HubSpot refuses the token: a company and a contact stay pending, a contact that
    // points at the company waits for it.
    let d = start_daemon(&env).await;
    enqueue(
        &d,
        vec![
            contact("s-1", json!({"email": "s1@example.com"}), vec![]),
            contact("s-2", json!({"email": "s2@example.com"}), vec![]),
            contact(
                "f-1",
                json!({"email": "f1@example.com", "unknown_colour": "x"}),
                vec![],
            ),
        ],
    )
    .await;
    eventually("the first writes settled", || async {
        sql_count(&d, "state IN ('succeeded', 'failed')").await == 3
    })
    .await;
    sim.control("/_sim/token", json!({"token": "another-token"}))
        .await;
    enqueue(
        &d,
        vec![
            json!({"objectType": "companies", "objectWriteTraceId": "co-1",
                   "properties": {"name": "Acme"}}),
            contact(
                "w-1",
                json!({"email": "w1@example.com"}),
                vec![json!({"to": {"objectWriteTraceId": "co-1"},
                            "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                       "associationTypeId": 279}]})],
            ),
            contact("p-1", json!({"email": "p1@example.com"}), vec![]),
            contact("p-2", json!({"email": "p2@example.com"}), vec![]),
        ],
    )
    .await;
    eventually("the 401 paused sending", || async {
        d.sql("SELECT count(*) FROM pauses WHERE kind = 'unauthorized'") == "1"
    })
    .await;
    let dir = d.stop_keeping().await;
    let db = dir.path().join("outbox.db");
    // A crash while `p-2` was in flight, after HubSpot created it: the record exists, the
    // answer never came.
    let property = String::from_utf8(
        sqlite3(&db, "SELECT sent_with FROM outbox WHERE trace_id = 's-1'").stdout,
    )
    .unwrap()
    .trim()
    .to_owned();
    assert!(!property.is_empty());
    let out = sqlite3(
        &db,
        &format!(
            "UPDATE outbox SET state = 'in_flight', batch_id = 'lost-batch', sent_with = '{property}'
             WHERE trace_id = 'p-2'"
        ),
    );
    assert!(out.status.success());
    // A producer's row the daemon has not validated yet.
    let out = sqlite3(
        &db,
        r#"INSERT INTO outbox (trace_id, object_type, properties)
           VALUES ('q-1', 'contacts', '{"email":"q1@example.com"}')"#,
    );
    assert!(out.status.success());
    sim.control("/_sim/token", json!({"token": "sim-token"}))
        .await;
    let mut properties = json!({"email": "p2@example.com"});
    properties[property.as_str()] = json!("p-2");
    let body = json!({"inputs": [{"properties": properties, "associations": [],
                                   "objectWriteTraceId": "p-2"}]});
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/crm/v3/objects/contacts/batch/create",
            sim.url()
        ))
        .bearer_auth("sim-token")
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = answer.status();
    let bytes = answer.bytes().await.unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&bytes));
    let created: Value = serde_json::from_slice(&bytes).unwrap();
    let p2_id = created["results"][0]["id"].as_str().unwrap().to_owned();

    // Export from SQLite, import into PostgreSQL: the same rows come out of both.
    let first = dir.path().join("sqlite.jsonl");
    let said = ok(&cli(dir.path(), None, &["export", first.to_str().unwrap()]));
    assert!(said.starts_with("exported 8 write(s)"), "{said}");
    let said = ok(&cli(
        dir.path(),
        Some(&url),
        &["import", first.to_str().unwrap(), "--json"],
    ));
    let report: Value = serde_json::from_str(said.trim()).unwrap();
    assert_eq!(report["counts"]["writes"], 8, "{report}");
    assert_eq!(report["counts"]["waits"], 1, "{report}");
    let second = dir.path().join("postgres.jsonl");
    ok(&cli(
        dir.path(),
        Some(&url),
        &["export", second.to_str().unwrap()],
    ));
    let (sqlite_rows, pg_rows) = (comparable(&first), comparable(&second));
    assert_eq!(sqlite_rows, pg_rows);
    let before = states(&sqlite_rows);
    assert_eq!(before["s-1"].0, "succeeded");
    assert_eq!(before["f-1"].0, "failed");
    assert_eq!(before["w-1"].0, "waiting");
    assert_eq!(before["p-2"].0, "in_flight");
    assert_eq!(before["q-1"].0, "pending");
    assert!(
        sqlite_rows
            .iter()
            .any(|v| v["kind"] == "error" && v["trace_id"] == "f-1")
    );
    assert!(sqlite_rows.iter().any(|v| v["kind"] == "batch"));
    assert!(sqlite_rows.iter().any(|v| v["kind"] == "usage"));

    // A second import of the same file is refused and changes nothing.
    let again = cli(dir.path(), Some(&url), &["import", first.to_str().unwrap()]);
    assert!(!again.status.success());
    let why = String::from_utf8_lossy(&again.stderr);
    assert!(
        why.contains("was imported into this outbox before"),
        "{why}"
    );
    let third = dir.path().join("again.jsonl");
    ok(&cli(
        dir.path(),
        Some(&url),
        &["export", third.to_str().unwrap()],
    ));
    assert_eq!(comparable(&third), pg_rows);
    // The queue counts what is unfinished: two pending, one in flight, two waiting for
    // or to be sent before another.
    let queued = common::pg::shared()
        .unwrap()
        .psql(&url, "SELECT queued FROM queue_state");
    assert_eq!(String::from_utf8_lossy(&queued.stdout).trim(), "5");

    // Into another PostgreSQL outbox whose daemon already runs: it hears of the import,
    // adopts the write in flight (no daemon of its own) and finishes the work: the
    // pending writes sent, the waiting one sent once its company has an id, the one in
    // flight read back (not created again), nothing sent twice, the history kept.
    let Some(pg) = Backend::postgres() else {
        unreachable!("the server runs")
    };
    let Backend::Postgres(url) = pg.clone() else {
        unreachable!()
    };
    let d = start_daemon_on(&pg, &env).await;
    ok(&cli(
        dir.path(),
        Some(&url),
        &["import", first.to_str().unwrap()],
    ));
    eventually("every imported write settled", || async {
        sql_count(&d, "state IN ('succeeded', 'failed')").await == 8
    })
    .await;
    assert_eq!(sql_count(&d, "state = 'failed'").await, 1);
    let ids: HashMap<String, String> = d
        .sql("SELECT trace_id, hubspot_id FROM outbox WHERE state = 'succeeded'")
        .lines()
        .map(|l| {
            let (t, id) = l.split_once('|').unwrap();
            (t.to_owned(), id.to_owned())
        })
        .collect();
    assert_eq!(ids["p-2"], p2_id);
    assert_eq!(ids["s-1"], before["s-1"].1.as_str().unwrap());
    let contacts = sim.objects("contacts").await;
    let mut traces: Vec<&str> = contacts
        .iter()
        .filter_map(|o| o["properties"][property.as_str()].as_str())
        .collect();
    traces.sort();
    assert_eq!(traces, ["p-1", "p-2", "q-1", "s-1", "s-2", "w-1"]);
    let company = &ids["co-1"];
    assert_eq!(
        d.sql(&format!(
            "SELECT {} FROM outbox WHERE trace_id = 'w-1'",
            d.json_at("associations", "$[0].to.id")
        )),
        *company
    );
    let shown = ok(&cli(dir.path(), Some(&url), &["show", "f-1"]));
    assert!(shown.contains("unknown_colour"), "{shown}");
    d.stop().await;
}

/// On SQLite at both ends: 600 writes a producer inserted (two pages of an import).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_is_all_or_nothing_and_happens_once() {
    let source = tempfile::tempdir().unwrap();
    ok(&cli(source.path(), None, &["migrate"]));
    let out = sqlite3(
        &source.path().join("outbox.db"),
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 600)
         INSERT INTO outbox (trace_id, object_type, properties)
         SELECT 'w-' || i, 'contacts', json_object('email', 'w' || i || '@example.com') FROM n",
    );
    assert!(out.status.success());
    let file = source.path().join("all.jsonl");
    ok(&cli(
        source.path(),
        None,
        &["export", file.to_str().unwrap()],
    ));
    let text = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 602, "a header, 600 writes, the end");
    let n = lines.len();

    // Files cut short, spliced, headless, foreign or from another version: refused whole.
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("in.jsonl");
    let rows = |dir: &Path| -> String {
        let out = sqlite3(&dir.join("outbox.db"), "SELECT count(*) FROM outbox");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for (broken, why) in [
        (lines[..n - 1].join("\n") + "\n", "without its `end` line"),
        (
            [&lines[..300], &lines[301..]].concat().join("\n") + "\n",
            "the `end` line counts",
        ),
        (lines[1..].join("\n") + "\n", "must be its header"),
        (
            "{\"kind\":\"write\"}\n".to_owned(),
            "not a line of an export",
        ),
        (text.replace("\"version\":1", "\"version\":9"), "version 9"),
    ] {
        std::fs::write(&target, &broken).unwrap();
        let out = cli(dir.path(), None, &["import", target.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1));
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            said.contains(why) && said.contains("nothing was imported"),
            "{said}"
        );
        assert_eq!(rows(dir.path()), "0");
    }
    // A trace id the target holds, met on the second page, after the first page was
    // inserted: the import is rolled back whole.
    let out = sqlite3(
        &dir.path().join("outbox.db"),
        r#"INSERT INTO outbox (trace_id, object_type, properties) VALUES ('w-550', 'contacts', '{"email":"x@example.com"}')"#,
    );
    assert!(out.status.success());
    let out = cli(dir.path(), None, &["import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("w-550") && said.contains("nothing was imported"),
        "{said}"
    );
    assert_eq!(rows(dir.path()), "1");

    // Into a directory that does not exist yet, from standard input: every write, as it
    // was (pending, to be validated by the daemon), counted in the queue.
    let fresh = tempfile::tempdir().unwrap();
    let nested = fresh.path().join("new/outbox.db");
    let import = |args: &[&str]| {
        daemon_command(fresh.path(), args)
            .env("HUBSPOT_OUTBOX__DATABASE__PATH", &nested)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut child = import(&["import", "-"]);
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let said = ok(&child.wait_with_output().unwrap());
    assert!(said.starts_with("imported 600 write(s)"), "{said}");
    let out = sqlite3(
        &nested,
        "SELECT count(*), sum(state = 'pending'), sum(validated),
                (SELECT queued FROM queue_state), (SELECT count(*) FROM ingest_marker),
                (SELECT count(*) FROM imports)
         FROM outbox",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "600|600|0|600|0|1"
    );
    // The same file again: refused, nothing changes.
    let out = import(&["import", file.to_str().unwrap()])
        .wait_with_output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("was imported into this outbox before"),
        "{said}"
    );
    let out = sqlite3(
        &nested,
        "SELECT count(*), (SELECT queued FROM queue_state) FROM outbox",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "600|600");

    // A daemon on the SQLite outbox: export refuses to read it, naming the reason.
    let daemon = common::Daemon::start(source.path()).await;
    let out = cli(source.path(), None, &["export", "-"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("stop it first"), "{said}");
    assert!(out.stdout.is_empty());
    daemon.kill();
}
