//! Front door 2: rows that producers inserted with plain SQL. Every poll interval the
//! intake validates the rows no one has validated yet. Valid rows are rewritten in
//! canonical form (values as strings) and become sendable; invalid ones become `failed`
//! with a `last_error` naming the field, so a careless insert never blocks the queue.
//! Valid rows whose associations point at queued writes wait for them (see
//! [`crate::store::references`]); this loop also fails the ones whose write never came.

use std::sync::Arc;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::Config;
use crate::model::references::referenced;
use crate::model::validate::{StoredFields, parse_stored};
use crate::model::{TraceId, earlier};
use crate::runtime::systemd::Heartbeat;
use crate::store::intake::{UnvalidatedRow, Validation};
use crate::store::{Store, StoreError};

/// Rows validated per transaction.
const CHUNK: i64 = 1000;

/// The verdict on one row, pure. `unique`: the row's object type's configured unique
/// property, which orders a create among the writes to its record.
pub fn validate_row(row: &UnvalidatedRow, unique: Option<&str>) -> Validation {
    let fields = StoredFields {
        object_type: &row.object_type,
        operation: &row.operation,
        id_property: row.id_property.as_deref(),
        record_key: row.record_key.as_deref(),
        properties: &row.properties,
        associations: &row.associations,
    };
    let checked = TraceId::parse(&row.trace_id)
        .map_err(|m| format!("trace_id: {m}"))
        .and_then(|_| {
            parse_stored(&fields).map_err(|errors| {
                errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        });
    match checked {
        Ok(w) => Validation::Accept {
            id: row.id,
            properties: w.properties_json(),
            associations: w.associations_json(),
            order_key: w.order_key(unique),
            references: !referenced(&w.associations).is_empty(),
        },
        Err(message) => Validation::Reject {
            id: row.id,
            error: format!("invalid write: {message}"),
        },
    }
}

/// One step: validate everything waiting (in chunks). Returns how many rows were accepted
/// and how many rejected.
pub async fn tick(store: &Store, config: &Config) -> Result<(usize, usize), StoreError> {
    let (mut accepted, mut rejected) = (0, 0);
    loop {
        let rows = store.unvalidated_rows(CHUNK).await?;
        if rows.is_empty() {
            return Ok((accepted, rejected));
        }
        let outcomes: Vec<Validation> = rows
            .iter()
            .map(|r| validate_row(r, config.policy(&r.object_type).unique_property.as_deref()))
            .collect();
        for (row, outcome) in rows.iter().zip(&outcomes) {
            if let Validation::Reject { error, .. } = outcome {
                warn!(trace_id = %row.trace_id, object_type = %row.object_type, %error,
                      "row inserted with SQL is invalid; marked failed");
                rejected += 1;
            } else {
                accepted += 1;
            }
        }
        store.settle_validation(&outcomes).await?;
        if rows.len() < CHUNK as usize {
            return Ok((accepted, rejected));
        }
    }
}

/// Repeats [`tick`] every `poll_interval` (and whenever `inserted` is woken: a producer
/// committed rows, on PostgreSQL) until `shutdown`, and fails the writes that
/// have waited `references.wait_for_missing` for a write never enqueued. At start, decides
/// the waiting writes whose referenced writes settled while the daemon was stopped (an
/// operator's SQL, say). Notifies `validated` when rows became sendable. A database error
/// is logged and retried on the next poll.
pub async fn run(
    store: Store,
    config: Arc<Config>,
    validated: Arc<Notify>,
    inserted: Arc<Notify>,
    shutdown: CancellationToken,
    heartbeat: Arc<Heartbeat>,
) {
    match store.resolve_waiting(chrono::Utc::now()).await {
        Ok(0) => {}
        Ok(due) => {
            info!(due, "waiting writes whose references settled are due");
            validated.notify_waiters();
        }
        Err(e) => {
            error!(error = %e, "deciding waiting writes failed; they wait for the next change")
        }
    }
    let waited = config.references.wait_for_missing;
    let waited_text = humantime::format_duration(waited).to_string();
    loop {
        heartbeat.beat();
        let now = chrono::Utc::now();
        match store
            .expire_missing_references(earlier(now, waited), &waited_text, now)
            .await
        {
            Ok(0) => {}
            Ok(failed) => warn!(
                failed,
                "writes failed: a write they point at was not enqueued within references.wait_for_missing"
            ),
            Err(e) => error!(error = %e, "expiring missing references failed; will retry"),
        }
        match tick(&store, &config).await {
            Ok((0, 0)) => {}
            Ok((accepted, rejected)) => {
                info!(accepted, rejected, "validated rows inserted with SQL");
                if accepted > 0 {
                    validated.notify_waiters();
                }
            }
            Err(e) => error!(error = %e, "validating rows inserted with SQL failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = inserted.notified() => {}
            _ = tokio::time::sleep(config.database.poll_interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(object_type: &str, properties: &str, associations: &str) -> UnvalidatedRow {
        UnvalidatedRow {
            id: 7,
            trace_id: "abc".into(),
            object_type: object_type.into(),
            operation: "create".into(),
            id_property: None,
            record_key: None,
            properties: properties.into(),
            associations: associations.into(),
        }
    }

    #[test]
    fn a_valid_row_is_stored_in_canonical_form() {
        assert_eq!(
            validate_row(
                &row("contacts", r#"{"age": 42, "email": "A@b"}"#, "[]"),
                Some("email")
            ),
            Validation::Accept {
                id: 7,
                properties: r#"{"age":"42","email":"A@b"}"#.into(),
                associations: "[]".into(),
                order_key: Some("email=a@b".into()),
                references: false,
            }
        );
    }

    #[test]
    fn an_invalid_row_is_rejected_with_every_field_named() {
        let Validation::Reject { error, .. } = validate_row(
            &row(
                "Contacts",
                r#"{"x": null}"#,
                r#"[{"to":{"id":"1"},"types":[{"associationCategory":"BOGUS","associationTypeId":1}]}]"#,
            ),
            None,
        ) else {
            panic!("accepted an invalid row");
        };
        assert!(error.starts_with("invalid write: objectType: "), "{error}");
        assert!(
            error.contains("properties.x: must be a string, number or boolean"),
            "{error}"
        );
        assert!(
            error.contains("associations[0].types[0].associationCategory: `BOGUS`"),
            "{error}"
        );
    }
}
