//! Property tests: whatever HubSpot answers (any status, any bytes, any JSON, and JSON in
//! the shapes of its batch answers with ids, trace ids, errors and contexts picked at
//! random), the answer gets a classification and every write of the batch gets exactly
//! one fate, for a create and for a read-back; never a panic.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::json_gen::any_json;
use hubspot_outbox::dispatch::reconciler::{Moment, reconcile, reconcile_read};
use hubspot_outbox::hubspot::classify::classify;
use hubspot_outbox::model::{Backoff, BatchRow, OnAmbiguous, OnConflict, Policy};
use proptest::prelude::*;
use serde_json::{Value, json};

const TRACE_PROPERTY: &str = "hubspot_outbox_trace_id";

fn rows(n: usize, sent_with: bool) -> Vec<BatchRow> {
    (0..n)
        .map(|i| BatchRow {
            id: i as i64 + 1,
            trace_id: format!("t{i}"),
            attempts: (i % 4) as u32,
            first_failed_at: None,
            properties: BTreeMap::from([
                ("email".to_owned(), format!("e{i}@example.com")),
                (TRACE_PROPERTY.to_owned(), format!("t{i}")),
            ]),
            split_to: None,
            sent_with: sent_with.then(|| TRACE_PROPERTY.to_owned()),
            last_error: None,
            ..Default::default()
        })
        .collect()
}

fn policy(on_conflict: OnConflict, on_ambiguous: OnAmbiguous, trace: bool) -> Policy {
    Policy {
        unique_property: Some("email".into()),
        trace_property: trace.then(|| TRACE_PROPERTY.to_owned()),
        on_conflict,
        on_ambiguous,
        max_attempts: 3,
        give_up_after: Duration::from_secs(3600),
        backoff: Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
        },
    }
}

/// Strings that mean something to the reconciler, and some that do not.
fn word() -> impl Strategy<Value = String> {
    prop_oneof![
        (0..6usize).prop_map(|i| format!("t{i}")),
        (0..6usize).prop_map(|i| format!("e{i}@example.com")),
        (0..1_000_000u64).prop_map(|n| n.to_string()),
        Just(String::new()),
        Just("Existing ID: 123".to_owned()),
        Just("A contact with email e1@example.com already exists. Existing ID: 77".to_owned()),
        Just(format!("{TRACE_PROPERTY} already has that value")),
        Just("VALIDATION_ERROR".to_owned()),
        Just("CONFLICT".to_owned()),
        Just("OBJECT_ALREADY_EXISTS".to_owned()),
        Just("RATE_LIMITS".to_owned()),
        Just("TEN_SECONDLY_ROLLING".to_owned()),
        Just("DAILY".to_owned()),
        Just("OBJECT_NOT_FOUND".to_owned()),
        "\\PC{0,12}",
    ]
}

/// A value where HubSpot puts a string, sometimes of another type.
fn loose_string() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => word().prop_map(Value::String),
        1 => any_json(word().boxed()),
    ]
}

/// One result object of a batch answer.
fn result_object() -> impl Strategy<Value = Value> {
    (
        loose_string(),
        prop::collection::btree_map(word(), loose_string(), 0..4),
        prop::option::of(loose_string()),
        any::<bool>(),
    )
        .prop_map(|(id, mut props, trace, with_trace_prop)| {
            if with_trace_prop && let Some(Value::String(t)) = &trace {
                props.insert(TRACE_PROPERTY.to_owned(), Value::String(t.clone()));
            }
            let mut o = json!({"id": id, "properties": props});
            if let Some(t) = trace {
                o["objectWriteTraceId"] = t;
            }
            o
        })
}

/// One error object of a batch answer.
fn error_object() -> impl Strategy<Value = Value> {
    (
        word(),
        word(),
        prop::collection::btree_map(
            word(),
            prop::collection::vec(loose_string(), 0..4),
            0..3,
        ),
    )
        .prop_map(|(category, message, context)| {
            json!({"status": "error", "category": category, "message": message, "context": context})
        })
}

/// A body in the shape of a batch answer (or of an error answer), contents at random.
fn batch_shaped() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec(result_object(), 0..8),
        prop::collection::vec(error_object(), 0..4),
        word(),
        word(),
        prop::option::of(any::<i64>()),
    )
        .prop_map(|(results, errors, category, message, num_errors)| {
            let mut o = json!({
                "status": "COMPLETE",
                "results": results,
                "errors": errors,
                "category": category,
                "message": message,
                "policyName": "TEN_SECONDLY_ROLLING",
            });
            if let Some(n) = num_errors {
                o["numErrors"] = json!(n);
            }
            o
        })
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        4 => prop::sample::select(vec![
            200u16, 201, 207, 400, 401, 403, 404, 409, 413, 423, 429, 500, 502, 503, 504
        ]),
        1 => 0u16..1000,
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => batch_shaped().prop_map(|v| v.to_string().into_bytes()),
        1 => any_json(word().boxed()).prop_map(|v| v.to_string().into_bytes()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn settings() -> impl Strategy<Value = (OnConflict, OnAmbiguous, bool, bool)> {
    (
        prop::sample::select(vec![OnConflict::Adopt, OnConflict::Fail]),
        prop::sample::select(vec![OnAmbiguous::Hold, OnAmbiguous::Resend]),
        any::<bool>(),
        any::<bool>(),
    )
}

const AT: fn() -> Moment = || Moment {
    now: "2026-12-04T12:00:00Z".parse().unwrap(),
    jitter: 0.5,
};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_answer_to_a_create_gives_every_write_exactly_one_fate(
        status in status(),
        body in body(),
        n in 1..7usize,
        (on_conflict, on_ambiguous, trace, sent_with) in settings(),
    ) {
        let rows = rows(n, sent_with);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let answer = classify(status, None, &body);
        let plan = reconcile(
            &rows,
            &answer,
            &policy(on_conflict, on_ambiguous, trace),
            Duration::from_secs(10),
            AT(),
        );
        prop_assert_eq!(plan.check_covers(&ids), Ok(()), "{:?} -> {:?}", answer, plan.updates);
    }

    #[test]
    fn any_answer_to_a_read_back_gives_every_write_exactly_one_fate(
        status in status(),
        body in body(),
        n in 1..7usize,
        by_trace in any::<bool>(),
        (on_conflict, on_ambiguous, trace, sent_with) in settings(),
    ) {
        let rows = rows(n, sent_with);
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let answer = classify(status, None, &body);
        let read_by = if by_trace { TRACE_PROPERTY } else { "email" };
        let plan = reconcile_read(
            &rows,
            read_by,
            &answer,
            &policy(on_conflict, on_ambiguous, trace),
            Duration::from_secs(10),
            AT(),
        );
        prop_assert_eq!(plan.check_covers(&ids), Ok(()), "{:?} -> {:?}", answer, plan.updates);
    }
}
