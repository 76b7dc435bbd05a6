//! The real binary as operators and producers meet it: durability across SIGKILL, the SQL
//! front door through the database's own shell (`sqlite3`, `psql`), one daemon per
//! database (on PostgreSQL: per socket), the socket file's life, config errors, and
//! `enqueue`. Each test that touches the outbox runs on both backends; the config-error
//! and default-path tests are about the config and SQLite's default file, which
//! PostgreSQL does not have.

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::Path;

use common::{Backend, Daemon, Shell, daemon_command, eventually};
use serde_json::{Value, json};

/// The daemon binary on `backend`'s outbox in `dir`, with `env`, and a shell on it.
async fn start(backend: &Backend, dir: &Path, env: &[(&str, &str)]) -> (Daemon, Shell) {
    let daemon = Daemon::start_on(backend, dir, env).await;
    let shell = Shell::new(backend, &daemon.database);
    (daemon, shell)
}

/// A `hubspot-outbox` command on `backend`'s outbox in `dir`.
fn command(backend: &Backend, dir: &Path, args: &[&str]) -> std::process::Command {
    let mut cmd = daemon_command(dir, args);
    cmd.envs(backend.env());
    cmd
}

crate::on_both_backends! {
async fn acknowledged_writes_survive_sigkill_and_the_daemon_restarts_at_once(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(&backend, dir.path(), &[]).await;
    let mut c = daemon.client().await;
    let writes: Vec<_> = (0..50)
        .map(|i| json!({"objectType": "contacts", "properties": {"email": format!("{i}@example.com")}, "objectWriteTraceId": format!("k{i}")}))
        .collect();
    let a = c.post_json(Value::Array(writes).to_string()).await.unwrap();
    assert_eq!(a.status, 202);
    let single = json!({"objectType": "deals", "properties": {"dealname": "big"}, "objectWriteTraceId": "last"});
    assert_eq!(c.post_json(single.to_string()).await.unwrap().status, 202);
    daemon.kill();

    // The socket file is left behind by SIGKILL; the lock is not (nor, on PostgreSQL,
    // the daemon's liveness lock: its session ended with the process).
    let socket = dir.path().join("outbox.sock");
    assert!(
        std::fs::symlink_metadata(&socket)
            .unwrap()
            .file_type()
            .is_socket()
    );
    let (daemon, _) = start(&backend, dir.path(), &[]).await;
    let mut c = daemon.client().await;
    for trace in ["k0", "k49", "last"] {
        let got = c.get(&format!("/v1/writes/{trace}")).await.unwrap();
        assert_eq!(got.status, 200, "{trace} lost after SIGKILL");
        assert_eq!(got.json()["state"], "pending");
    }
    assert_eq!(db.count("true"), 51);
    assert!(daemon.terminate().success());
    assert!(!socket.exists(), "a clean shutdown removes the socket file");
}
}

crate::on_both_backends! {
async fn rows_inserted_with_the_database_shell_are_picked_up_or_failed_with_a_reason(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(&backend, dir.path(), &[]).await;
    db.text(
        r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email":"sql@example.com","age":7}');
           INSERT INTO outbox (object_type, properties, associations, trace_id) VALUES ('contacts', '{"email":"b@example.com"}',
             '[{"to":{"id":"1"},"types":[{"associationCategory":"FRIENDLY","associationTypeId":1}]}]', 'bad-assoc');
           INSERT INTO outbox (object_type, properties, trace_id) VALUES ('contacts', '{"email":"c@example.com"}', 'after-bad');"#,
    );
    eventually("the daemon validated the SQL rows", || async {
        db.count("validated") == 3
    })
    .await;
    let others = "object_type = 'contacts' AND trace_id NOT IN ('bad-assoc', 'after-bad')";
    assert_eq!(db.text(&format!("SELECT state FROM outbox WHERE {others}")), "pending");
    let properties: Value =
        serde_json::from_str(&db.text(&format!("SELECT properties FROM outbox WHERE {others}")))
            .unwrap();
    assert_eq!(properties, json!({"age": "7", "email": "sql@example.com"}));
    let text = db.text("SELECT state, last_error FROM outbox WHERE trace_id = 'bad-assoc'");
    assert!(
        text.starts_with("failed|invalid write: associations[0].types[0].associationCategory"),
        "{text}"
    );
    assert_eq!(
        db.text("SELECT state FROM outbox WHERE trace_id = 'after-bad'"),
        "pending",
        "a bad row does not block the ones after it"
    );

    // The API sees SQL rows too.
    let mut c = daemon.client().await;
    assert_eq!(
        c.get("/v1/writes/after-bad").await.unwrap().json()["state"],
        "pending"
    );

    // Replaying the invalid row checks it again: it fails with its reason, and nothing
    // of it is sent as it is.
    let out = command(&backend, dir.path(), &["retry", "bad-assoc"])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("requeued 1"),
        "{out:?}"
    );
    eventually("the replayed invalid row failed again", || async {
        db.text("SELECT count(*) FROM error_history WHERE trace_id = 'bad-assoc' AND category = 'INVALID_WRITE'") == "2"
    })
    .await;
    assert_eq!(
        db.text("SELECT state, CASE WHEN validated THEN 'validated' END FROM outbox WHERE trace_id = 'bad-assoc'"),
        "failed|validated"
    );
    assert!(daemon.terminate().success());
}
}

crate::on_both_backends! {
async fn the_table_itself_refuses_rows_that_are_not_json(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(&backend, dir.path(), &[]).await;
    let sqlite = matches!(backend, Backend::Sqlite);
    // What each database says: SQLite names the CHECK's text, PostgreSQL the constraint.
    for (sql, on_sqlite, on_postgres) in [
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email": ');"#,
            "json_valid(properties)",
            "invalid input syntax for type json",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '["a"]');"#,
            "json_valid(properties)",
            "outbox_properties_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties, associations) VALUES ('contacts', '{}', '{}');"#,
            "json_valid(associations)",
            "outbox_associations_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('', '{}');"#,
            "length(object_type)",
            "outbox_object_type_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties, state) VALUES ('contacts', '{}', 'done');"#,
            "state IN",
            // The insert guard runs before the CHECK on PostgreSQL: the row is made a
            // new pending write, as every careless insert is (see below).
            "",
        ),
        (
            r#"INSERT INTO outbox (properties) VALUES ('{}');"#,
            "NOT NULL",
            "not-null constraint",
        ),
    ] {
        let out = db.output(sql);
        let why = if sqlite { on_sqlite } else { on_postgres };
        if why.is_empty() {
            assert!(out.status.success(), "{sql}");
            continue;
        }
        assert!(!out.status.success(), "accepted: {sql}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(why), "{sql}: {err}");
    }
    let accepted = if sqlite { 0 } else { 1 };
    assert_eq!(db.count("state = 'pending'"), accepted);
    assert_eq!(db.count("true"), accepted);
    // Two rows with the same trace id: the second is refused.
    let out = db.output(
        "INSERT INTO outbox (object_type, properties, trace_id) VALUES ('contacts', '{}', 'x'), ('contacts', '{}', 'x');",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(if sqlite { "UNIQUE" } else { "unique constraint" }), "{err}");
    assert_eq!(db.count("true"), accepted);
    assert!(daemon.terminate().success());
}
}

crate::on_both_backends! {
/// Whatever a careless INSERT says about the daemon's own columns, the row enters as a new
/// pending write that the intake validates: nothing skips validation, nothing is taken
/// as already sent, in flight, or scheduled for next year.
async fn careless_inserts_enter_as_new_pending_writes_and_are_validated(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(&backend, dir.path(), &[]).await;
    let yes = if matches!(backend, Backend::Sqlite) { "1" } else { "true" };
    db.text(&format!(
        r#"INSERT INTO outbox (trace_id, object_type, properties, state, hubspot_id, attempts, validated)
               VALUES ('claims-success', 'contacts', '{{"email":"a@example.com"}}', 'succeeded', '123', 5, {yes});
           INSERT INTO outbox (trace_id, object_type, properties, state, batch_id)
               VALUES ('claims-in-flight', 'contacts', '{{"email":"b@example.com"}}', 'in_flight', NULL);
           INSERT INTO outbox (trace_id, object_type, properties, state, last_error)
               VALUES ('claims-failed', 'deals', '{{"dealname":"x"}}', 'failed', 'no');
           INSERT INTO outbox (trace_id, object_type, properties, associations, validated)
               VALUES ('skips-validation', 'contacts', '{{"email":"c@example.com"}}', '[{{"to":"nope"}}]', {yes});
           INSERT INTO outbox (trace_id, object_type, properties, read_by, sent_with, split_to, next_attempt_at)
               VALUES ('claims-internals', 'contacts', '{{"email":"d@example.com"}}', 'email', 'x', 1, '2999-01-01T00:00:00.000Z');
           INSERT INTO outbox (trace_id, object_type, properties, state)
               VALUES ('claims-unconfirmed', 'contacts', '{{"email":"e@example.com"}}', 'unconfirmed');"#
    ));
    // Wrong types are refused by the table itself (SQLite: STRICT).
    let out = db.output(
        r#"INSERT INTO outbox (object_type, properties, attempts) VALUES ('contacts', '{}', 'many');"#,
    );
    assert!(!out.status.success());
    eventually("the intake validated every row", || async {
        db.count("NOT validated") == 0
    })
    .await;
    let rows = db.lines(
        "SELECT trace_id, state, attempts, coalesce(hubspot_id, '-'), coalesce(batch_id, '-'),
                coalesce(read_by, '-'), CASE WHEN next_attempt_at < '2100-01-01' THEN 'due' END
         FROM outbox ORDER BY id",
    );
    assert_eq!(
        rows,
        [
            "claims-success|pending|0|-|-|-|due",
            "claims-in-flight|pending|0|-|-|-|due",
            "claims-failed|pending|0|-|-|-|due",
            "skips-validation|failed|0|-|-|-|due",
            "claims-internals|pending|0|-|-|-|due",
            "claims-unconfirmed|pending|0|-|-|-|due",
        ]
    );
    assert!(daemon.terminate().success());
}
}

crate::on_both_backends! {
/// On SQLite the database is one daemon's, whatever its socket; on PostgreSQL, which
/// several daemons share, the socket is (`tests/fleet.rs` runs several on one database).
async fn a_second_daemon_on_the_same_database_or_socket_refuses_to_start(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, _) = start(&backend, dir.path(), &[]).await;
    let other = dir.path().join("other.sock");
    let mut second = command(&backend, dir.path(), &["run"]);
    if matches!(backend, Backend::Sqlite) {
        // Even with a different socket path, the database is taken.
        second.env("HUBSPOT_OUTBOX__SOCKET__PATH", &other);
    }
    let out = second.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("in use by another hubspot-outbox daemon"),
        "{err}"
    );
    assert!(!other.exists());
    // The first daemon is unharmed.
    let mut c = daemon.client().await;
    assert_eq!(c.get("/healthz").await.unwrap().status, 200);
    assert!(daemon.terminate().success());
}
}

crate::on_both_backends! {
async fn the_socket_gets_the_configured_mode(backend) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, "[socket]\nmode = \"0600\"\n").unwrap();
    let (daemon, _) = start(
        &backend,
        dir.path(),
        &[("HUBSPOT_OUTBOX_CONFIG", config.to_str().unwrap())],
    )
    .await;
    let mode = std::fs::metadata(&daemon.socket)
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert!(daemon.terminate().success());
}
}

#[test]
fn a_bad_config_is_refused_at_start_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    for (toml, key) in [
        ("[database]\npaht = \"/x\"\n", "paht"),
        (
            "[limits]\nmax_writes_per_request = -3\n",
            "max_writes_per_request",
        ),
        ("[socket]\nmode = \"rwx\"\n", "mode"),
    ] {
        std::fs::write(&config, toml).unwrap();
        let out = daemon_command(dir.path(), &["--config", config.to_str().unwrap(), "run"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{toml}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(key), "{toml}: {err}");
    }
    // A password in a URL never shows, even where the config crate quotes what it
    // could not read (the line of a TOML syntax error).
    std::fs::write(&config, "[database]\nurl = postgres://u:SECRET-PW@h/db\n").unwrap();
    let out = daemon_command(dir.path(), &["--config", config.to_str().unwrap(), "run"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("SECRET-PW"), "{err}");
    assert!(
        !dir.path().join("outbox.db").exists(),
        "nothing was created"
    );
}

#[tokio::test]
async fn run_with_no_config_uses_default_paths_and_says_no_token_is_set() {
    let dir = tempfile::tempdir().unwrap();
    let child = std::process::Command::new(common::BIN)
        .arg("run")
        .env_clear()
        .env("HOME", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let state = dir.path().join(".local/state/hubspot-outbox");
    let socket = state.join("outbox.sock");
    eventually("default socket exists", || async { socket.exists() }).await;
    assert!(state.join("outbox.db").exists());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains(&state.join("outbox.db").display().to_string()),
        "{log}"
    );
    assert!(
        log.contains("nothing will be sent until a token is set"),
        "{log}"
    );
}

crate::on_both_backends! {
async fn enqueue_sends_a_file_and_reports_rejected_lines_by_number(backend) {
    let dir = tempfile::tempdir().unwrap();
    let (daemon, db) = start(&backend, dir.path(), &[]).await;
    let mut lines = Vec::new();
    for i in 0..120 {
        lines.push(json!({"objectType": "contacts", "properties": {"email": format!("{i}@example.com")}, "objectWriteTraceId": format!("e{i}")}).to_string());
    }
    lines[10] = "{not json".into();
    lines[50] = json!({"objectType": "contacts", "properties": {"email": null}}).to_string();
    lines[99] = json!({"objectType": "contacts", "properties": {"email": "other"}, "objectWriteTraceId": "e0"}).to_string();
    lines.insert(60, String::new());
    let file = dir.path().join("writes.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = command(
        &backend,
        dir.path(),
        &["enqueue", file.to_str().unwrap(), "--chunk-size", "25"],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejections make the exit code 1: {stdout}"
    );
    assert!(
        stdout.starts_with("queued 117, duplicates 0, rejected 3 (of 121 lines)"),
        "{stdout}"
    );
    assert!(stdout.contains("line 11: not valid JSON"), "{stdout}");
    assert!(
        stdout.contains("line 51: properties.email: must be a string"),
        "{stdout}"
    );
    assert!(
        stdout.contains("line 101: objectWriteTraceId: objectWriteTraceId `e0` is already used"),
        "{stdout}"
    );

    // Sending the same file again: everything valid is a duplicate, nothing new.
    let out = command(&backend, dir.path(), &["enqueue", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("queued 0, duplicates 117, rejected 3"),
        "{stdout}"
    );
    assert_eq!(db.count("true"), 117);
    assert!(daemon.terminate().success());
}
}
