//! The operator commands on a database prepared with SQL (no daemon running): output,
//! filters, `--json` shapes, changes, exit codes, and that the token never prints. On
//! both backends: the commands are the same whichever database holds the outbox.

mod common;

use std::path::Path;
use std::process::Output;

use common::{Backend, daemon_command, pg, sqlite3};
use serde_json::Value;
use tempfile::TempDir;

/// The writes as the daemon would have left them, in every state, with their error
/// history. `{now}` is each database's current time.
const ROWS: &str = r#"
    INSERT INTO outbox (trace_id, object_type, properties, state, attempts, last_error, validated, updated_at) VALUES
      ('f-contact', 'contacts', '{"email":"a@example.com","age":"x"}', 'failed', 1, 'VALIDATION_ERROR: age is not a number', {yes}, '2026-11-29T10:00:00.000Z'),
      ('f-deal', 'deals', '{"dealname":"d"}', 'failed', 8, 'gave up after 8 attempts: HTTP 503', {yes}, {now}),
      ('u-deal', 'deals', '{"dealname":"u"}', 'unconfirmed', 1, 'unconfirmed: HubSpot may have created it', {yes}, {now}),
      ('s-old', 'contacts', '{"email":"old@example.com"}', 'succeeded', 1, NULL, {yes}, '2020-01-01T00:00:00.000Z'),
      ('p-new', 'contacts', '{"email":"new@example.com"}', 'pending', 0, NULL, {yes}, {now});
    UPDATE outbox SET hubspot_id = '77' WHERE trace_id = 's-old';
    INSERT INTO error_history (trace_id, attempt, http_status, category, message, correlation_id) VALUES
      ('f-contact', 1, 207, 'VALIDATION_ERROR', 'age: 12x was not a valid number', 'corr-1'),
      ('f-deal', 8, 503, 'INTERNAL_ERROR', 'internal error', NULL);
"#;

/// An outbox on `backend` holding [`ROWS`], and the commands run on it.
struct Prepared {
    dir: TempDir,
    backend: Backend,
}

fn prepared(backend: &Backend) -> Prepared {
    let p = Prepared {
        dir: tempfile::tempdir().unwrap(),
        backend: backend.clone(),
    };
    stdout(&p.run(&["migrate"]));
    // The marker (SQLite) or setting (PostgreSQL) admits an insert as it claims to be: any
    // other is made a new pending write (the insert guard).
    let sql = match backend {
        Backend::Sqlite => format!(
            "INSERT INTO ingest_marker (id) VALUES (1); {} DELETE FROM ingest_marker;",
            ROWS.replace("{yes}", "1")
                .replace("{now}", "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')")
        ),
        Backend::Postgres(_) => format!(
            "BEGIN; INSERT INTO ingest_marker (pid, xact) VALUES (pg_backend_pid(), txid_current()); {} DELETE FROM ingest_marker; COMMIT;",
            ROWS.replace("{yes}", "true").replace("{now}", "now()")
        ),
    };
    p.sql(&sql);
    p
}

impl Prepared {
    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `hubspot-outbox ARGS` on this outbox, with a token set.
    fn run(&self, args: &[&str]) -> Output {
        run_in(self.path(), &self.backend, args)
    }

    /// Rows of `sql` as `a|b` lines, with the database's own shell.
    fn sql(&self, sql: &str) -> String {
        let out = match &self.backend {
            Backend::Sqlite => sqlite3(&self.path().join("outbox.db"), sql),
            Backend::Postgres(url) => pg::shared().unwrap().psql(url, sql),
        };
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn state(&self, trace_id: &str) -> String {
        self.sql(&format!(
            "SELECT state || '/' || attempts FROM outbox WHERE trace_id = '{trace_id}'"
        ))
    }
}

fn run_in(dir: &Path, backend: &Backend, args: &[&str]) -> Output {
    daemon_command(dir, args)
        .envs(backend.env())
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

crate::on_both_backends! {
async fn status_counts_states_and_types_in_text_and_json(db) {
    let p = prepared(&db);
    let text = stdout(&p.run(&["status"]));
    assert!(
        text.contains("contacts")
            && text.contains("failed")
            && text.contains("sending: not paused"),
        "{text}"
    );
    let v = &json_lines(&p.run(&["status", "--json"]))[0];
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
}

crate::on_both_backends! {
async fn failed_lists_newest_first_and_filters(db) {
    let p = prepared(&db);
    let all = json_lines(&p.run(&["failed", "--json"]));
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
        json_lines(&p.run(&full))
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
    let text = stdout(&p.run(&["failed"]));
    assert!(
        text.lines()
            .nth(1)
            .unwrap()
            .contains("f-contact  contacts create  attempts 1  VALIDATION_ERROR: age"),
        "{text}"
    );
}
}

crate::on_both_backends! {
async fn show_prints_the_write_and_its_history(db) {
    let p = prepared(&db);
    let v = &json_lines(&p.run(&["show", "f-deal", "--json"]))[0];
    assert_eq!(v["state"], "failed");
    assert_eq!(v["history"][0]["httpStatus"], 503);
    let text = stdout(&p.run(&["show", "s-old"]));
    assert!(text.contains("hubspot id: 77"), "{text}");
    let missing = p.run(&["show", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&missing.stderr).lines().count(),
        1,
        "one clear line"
    );
}
}

crate::on_both_backends! {
async fn retry_requeues_what_was_chosen_and_dry_run_only_counts(db) {
    let p = prepared(&db);
    assert_eq!(
        stdout(&p.run(&["retry", "--failed", "--dry-run"])).trim(),
        "would change 2 write(s)"
    );
    assert_eq!(p.state("f-deal"), "failed/8");
    let v = &json_lines(&p.run(
        &[
            "retry",
            "--failed",
            "--category",
            "INTERNAL_ERROR",
            "--json",
        ],
    ))[0];
    assert_eq!(v["writes"], 1);
    assert_eq!(p.state("f-deal"), "pending/0");
    assert_eq!(p.state("f-contact"), "failed/1");
    assert_eq!(
        stdout(&p.run(&["retry", "--unconfirmed"])).trim(),
        "requeued 1 write(s)"
    );
    assert_eq!(p.state("u-deal"), "pending/0");
    // Succeeded and pending writes are not "retried".
    assert_eq!(
        stdout(&p.run(&["retry", "s-old", "p-new"])).trim(),
        "requeued 0 write(s)"
    );
}
}

crate::on_both_backends! {
async fn retry_edit_fixes_a_property_and_refuses_an_invalid_fix(db) {
    let p = prepared(&db);
    assert!(
        stdout(&p.run(
            &["retry", "--edit", "f-contact", "--set", "age=42"]
        ))
        .contains("requeued")
    );
    assert_eq!(p.state("f-contact"), "pending/0");
    let properties: Value = serde_json::from_str(
        &p.sql("SELECT properties FROM outbox WHERE trace_id = 'f-contact'"),
    )
    .unwrap();
    assert_eq!(
        properties,
        serde_json::json!({"age": "42", "email": "a@example.com"})
    );
    // It is pending now: editing again is refused and changes nothing.
    let again = p.run(
        &["retry", "--edit", "f-contact", "--set", "age=43"],
    );
    assert_eq!(again.status.code(), Some(2));
    let bad = p.run(
        &["retry", "--edit", "f-deal", "--set", "noequals"],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert_eq!(p.state("f-deal"), "failed/8");
}
}

crate::on_both_backends! {
async fn discard_and_purge(db) {
    let p = prepared(&db);
    assert_eq!(
        stdout(&p.run(&["discard", "f-deal"])).trim(),
        "discarded 1 write(s)"
    );
    assert_eq!(p.state("f-deal"), "discarded/8");
    assert_eq!(
        stdout(&p.run(
            &["purge", "--succeeded-older-than", "30d", "--dry-run"]
        ))
        .trim(),
        "would purge 1 succeeded write(s)"
    );
    assert!(
        stdout(&p.run(
            &["purge", "--succeeded-older-than", "30d"]
        ))
        .starts_with("purged 1 ")
    );
    assert_eq!(p.state("s-old"), "");
    assert_eq!(
        p.state("f-contact"),
        "failed/1",
        "failed writes are never purged"
    );
}
}

crate::on_both_backends! {
async fn usage_errors_exit_2_and_the_token_never_prints(db) {
    let p = prepared(&db);
    assert_eq!(p.run(&["retry"]).status.code(), Some(2));
    assert_eq!(
        p.run(&["failed", "--since", "yesterday-ish"])
            .status
            .code(),
        Some(2)
    );
    assert_eq!(p.run(&["frobnicate"]).status.code(), Some(2));
    for args in [
        &["check-config"][..],
        &["check-config", "--json"],
        &["status", "--json"],
    ] {
        let o = p.run(args);
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(!all.contains("SECRET"), "{args:?} printed the token");
    }
    assert!(stdout(&p.run(&["check-config"])).contains("[REDACTED]"));
    // On PostgreSQL the URL's password is a secret too: never printed, neither when the
    // database answers nor when it does not exist (the test server trusts, so a password
    // in the URL is accepted and ignored).
    if let Backend::Postgres(url) = &db {
        let with_password = url.replacen("postgres@", "postgres:SECRET-PW@", 1);
        let (server, _) = with_password.rsplit_once('/').unwrap();
        for url in [with_password.clone(), format!("{server}/no_such_database")] {
            for args in [&["status"][..], &["check-config"], &["failed", "--json"]] {
                let o = run_in(p.path(), &Backend::Postgres(url.clone()), args);
                let all = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                assert!(!all.contains("SECRET-PW"), "{args:?} printed the password: {all}");
            }
        }
        return;
    }
    // Where the SQLite file does not exist, reading commands say so and create nothing.
    let missing = tempfile::tempdir().unwrap();
    let o = run_in(missing.path(), &db, &["status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no outbox at"));
    assert!(
        !missing.path().join("outbox.db").exists(),
        "reading commands never create a database"
    );
}
}

crate::on_both_backends! {
async fn the_views_answer_in_sql(db) {
    let p = prepared(&db);
    assert_eq!(
        p.sql("SELECT trace_id, category, message FROM failed_writes ORDER BY trace_id"),
        "f-contact|VALIDATION_ERROR|age: 12x was not a valid number\nf-deal|INTERNAL_ERROR|internal error"
    );
    assert_eq!(
        p.sql("SELECT writes FROM queue_depth WHERE object_type = 'contacts' AND state = 'pending'"),
        "1"
    );
}
}
