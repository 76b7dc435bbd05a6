//! The outbox's table contract on PostgreSQL (issue 12, first step): the schema of
//! `migrations/postgres` on a real server the test starts itself, as a producer uses it.
//! Skipped, saying so, where PostgreSQL is not installed.

mod common;

use common::pg::PgServer;
use hubspot_outbox::store::PG_MIGRATOR;
use sqlx::postgres::{PgListener, PgPool, PgPoolOptions};
use sqlx::{Executor, Row};

async fn migrated() -> Option<(PgServer, PgPool)> {
    let server = PgServer::start()?;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&server.url)
        .await
        .unwrap();
    PG_MIGRATOR.run(&pool).await.unwrap();
    Some((server, pool))
}

#[tokio::test]
async fn a_producer_enqueues_in_its_own_transaction_and_a_rollback_leaves_nothing() {
    let Some((_server, pool)) = migrated().await else {
        return;
    };
    // The migrations run again at every start: nothing to do the second time.
    PG_MIGRATOR.run(&pool).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    tx.execute(r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email":"kept@example.com"}')"#)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    tx.execute(r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{"email":"gone@example.com"}')"#)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    let rows = sqlx::query(
        "SELECT properties ->> 'email' AS email, state, validated, length(trace_id) AS trace_len,
                associations, operation, step, lane, attempts
         FROM outbox",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "the rolled-back write is not there");
    let r = &rows[0];
    assert_eq!(r.get::<String, _>("email"), "kept@example.com");
    assert_eq!(r.get::<String, _>("state"), "pending");
    assert!(!r.get::<bool, _>("validated"));
    assert_eq!(r.get::<i32, _>("trace_len"), 32);
    assert_eq!(
        r.get::<serde_json::Value, _>("associations"),
        serde_json::json!([])
    );
    assert_eq!(r.get::<String, _>("operation"), "create");
    assert_eq!(r.get::<String, _>("lane"), "create");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT queued FROM queue_state")
            .fetch_one(&pool)
            .await
            .unwrap(),
        1,
        "the rolled-back insert is not counted"
    );
}

#[tokio::test]
async fn careless_inserts_are_refused_or_made_new_pending_writes() {
    let Some((_server, pool)) = migrated().await else {
        return;
    };
    for (bad, why) in [
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', '[1]')"#,
            "outbox_properties_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('contacts', 'not json')"#,
            "invalid input syntax for type json",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties, associations) VALUES ('contacts', '{}', '{}')"#,
            "outbox_associations_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties) VALUES ('', '{}')"#,
            "outbox_object_type_check",
        ),
        (
            r#"INSERT INTO outbox (object_type, properties, operation) VALUES ('contacts', '{}', 'upsert')"#,
            "record_key is required for upsert",
        ),
    ] {
        let err = sqlx::query(bad)
            .execute(&pool)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{bad}: {err}");
    }
    // The daemon's columns set by a producer are reset: a new, unvalidated, pending write.
    sqlx::query(
        r#"INSERT INTO outbox (trace_id, object_type, properties, state, validated, attempts, hubspot_id,
                               step, referenced_associations, next_attempt_at)
           VALUES ('t-1', 'contacts', '{}', 'succeeded', true, 3, '42', 'associations', '[]',
                   now() + interval '1 day')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    let r = sqlx::query(
        "SELECT state, validated, attempts, hubspot_id, step, referenced_associations IS NULL AS no_refs,
                next_attempt_at <= now() AS due
         FROM outbox WHERE trace_id = 't-1'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(r.get::<String, _>("state"), "pending");
    assert!(!r.get::<bool, _>("validated"));
    assert_eq!(r.get::<i64, _>("attempts"), 0);
    assert_eq!(r.get::<Option<String>, _>("hubspot_id"), None);
    assert_eq!(r.get::<String, _>("step"), "record");
    assert!(r.get::<bool, _>("no_refs"));
    assert!(r.get::<bool, _>("due"));
    // A trace id used twice, or once and purged since, is refused.
    let again = sqlx::query(
        "INSERT INTO outbox (trace_id, object_type, properties) VALUES ('t-1', 'contacts', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap_err()
    .to_string();
    assert!(again.contains("outbox_trace_id_key"), "{again}");
    sqlx::query("INSERT INTO purged_traces (trace_id, purged_at) VALUES ('old', now())")
        .execute(&pool)
        .await
        .unwrap();
    let purged = sqlx::query(
        "INSERT INTO outbox (trace_id, object_type, properties) VALUES ('old', 'contacts', '{}')",
    )
    .execute(&pool)
    .await
    .unwrap_err()
    .to_string();
    assert!(purged.contains("since been purged"), "{purged}");
    // Past the cap, a producer's insert is refused and stores nothing.
    sqlx::query("UPDATE queue_state SET max_queued = 1")
        .execute(&pool)
        .await
        .unwrap();
    let full =
        sqlx::query("INSERT INTO outbox (object_type, properties) VALUES ('contacts', '{}')")
            .execute(&pool)
            .await
            .unwrap_err()
            .to_string();
    assert!(full.contains("the queue is full"), "{full}");
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox")
            .fetch_one(&pool)
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_listener_hears_of_each_committed_insert_and_not_of_a_rolled_back_one() {
    let Some((server, pool)) = migrated().await else {
        return;
    };
    let mut listener = PgListener::connect(&server.url).await.unwrap();
    listener.listen("hubspot_outbox").await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    tx.execute(r#"INSERT INTO outbox (object_type, properties) VALUES ('deals', '{}')"#)
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    sqlx::query(r#"INSERT INTO outbox (object_type, properties) VALUES ('companies', '{}')"#)
        .execute(&pool)
        .await
        .unwrap();
    let heard = tokio::time::timeout(std::time::Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification within 10 s")
        .unwrap();
    assert_eq!(
        heard.payload(),
        "companies",
        "the rolled-back insert said nothing"
    );
}

#[tokio::test]
async fn the_operator_views_say_what_they_say_on_sqlite() {
    let Some((_server, pool)) = migrated().await else {
        return;
    };
    sqlx::query(
        r#"INSERT INTO outbox (trace_id, object_type, properties) VALUES ('f', 'contacts', '{}'), ('p', 'contacts', '{}')"#,
    )
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("UPDATE outbox SET state = 'failed', last_error = 'invalid write: properties.x: bad' WHERE trace_id = 'f'")
        .execute(&pool)
        .await
        .unwrap();
    let failed = sqlx::query("SELECT trace_id, category, message FROM failed_writes")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].get::<String, _>("category"), "INVALID_WRITE");
    sqlx::query(
        "INSERT INTO error_history (trace_id, attempt, http_status, category, message) VALUES ('f', 1, 400, 'VALIDATION_ERROR', 'Property x does not exist')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let message: String = sqlx::query_scalar("SELECT message FROM failed_writes")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(message, "Property x does not exist");
    let depth: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT object_type, state, writes FROM queue_depth ORDER BY state")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        depth,
        [
            ("contacts".to_owned(), "failed".to_owned(), 1),
            ("contacts".to_owned(), "pending".to_owned(), 1)
        ]
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT queued FROM queue_state")
            .fetch_one(&pool)
            .await
            .unwrap(),
        1,
        "a failed write is no longer counted"
    );
}

/// docs/postgresql.md's grants: a producer's role with INSERT on `outbox` (and SELECT on
/// the operator views) enqueues, inside its own transaction, and can do nothing else to
/// the daemon's tables.
#[tokio::test]
async fn a_producer_role_with_the_documented_grants_enqueues_and_nothing_more() {
    let Some((server, pool)) = migrated().await else {
        return;
    };
    for sql in [
        "CREATE ROLE app LOGIN",
        "GRANT INSERT ON outbox TO app",
        "GRANT SELECT ON failed_writes, queue_depth TO app",
    ] {
        sqlx::query(sql).execute(&pool).await.unwrap();
    }
    let url = server.url.replace("postgres@", "app@");
    let app = PgPoolOptions::new()
        .max_connections(1)
        .connect(&url)
        .await
        .unwrap();
    let mut tx = app.begin().await.unwrap();
    tx.execute(r#"INSERT INTO outbox (object_type, properties, trace_id) VALUES ('contacts', '{"email":"a@example.com"}', 'order-1')"#)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let depth: i64 = sqlx::query_scalar("SELECT sum(writes)::bigint FROM queue_depth")
        .fetch_one(&app)
        .await
        .unwrap();
    assert_eq!(depth, 1);
    for forbidden in [
        "UPDATE outbox SET state = 'succeeded'",
        "DELETE FROM outbox",
        "SELECT * FROM outbox",
        "DELETE FROM purged_traces",
        "UPDATE queue_count SET max_queued = 0",
        "INSERT INTO ingest_marker (pid, xact) VALUES (pg_backend_pid(), txid_current())",
    ] {
        let e = sqlx::query(forbidden)
            .execute(&app)
            .await
            .unwrap_err()
            .to_string();
        assert!(e.contains("permission denied"), "{forbidden}: {e}");
    }
    // Nor can a producer pass its rows off as the daemon's: a setting any role may set
    // (what an earlier draft trusted) changes nothing, the row enters as a new write.
    let mut tx = app.begin().await.unwrap();
    tx.execute("SET LOCAL hubspot_outbox.ingest = 'on'")
        .await
        .unwrap();
    tx.execute(r#"INSERT INTO outbox (object_type, properties, trace_id, state, validated, hubspot_id)
                  VALUES ('contacts', '{"email":"b@example.com"}', 'order-2', 'succeeded', true, '9')"#)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let row: (String, bool, Option<String>) = sqlx::query_as(
        "SELECT state, validated, hubspot_id FROM outbox WHERE trace_id = 'order-2'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(row, ("pending".to_owned(), false, None));
    app.close().await;
}
