//! The scheduler's own cost per batch, without any network: claim, reconcile and settle of
//! full batches on a real database, each batch answered as HubSpot answers a full success.

use std::time::{Duration, Instant};

use hubspot_outbox::dispatch::reconciler::{Moment, reconcile};
use hubspot_outbox::dispatch::scheduler::choose_rows;
use hubspot_outbox::hubspot::classify::classify;
use hubspot_outbox::model::{Backoff, BatchLogEntry, BatchRow, OnAmbiguous, OnConflict, Policy};
use hubspot_outbox::store::Store;
use hubspot_outbox::store::ingest::RowToStore;
use serde_json::json;

/// Time per batch, and its parts.
#[derive(Debug, Clone, Copy)]
pub struct Cost {
    pub per_batch: Duration,
    pub claim: Duration,
    pub reconcile: Duration,
    pub settle: Duration,
}

/// A create of one contact with a unique email, stored form.
pub fn contact_row(i: usize, associations: String, references: bool) -> RowToStore {
    RowToStore {
        trace_id: format!("b-{i}"),
        object_type: "contacts".into(),
        operation: "create".into(),
        id_property: None,
        record_key: None,
        order_key: None,
        properties: format!(
            r#"{{"email":"user{i}@example.com","firstname":"First{i}","lastname":"Lastname"}}"#
        ),
        associations,
        references,
    }
}

/// Stores `rows` as the socket's ingest does (references settled), 10,000 per transaction.
pub async fn store_rows(store: &Store, rows: &[RowToStore]) {
    for chunk in rows.chunks(10_000) {
        let mut tx = store.begin_ingest().await.unwrap();
        tx.insert_validated(chunk).await.unwrap();
        tx.settle_references(chunk).await.unwrap();
        tx.commit().await.unwrap();
    }
}

/// Claims, reconciles and settles `batches` full batches of `object_type` creates.
pub async fn scheduler_cost(store: &Store, object_type: &str, batches: u32) -> Cost {
    let policy = Policy {
        unique_property: Some("email".into()),
        trace_property: None,
        on_conflict: OnConflict::Adopt,
        on_ambiguous: OnAmbiguous::Resend,
        max_attempts: 8,
        give_up_after: Duration::from_secs(24 * 3600),
        backoff: Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
        },
    };
    let (mut claim_t, mut plan_t, mut settle_t) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for b in 0..batches {
        let batch_id = format!("{object_type}-batch-{b}");
        let t = Instant::now();
        let claimed = store
            .claim_batch(
                &hubspot_outbox::store::claim::Claim {
                    object_type,
                    lane: "create",
                    look_ahead: 200,
                    now: chrono::Utc::now(),
                    batch_id: &batch_id,
                    day: "2026-11-29",
                    sent_with: Some("hubspot_outbox_trace_id"),
                    trace_property: Some("hubspot_outbox_trace_id"),
                    rate: hubspot_outbox::model::rate::Rule {
                        n: 190,
                        interval: std::time::Duration::from_secs(10),
                    },
                },
                &|c| choose_rows(c, 100, Some("email")),
            )
            .await
            .unwrap()
            .rows;
        claim_t += t.elapsed();
        let t = Instant::now();
        let results: Vec<_> = claimed
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"id": format!("{b}{i:03}"), "properties": {}, "objectWriteTraceId": r.trace_id}))
            .collect();
        let body = json!({"status": "COMPLETE", "results": results}).to_string();
        let batch: Vec<BatchRow> = claimed.iter().map(BatchRow::from_claimed).collect();
        let plan = reconcile(
            &batch,
            &classify(201, None, body.as_bytes()),
            &policy,
            Duration::from_secs(10),
            Moment {
                now: chrono::Utc::now(),
                jitter: 0.5,
            },
        );
        plan_t += t.elapsed();
        let t = Instant::now();
        let log = BatchLogEntry {
            batch_id: batch_id.clone(),
            object_type: object_type.into(),
            size: claimed.len(),
            http_status: 201,
            outcome: "created".into(),
            duration: Duration::ZERO,
            correlation_id: None,
            sent_at: chrono::Utc::now(),
        };
        store
            .settle_batch(&batch_id, &plan, Some(&log), chrono::Utc::now())
            .await
            .unwrap();
        settle_t += t.elapsed();
    }
    Cost {
        per_batch: start.elapsed() / batches,
        claim: claim_t / batches,
        reconcile: plan_t / batches,
        settle: settle_t / batches,
    }
}

/// Milliseconds, for tables.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
