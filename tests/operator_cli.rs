//! The operator commands on a database prepared with SQL (no daemon running): output,
//! filters, `--json` shapes, changes, exit codes, and that the token never prints.

mod common;

use std::path::Path;
use std::process::Output;

use common::{daemon_command, sqlite3};
use serde_json::Value;

/// A database with writes in every state and their error history.
fn prepared() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = daemon_command(dir.path(), &["migrate"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sqlite3(
        &dir.path().join("outbox.db"),
        // The rows as the daemon would have left them: the marker admits an insert as it
        // claims to be (any other is made a new pending write, migration 0007).
        r#"
        INSERT INTO ingest_marker (id) VALUES (1);
        INSERT INTO outbox (trace_id, object_type, properties, state, attempts, last_error, validated, updated_at) VALUES
          ('f-contact', 'contacts', '{"email":"a@example.com","age":"x"}', 'failed', 1, 'VALIDATION_ERROR: age is not a number', 1, '2026-11-29T10:00:00.000Z'),
          ('f-deal', 'deals', '{"dealname":"d"}', 'failed', 8, 'gave up after 8 attempts: HTTP 503', 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
          ('u-deal', 'deals', '{"dealname":"u"}', 'unconfirmed', 1, 'unconfirmed: HubSpot may have created it', 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
          ('s-old', 'contacts', '{"email":"old@example.com"}', 'succeeded', 1, NULL, 1, '2020-01-01T00:00:00.000Z'),
          ('p-new', 'contacts', '{"email":"new@example.com"}', 'pending', 0, NULL, 1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));
        DELETE FROM ingest_marker;
        UPDATE outbox SET hubspot_id = '77' WHERE trace_id = 's-old';
        INSERT INTO error_history (trace_id, attempt, http_status, category, message, correlation_id) VALUES
          ('f-contact', 1, 207, 'VALIDATION_ERROR', 'age: 12x was not a valid number', 'corr-1'),
          ('f-deal', 8, 503, 'INTERNAL_ERROR', 'internal error', NULL);
        "#,
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

fn run(dir: &Path, args: &[&str]) -> Output {
    daemon_command(dir, args)
        .env("HUBSPOT_ACCESS_TOKEN", "pat-na1-SECRET-TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn state(dir: &Path, trace_id: &str) -> String {
    let out = sqlite3(
        &dir.join("outbox.db"),
        &format!("SELECT state || '/' || attempts FROM outbox WHERE trace_id = '{trace_id}'"),
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn status_counts_states_and_types_in_text_and_json() {
    let dir = prepared();
    let text = stdout(&run(dir.path(), &["status"]));
    assert!(
        text.contains("contacts")
            && text.contains("failed")
            && text.contains("sending: not paused"),
        "{text}"
    );
    let v = &json_lines(&run(dir.path(), &["status", "--json"]))[0];
    let writes = v["writes"].as_array().unwrap();
    assert!(
        writes
            .iter()
            .any(|w| w["objectType"] == "deals" && w["state"] == "unconfirmed" && w["writes"] == 1)
    );
    assert!(v["oldestPendingAgeSeconds"].as_f64().is_some());
    assert_eq!(v["rateLimit"]["requestsPerInterval"], 100);
    assert_eq!(v["paused"], Value::Array(vec![]));
}

#[test]
fn failed_lists_newest_first_and_filters() {
    let dir = prepared();
    let all = json_lines(&run(dir.path(), &["failed", "--json"]));
    let ids: Vec<&str> = all
        .iter()
        .map(|v| v["objectWriteTraceId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["f-deal", "f-contact"]);
    assert_eq!(all[1]["category"], "VALIDATION_ERROR");
    assert_eq!(all[1]["message"], "age: 12x was not a valid number");
    assert_eq!(all[1]["correlationId"], "corr-1");
    let only = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["failed", "--json"];
        full.extend_from_slice(args);
        json_lines(&run(dir.path(), &full))
            .iter()
            .map(|v| v["objectWriteTraceId"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(only(&["--object-type", "contacts"]), ["f-contact"]);
    assert_eq!(only(&["--category", "INTERNAL_ERROR"]), ["f-deal"]);
    assert_eq!(only(&["--since", "1h"]), ["f-deal"]);
    assert_eq!(
        only(&["--since", "2026-11-29T09:00:00Z", "--limit", "1"]),
        ["f-deal"]
    );
    let text = stdout(&run(dir.path(), &["failed"]));
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("f-contact  contacts create  attempts 1  VALIDATION_ERROR: age"),
        "{text}"
    );
}

#[test]
fn show_prints_the_write_and_its_history() {
    let dir = prepared();
    let v = &json_lines(&run(dir.path(), &["show", "f-deal", "--json"]))[0];
    assert_eq!(v["state"], "failed");
    assert_eq!(v["history"][0]["httpStatus"], 503);
    let text = stdout(&run(dir.path(), &["show", "s-old"]));
    assert!(text.contains("hubspot id: 77"), "{text}");
    let missing = run(dir.path(), &["show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).lines().count(),
        1,
        "one clear line"
    );
}

#[test]
fn retry_requeues_what_was_chosen_and_dry_run_only_counts() {
    let dir = prepared();
    assert_eq!(
        stdout(&run(dir.path(), &["retry", "--failed", "--dry-run"])).trim(),
        "would change 2 write(s)"
    );
    assert_eq!(state(dir.path(), "f-deal"), "failed/8");
    let v = &json_lines(&run(
        dir.path(),
        &[
            "retry",
            "--failed",
            "--category",
            "INTERNAL_ERROR",
            "--json",
        ],
    ))[0];
    assert_eq!(v["writes"], 1);
    assert_eq!(state(dir.path(), "f-deal"), "pending/0");
    assert_eq!(state(dir.path(), "f-contact"), "failed/1");
    assert_eq!(
        stdout(&run(dir.path(), &["retry", "--unconfirmed"])).trim(),
        "requeued 1 write(s)"
    );
    assert_eq!(state(dir.path(), "u-deal"), "pending/0");
    // Succeeded and pending writes are not "retried".
    assert_eq!(
        stdout(&run(dir.path(), &["retry", "s-old", "p-new"])).trim(),
        "requeued 0 write(s)"
    );
}

#[test]
fn retry_edit_fixes_a_property_and_refuses_an_invalid_fix() {
    let dir = prepared();
    assert!(
        stdout(&run(
            dir.path(),
            &["retry", "--edit", "f-contact", "--set", "age=42"]
        ))
        .contains("requeued")
    );
    assert_eq!(state(dir.path(), "f-contact"), "pending/0");
    let out = sqlite3(
        &dir.path().join("outbox.db"),
        "SELECT properties FROM outbox WHERE trace_id = 'f-contact'",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"{"age":"42","email":"a@example.com"}"#
    );
    // It is pending now: editing again is refused and changes nothing.
    let again = run(
        dir.path(),
        &["retry", "--edit", "f-contact", "--set", "age=43"],
    );
    assert_eq!(again.status.code(), Some(2));
    let bad = run(
        dir.path(),
        &["retry", "--edit", "f-deal", "--set", "noequals"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(state(dir.path(), "f-deal"), "failed/8");
}

#[test]
fn discard_and_purge() {
    let dir = prepared();
    assert_eq!(
        stdout(&run(dir.path(), &["discard", "f-deal"])).trim(),
        "discarded 1 write(s)"
    );
    assert_eq!(state(dir.path(), "f-deal"), "discarded/8");
    assert_eq!(
        stdout(&run(
            dir.path(),
            &["purge", "--succeeded-older-than", "30d", "--dry-run"]
        ))
        .trim(),
        "would purge 1 succeeded write(s)"
    );
    assert!(
        stdout(&run(
            dir.path(),
            &["purge", "--succeeded-older-than", "30d"]
        ))
        .starts_with("purged 1 ")
    );
    assert_eq!(state(dir.path(), "s-old"), "");
    assert_eq!(
        state(dir.path(), "f-contact"),
        "failed/1",
        "failed writes are never purged"
    );
}

#[test]
fn usage_errors_exit_2_and_the_token_never_prints() {
    let dir = prepared();
    assert_eq!(run(dir.path(), &["retry"]).status.code(), Some(2));
    assert_eq!(
        run(dir.path(), &["failed", "--since", "yesterday-ish"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(run(dir.path(), &["frobnicate"]).status.code(), Some(2));
    for args in [
        &["check-config"][..],
        &["check-config", "--json"],
        &["status", "--json"],
    ] {
        let o = run(dir.path(), args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains("SECRET"), "{args:?} printed the token");
    }
    assert!(stdout(&run(dir.path(), &["check-config"])).contains("[REDACTED]"));
    let missing = tempfile::tempdir().unwrap();
    let o = run(missing.path(), &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no outbox at"));
    assert!(
        !missing.path().join("outbox.db").exists(),
        "reading commands never create a database"
    );
}

#[test]
fn the_views_answer_in_sql() {
    let dir = prepared();
    let db = dir.path().join("outbox.db");
    let out = sqlite3(
        &db,
        "SELECT trace_id, category, message FROM failed_writes ORDER BY trace_id",
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "f-contact|VALIDATION_ERROR|age: 12x was not a valid number\nf-deal|INTERNAL_ERROR|internal error"
    );
    let out = sqlite3(
        &db,
        "SELECT writes FROM queue_depth WHERE object_type = 'contacts' AND state = 'pending'",
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}
