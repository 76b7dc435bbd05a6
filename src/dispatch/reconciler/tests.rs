//! The reconciler's decisions, one answer shape at a time, from saved HubSpot bodies.

use super::*;
use crate::hubspot::classify::classify;
use chrono::{DateTime, Utc};

use crate::model::{Backoff, OnConflict};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("../../../tests/fixtures/hubspot/", $name))
    };
}

fn row(id: i64, trace: &str, email: &str, firstname: &str) -> BatchRow {
    BatchRow {
        id,
        trace_id: trace.into(),
        attempts: 0,
        first_failed_at: None,
        properties: [
            ("email".to_owned(), email.to_owned()),
            ("firstname".to_owned(), firstname.to_owned()),
        ]
        .into_iter()
        .collect(),
        split_to: None,
        sent_with: None,
        last_error: None,
        ..Default::default()
    }
}

fn policy(unique: Option<&str>, on_ambiguous: OnAmbiguous) -> Policy {
    Policy {
        unique_property: unique.map(str::to_owned),
        trace_property: None,
        on_conflict: OnConflict::Adopt,
        on_ambiguous,
        max_attempts: 3,
        give_up_after: Duration::ZERO,
        backoff: Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
        },
    }
}

const TEN: Duration = Duration::from_secs(10);

fn now() -> DateTime<Utc> {
    "2026-12-04T12:00:00Z".parse().unwrap()
}

/// Reconciled now, with no jitter.
const fn at(now: DateTime<Utc>) -> Moment {
    Moment { now, jitter: 0.0 }
}

fn run(rows: &[BatchRow], status: u16, body: &[u8], p: &Policy) -> Plan {
    reconcile(rows, &classify(status, None, body), p, TEN, at(now()))
}

#[test]
fn shuffled_results_are_mapped_by_trace_id_never_by_position() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let plan = run(
        &rows,
        201,
        fixture!("201_complete.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    assert!(plan.errors.is_empty());
    assert_eq!(
        plan.updates,
        [
            RowUpdate::Succeeded {
                new_record: None,
                id: 2,
                hubspot_id: "512".into(),
                note: None
            },
            RowUpdate::Succeeded {
                new_record: None,
                id: 1,
                hubspot_id: "511".into(),
                note: None
            },
        ]
    );
}

#[test]
fn without_echoed_trace_ids_results_match_by_unique_property_never_by_values() {
    let rows = [
        row(1, "t-1", "A@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let succeeded = |plan: &Plan| -> Vec<(i64, String)> {
        let mut ids: Vec<(i64, String)> = plan
            .updates
            .iter()
            .filter_map(|u| match u {
                RowUpdate::Succeeded { id, hubspot_id, .. } => Some((*id, hubspot_id.clone())),
                _ => None,
            })
            .collect();
        ids.sort();
        ids
    };
    // Unique values compare case-insensitively, as HubSpot lowercases emails.
    let plan = run(
        &rows,
        201,
        fixture!("201_no_trace_ids.json"),
        &policy(Some("email"), OnAmbiguous::Resend),
    );
    assert_eq!(
        succeeded(&plan),
        [(1, "901".to_owned()), (2, "902".to_owned())]
    );
    // With nothing that identifies them, the results are credited to no one: both writes
    // were created (a result each), so they are held, never resent.
    let plan = run(
        &rows,
        201,
        fixture!("201_no_trace_ids.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    assert_eq!(succeeded(&plan), []);
    assert!(
        plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Hold { error, .. } if error.starts_with("created, id unknown")
        )),
        "{:?}",
        plan.updates
    );
}

#[test]
fn a_write_hubspot_names_in_errors_is_never_credited_with_a_result() {
    // HubSpot created b and refused a; its results echo no trace ids. By values the one
    // result would have matched a (same first name): it must go to b, the only write
    // left, by its unique email, and a keeps its error.
    let rows = [
        row(1, "t-a", "a@example.com", "Same"),
        row(2, "t-b", "b@example.com", "Same"),
    ];
    let body = br#"{"status":"COMPLETE","results":[{"id":"55","properties":{"email":"B@EXAMPLE.COM","firstname":"Same"}}],
        "errors":[{"status":"error","category":"VALIDATION_ERROR","message":"bad","context":{"objectWriteTraceId":["t-a"]}}]}"#;
    let plan = run(
        &rows,
        207,
        body,
        &policy(Some("email"), OnAmbiguous::Resend),
    );
    assert!(matches!(&plan.updates[0], RowUpdate::Failed { id: 1, .. }));
    assert_eq!(
        plan.updates[1],
        RowUpdate::Succeeded {
            new_record: None,
            id: 2,
            hubspot_id: "55".into(),
            note: None
        }
    );
    // Without a unique property the result cannot be placed: b was created (one result,
    // one write left), so it is held rather than resent or credited blindly.
    let plan = run(&rows, 207, body, &policy(None, OnAmbiguous::Resend));
    assert!(matches!(&plan.updates[0], RowUpdate::Failed { id: 1, .. }));
    assert!(matches!(&plan.updates[1], RowUpdate::Hold { id: 2, .. }));
}

#[test]
fn a_207_fails_the_invalid_input_and_keeps_the_valid_one() {
    let rows = [
        row(1, "good", "ok@example.com", "Ok"),
        row(2, "bad", "bad@example.com", "Bad"),
    ];
    let plan = run(
        &rows,
        207,
        fixture!("207_multi_status.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    // Errors are applied first, then results.
    assert_eq!(
        plan.updates[1],
        RowUpdate::Succeeded {
            new_record: None,
            id: 1,
            hubspot_id: "701".into(),
            note: None
        }
    );
    let RowUpdate::Failed {
        id: 2,
        error,
        count_attempt: true,
    } = &plan.updates[0]
    else {
        panic!("{:?}", plan.updates)
    };
    assert!(
        error.starts_with("VALIDATION_ERROR: Property values were not valid"),
        "{error}"
    );
    assert_eq!(plan.errors.len(), 1);
    assert_eq!(plan.errors[0].trace_id, "bad");
    assert!(plan.errors[0].raw.contains("PROPERTY_DOESNT_EXIST"));
}

#[test]
fn inputs_missing_from_a_2xx_are_ambiguous() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let plan = run(
        &rows,
        201,
        fixture!("201_empty_results.json"),
        &policy(None, OnAmbiguous::Hold),
    );
    assert!(
        plan.updates
            .iter()
            .all(|u| matches!(u, RowUpdate::Hold { .. })),
        "{:?}",
        plan.updates
    );
    let plan = run(
        &rows,
        201,
        fixture!("201_empty_results.json"),
        &policy(Some("email"), OnAmbiguous::Hold),
    );
    assert!(
        plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Verify {
                count_attempt: true,
                read_by,
                ..
            } if read_by == "email"
        )),
        "a unique value is read back before anything is resent: {:?}",
        plan.updates
    );
}

#[test]
fn a_whole_batch_400_splits_until_the_bad_input_is_alone() {
    let rows: Vec<BatchRow> = (0..5)
        .map(|i| row(i, &format!("t{i}"), "x@example.com", "X"))
        .collect();
    let plan = run(
        &rows,
        400,
        fixture!("400_validation.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry { count_attempt: false, split_to: Some(3), after, .. } if after.is_zero()
    )));
    let plan = run(
        &rows[..1],
        400,
        fixture!("400_validation.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    let RowUpdate::Failed { error, .. } = &plan.updates[0] else {
        panic!()
    };
    assert!(
        error.contains("INVALID_INTEGER") && error.contains("correlation id"),
        "{error}"
    );
}

#[test]
fn a_409_is_resolved_by_reading_back_and_only_a_write_alone_is_adopted_or_failed() {
    // A batch that conflicts: every write with a unique value is read back, none is
    // charged an attempt, and none is bisected beyond half in case the read explains
    // nothing.
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
        row(3, "t-3", "", "Cid"),
    ];
    let body = br#"{"status":"error","message":"A contact with email b@example.com already exists. Existing ID: 77","category":"OBJECT_ALREADY_EXISTS"}"#;
    let plan = run(
        &rows,
        409,
        body,
        &policy(Some("email"), OnAmbiguous::Resend),
    );
    assert_eq!(
        plan.updates,
        [
            RowUpdate::Verify {
                id: 1,
                read_by: "email".into(),
                after: Duration::ZERO,
                count_attempt: false,
                error: Some(last_error(&match classify(409, None, body) {
                    Answer::Conflict { detail, .. } => detail,
                    other => panic!("{other:?}"),
                })),
                split_to: Some(2),
            },
            match &plan.updates[1] {
                u @ RowUpdate::Verify { id: 2, .. } => u.clone(),
                other => panic!("{other:?}"),
            },
            RowUpdate::Retry {
                id: 3,
                after: Duration::ZERO,
                count_attempt: false,
                error: None,
                split_to: Some(2),
            },
        ]
    );
    // A conflict on the trace property: a record of this batch exists already, and every
    // write is read back by the trace property.
    let mut traced = policy(Some("email"), OnAmbiguous::Resend);
    traced.trace_property = Some("hubspot_outbox_trace_id".into());
    let on_trace = br#"{"status":"error","message":"Property \"hubspot_outbox_trace_id\" already has that value: t-2","category":"VALIDATION_ERROR"}"#;
    let plan = run(&rows, 400, on_trace, &traced);
    assert!(
        plan.updates.iter().all(|u| matches!(u, RowUpdate::Verify { read_by, .. } if read_by == "hubspot_outbox_trace_id")),
        "{plan:?}"
    );
    // Any other conflict is read back by the unique values; a write without one is not
    // read (a read by trace ids cannot find what the rejected batch did not create).
    let plan = run(&rows, 409, body, &traced);
    assert!(
        matches!(&plan.updates[2], RowUpdate::Retry { id: 3, .. }),
        "{plan:?}"
    );

    // HubSpot's 400 for a custom unique property is the same conflict.
    let plan = run(
        &rows,
        400,
        br#"{"status":"error","message":"Property \"domain_key\" already has that value: x","category":"VALIDATION_ERROR"}"#,
        &traced,
    );
    assert!(
        plan.updates[..2]
            .iter()
            .all(|u| matches!(u, RowUpdate::Verify { .. })),
        "{plan:?}"
    );

    // A write alone after the conflict was narrowed down to it: adopted or failed.
    let mut alone = [row(1, "t-1", "a@example.com", "Ann")];
    alone[0].split_to = Some(1);
    let plan = run(
        &alone,
        409,
        fixture!("409_object_already_exists.json"),
        &policy(Some("email"), OnAmbiguous::Resend),
    );
    let RowUpdate::Succeeded {
        new_record: None,
        hubspot_id,
        note: Some(note),
        ..
    } = &plan.updates[0]
    else {
        panic!("{plan:?}")
    };
    assert_eq!(hubspot_id, "12345");
    assert!(note.contains("already existed"));
    let mut fail = policy(Some("email"), OnAmbiguous::Resend);
    fail.on_conflict = OnConflict::Fail;
    let plan = run(
        &alone,
        409,
        fixture!("409_object_already_exists.json"),
        &fail,
    );
    assert!(matches!(plan.updates[0], RowUpdate::Failed { .. }));

    // Nothing can be read back: halved as before.
    let plan = run(&rows, 409, body, &policy(None, OnAmbiguous::Resend));
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            split_to: Some(2),
            ..
        }
    )));
}

#[test]
fn rate_limits_requeue_without_counting_and_pause_for_the_named_window() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let p = policy(None, OnAmbiguous::Resend);
    let cases: [(&[u8], Pause); 3] = [
        (
            fixture!("429_ten_secondly.json"),
            Pause::All {
                wait: TEN,
                reason: String::new(),
            },
        ),
        (
            fixture!("429_secondly.json"),
            Pause::All {
                wait: Duration::from_secs(1),
                reason: String::new(),
            },
        ),
        (
            fixture!("429_daily.json"),
            Pause::UntilDailyReset {
                reason: String::new(),
            },
        ),
    ];
    for (body, expected) in cases {
        let plan = run(&rows, 429, body, &p);
        assert!(plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Retry {
                count_attempt: false,
                ..
            }
        )));
        assert_eq!(
            std::mem::discriminant(plan.pause.as_ref().unwrap()),
            std::mem::discriminant(&expected)
        );
        if let (Some(Pause::All { wait, .. }), Pause::All { wait: want, .. }) =
            (&plan.pause, &expected)
        {
            assert_eq!(wait, want);
        }
    }
    let plan = reconcile(
        &rows,
        &classify(
            429,
            Some(Duration::from_secs(42)),
            fixture!("429_daily.json"),
        ),
        &p,
        TEN,
        at(now()),
    );
    assert!(matches!(plan.pause, Some(Pause::All { wait, .. }) if wait == Duration::from_secs(42)));
}

#[test]
fn auth_failures_fail_nothing_and_pause() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let p = policy(None, OnAmbiguous::Resend);
    let plan = run(&rows, 401, fixture!("401_invalid_authentication.json"), &p);
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            count_attempt: false,
            ..
        }
    )));
    assert!(matches!(plan.pause, Some(Pause::Unauthorized { .. })));
    let plan = run(&rows, 403, fixture!("403_missing_scopes.json"), &p);
    assert!(matches!(plan.pause, Some(Pause::ObjectType { .. })));
    let plan = run(&rows, 400, fixture!("400_unknown_object_type.json"), &p);
    assert!(
        plan.updates
            .iter()
            .all(|u| matches!(u, RowUpdate::Failed { .. }))
    );
    assert!(matches!(plan.pause, Some(Pause::FailObjectType { .. })));
}

#[test]
fn server_errors_back_off_then_give_up_or_hold() {
    let mut rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    rows[1].attempts = 2;
    let plan = run(
        &rows,
        503,
        fixture!("500_internal.json"),
        &policy(None, OnAmbiguous::Resend),
    );
    assert_eq!(
        plan.updates[0],
        RowUpdate::Retry {
            id: 1,
            after: Duration::from_secs(1),
            count_attempt: true,
            error: Some("HTTP 503 INTERNAL_ERROR: internal error (correlation id aa7b1c2d-0000-4000-8000-000000000012)".into()),
            split_to: None
        }
    );
    let RowUpdate::Failed { error, .. } = &plan.updates[1] else {
        panic!()
    };
    assert!(
        error.starts_with("gave up after 3 attempts over 0s: HTTP 503"),
        "{error}"
    );
    assert_eq!(
        plan.errors.iter().map(|e| e.attempt).collect::<Vec<_>>(),
        [1, 3]
    );

    let plan = run(
        &rows,
        502,
        fixture!("502_html.txt"),
        &policy(None, OnAmbiguous::Hold),
    );
    assert!(
        plan.updates
            .iter()
            .all(|u| matches!(u, RowUpdate::Hold { .. }))
    );
    let plan = reconcile(
        &rows,
        &crate::hubspot::classify::transport_failure("timed out"),
        &policy(None, OnAmbiguous::Hold),
        TEN,
        at(now()),
    );
    assert!(
        plan.updates
            .iter()
            .all(|u| matches!(u, RowUpdate::Hold { .. }))
    );
}

#[test]
fn a_batch_that_never_left_goes_back_as_it_was_due_when_the_pause_ends() {
    let claimed = |id: i64, split_to: Option<i64>| crate::model::ClaimedRow {
        id,
        trace_id: format!("t-{id}"),
        properties: "{}".into(),
        associations: "[]".into(),
        attempts: 3,
        split_to,
        first_failed_at: None,
        read_by: None,
        sent_with: None,
        last_error: None,
        ..Default::default()
    };
    let mut reading = claimed(3, None);
    reading.read_by = Some("hubspot_outbox_trace_id".into());
    let plan = unsent(&[reading], Duration::from_secs(7));
    assert!(
        matches!(&plan.updates[0], RowUpdate::Verify { id: 3, read_by, count_attempt: false, .. } if read_by == "hubspot_outbox_trace_id"),
        "a read-back that never left is still a read-back: {plan:?}"
    );
    let plan = unsent(
        &[claimed(1, None), claimed(2, Some(25))],
        Duration::from_secs(7),
    );
    assert_eq!(
        plan.updates,
        [
            RowUpdate::Retry {
                id: 1,
                after: Duration::from_secs(7),
                count_attempt: false,
                error: None,
                split_to: None
            },
            RowUpdate::Retry {
                id: 2,
                after: Duration::from_secs(7),
                count_attempt: false,
                error: None,
                split_to: Some(25)
            }
        ]
    );
    assert!(plan.errors.is_empty() && plan.pause.is_none());
}

#[test]
fn a_transient_failure_gives_up_only_after_both_max_attempts_and_give_up_after() {
    // Writes that cannot be read back, resent by choice.
    let mut p = policy(None, OnAmbiguous::Resend);
    p.give_up_after = Duration::from_secs(24 * 3600);
    let mut rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
        row(3, "t-3", "c@example.com", "Cid"),
    ];
    // Far past max_attempts (3), but failing for only an hour: retried.
    rows[0].attempts = 50;
    rows[0].first_failed_at = Some(now() - chrono::Duration::hours(1));
    // Failing for a day and past max_attempts: given up, saying for how long.
    rows[1].attempts = 50;
    rows[1].first_failed_at = Some(now() - chrono::Duration::hours(25));
    // Failing for a day but only on its first attempt: retried.
    rows[2].first_failed_at = Some(now() - chrono::Duration::hours(25));
    let plan = run(&rows, 503, fixture!("500_internal.json"), &p);
    assert!(matches!(
        plan.updates[0],
        RowUpdate::Retry {
            id: 1,
            count_attempt: true,
            ..
        }
    ));
    let RowUpdate::Failed { id: 2, error, .. } = &plan.updates[1] else {
        panic!("{:?}", plan.updates[1])
    };
    assert!(
        error.starts_with("gave up after 51 attempts over 1day 1h: HTTP 503"),
        "{error}"
    );
    assert!(matches!(plan.updates[2], RowUpdate::Retry { id: 3, .. }));
}

#[test]
fn a_request_that_never_reached_hubspot_costs_no_attempt_and_a_refused_one_pauses_its_type() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "b@example.com", "Bea"),
    ];
    let p = policy(None, OnAmbiguous::Hold);
    let plan = reconcile(
        &rows,
        &crate::hubspot::classify::not_sent("could not connect: connection refused"),
        &p,
        TEN,
        at(now()),
    );
    assert!(
        plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Retry { count_attempt: false, after, .. } if after.is_zero()
        )),
        "{plan:?}"
    );
    assert!(plan.pause.is_none());

    let plan = run(&rows, 404, br#"{"message":"Not Found"}"#, &p);
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            count_attempt: false,
            ..
        }
    )));
    assert!(matches!(
        plan.pause,
        Some(Pause::ObjectType {
            kind: "rejected",
            ..
        })
    ));

    // 413: the batch is too large; halve it. Alone, the write itself is too large.
    let plan = run(&rows, 413, br#"{"message":"Payload Too Large"}"#, &p);
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            split_to: Some(1),
            count_attempt: false,
            ..
        }
    )));
    assert!(plan.pause.is_none());
    let plan = run(&rows[..1], 413, br#"{"message":"Payload Too Large"}"#, &p);
    assert!(matches!(plan.updates[0], RowUpdate::Failed { id: 1, .. }));
}

#[test]
fn results_carrying_the_trace_property_are_credited_by_it() {
    let rows = [
        row(1, "t-1", "a@example.com", "Same"),
        row(2, "t-2", "b@example.com", "Same"),
    ];
    // No echoed trace ids, no unique property: the trace property's value names each.
    let body = br#"{"status":"COMPLETE","results":[
        {"id":"82","properties":{"firstname":"Same","hubspot_outbox_trace_id":"t-2"}},
        {"id":"81","properties":{"firstname":"Same","hubspot_outbox_trace_id":"t-1"}}]}"#;
    let mut p = policy(None, OnAmbiguous::Resend);
    p.trace_property = Some("hubspot_outbox_trace_id".into());
    let plan = run(&rows, 201, body, &p);
    let mut ids: Vec<(i64, String)> = plan
        .updates
        .iter()
        .filter_map(|u| match u {
            RowUpdate::Succeeded { id, hubspot_id, .. } => Some((*id, hubspot_id.clone())),
            _ => None,
        })
        .collect();
    ids.sort();
    assert_eq!(ids, [(1, "81".to_owned()), (2, "82".to_owned())]);
}

/// A read-back answered with this status and body.
fn read(rows: &[BatchRow], read_by: &str, status: u16, body: &str, p: &Policy) -> Plan {
    reconcile_read(
        rows,
        read_by,
        &classify(status, None, body.as_bytes()),
        p,
        TEN,
        at(now()),
    )
}

/// A row whose create carried the trace property `trace`.
fn sent(id: i64, trace: &str, email: &str) -> BatchRow {
    BatchRow {
        sent_with: Some("trace".into()),
        ..row(id, trace, email, "x")
    }
}

fn traced(on_ambiguous: OnAmbiguous) -> Policy {
    let mut p = policy(Some("email"), on_ambiguous);
    p.trace_property = Some("trace".into());
    p
}

#[test]
fn a_read_back_adopts_what_exists_resends_what_is_missing_and_asks_again_about_the_rest() {
    let rows = [sent(1, "t-1", ""), sent(2, "t-2", ""), sent(3, "t-3", "")];
    let body = r#"{"status":"COMPLETE","results":[{"id":"901","properties":{"trace":"t-1"}}],
        "numErrors":1,"errors":[{"status":"error","category":"OBJECT_NOT_FOUND",
        "message":"Could not get some objects","context":{"ids":["t-2"]}}]}"#;
    let plan = read(&rows, "trace", 207, body, &traced(OnAmbiguous::Hold));
    assert!(
        matches!(&plan.updates[0], RowUpdate::Succeeded { id: 1, hubspot_id, note: Some(note), .. }
            if hubspot_id == "901" && note.contains("found in HubSpot by trace = t-1")),
        "{plan:?}"
    );
    assert_eq!(
        plan.updates[1],
        RowUpdate::Retry {
            id: 2,
            after: Duration::ZERO,
            count_attempt: false,
            error: None,
            split_to: None
        }
    );
    // Named neither found nor missing: still unknown, read again after a back-off.
    assert!(
        matches!(&plan.updates[2], RowUpdate::Verify { id: 3, read_by, count_attempt: true, after, .. }
            if read_by == "trace" && !after.is_zero()),
        "{plan:?}"
    );
    assert!(plan.pause.is_none());
}

#[test]
fn a_record_found_by_its_unique_value_that_is_not_this_writes_follows_on_conflict() {
    let rows = [
        sent(1, "t-1", "A@Example.com"),
        sent(2, "t-2", "b@example.com"),
    ];
    // HubSpot lowercases emails; the first record holds this write's trace id, the second
    // someone else's.
    let body = r#"{"status":"COMPLETE","results":[
        {"id":"5","properties":{"email":"b@example.com","trace":"elsewhere"}},
        {"id":"4","properties":{"email":"a@example.com","trace":"t-1"}}]}"#;
    let plan = read(&rows, "email", 200, body, &traced(OnAmbiguous::Hold));
    assert!(
        matches!(&plan.updates[0], RowUpdate::Succeeded { id: 1, hubspot_id, note: Some(n), .. } if hubspot_id == "4" && n.starts_with("found")),
        "{plan:?}"
    );
    assert!(
        matches!(&plan.updates[1], RowUpdate::Succeeded { id: 2, hubspot_id, note: Some(n), .. } if hubspot_id == "5" && n.starts_with("already existed")),
        "{plan:?}"
    );
    let mut fail = traced(OnAmbiguous::Hold);
    fail.on_conflict = OnConflict::Fail;
    let plan = read(&rows, "email", 200, body, &fail);
    assert!(
        matches!(&plan.updates[1], RowUpdate::Failed { id: 2, error, count_attempt: false } if error.contains("record 5")),
        "{plan:?}"
    );
}

#[test]
fn a_read_after_a_conflict_that_finds_nothing_keeps_the_halved_batch_size() {
    let mut rows = [sent(1, "t-1", ""), sent(2, "t-2", "")];
    for r in &mut rows {
        r.split_to = Some(50);
    }
    let none = r#"{"status":"COMPLETE","results":[],"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","context":{"ids":["t-1","t-2"]}}]}"#;
    let plan = read(&rows, "trace", 207, none, &traced(OnAmbiguous::Hold));
    assert!(
        plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Retry {
                split_to: Some(50),
                ..
            }
        )),
        "{plan:?}"
    );
    let one = r#"{"status":"COMPLETE","results":[{"id":"9","properties":{"trace":"t-1"}}],"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","context":{"ids":["t-2"]}}]}"#;
    let plan = read(&rows, "trace", 207, one, &traced(OnAmbiguous::Hold));
    assert!(matches!(
        plan.updates[1],
        RowUpdate::Retry {
            id: 2,
            split_to: None,
            ..
        }
    ));
}

#[test]
fn a_read_that_fails_is_read_again_and_one_refused_follows_on_ambiguous() {
    let rows = [row(1, "t-1", "", "Ann")];
    let plan = read(
        &rows,
        "trace",
        503,
        r#"{"message":"down"}"#,
        &traced(OnAmbiguous::Hold),
    );
    assert!(
        matches!(&plan.updates[0], RowUpdate::Verify { count_attempt: true, after, .. } if *after == Duration::from_secs(1)),
        "{plan:?}"
    );
    // Reads that keep failing back off, and past both bounds the write is held, never
    // failed: it may exist.
    let mut patient = traced(OnAmbiguous::Hold);
    patient.give_up_after = Duration::from_secs(24 * 3600);
    let mut tired = sent(1, "t-1", "");
    tired.attempts = 50;
    tired.first_failed_at = Some(now() - chrono::Duration::hours(1));
    let plan = read(
        &[tired.clone()],
        "trace",
        503,
        r#"{"message":"down"}"#,
        &patient,
    );
    assert!(
        matches!(&plan.updates[0], RowUpdate::Verify { after, .. } if *after == Duration::from_secs(300)),
        "{plan:?}"
    );
    tired.first_failed_at = Some(now() - chrono::Duration::hours(25));
    let plan = read(&[tired], "trace", 503, r#"{"message":"down"}"#, &patient);
    assert!(
        matches!(&plan.updates[0], RowUpdate::Hold { error, .. } if error.contains("failed 51 times")),
        "{plan:?}"
    );
    // A token that may not read the records: they cannot be read back; the type is not
    // paused for it.
    let plan = read(
        &[sent(1, "t-1", "")],
        "trace",
        403,
        r#"{"status":"error","category":"MISSING_SCOPES","message":"missing scopes"}"#,
        &traced(OnAmbiguous::Hold),
    );
    assert!(
        matches!(plan.updates[0], RowUpdate::Hold { .. }),
        "{plan:?}"
    );
    assert!(plan.pause.is_none());
    let plan = read(
        &rows,
        "trace",
        429,
        r#"{"status":"error","message":"limit","errorType":"RATE_LIMIT","policyName":"TEN_SECONDLY_ROLLING"}"#,
        &traced(OnAmbiguous::Hold),
    );
    assert!(matches!(plan.updates[0], RowUpdate::Verify { .. }));
    assert!(matches!(plan.pause, Some(Pause::All { .. })));
    // The property is not unique (or gone): the write cannot be read back.
    let refused = r#"{"status":"error","message":"Unable to perform a read by non-unique property trace","category":"VALIDATION_ERROR"}"#;
    let plan = read(&rows, "trace", 400, refused, &traced(OnAmbiguous::Hold));
    assert!(
        matches!(&plan.updates[0], RowUpdate::Hold { error, .. } if error.contains("reading it back by trace failed")),
        "{plan:?}"
    );
    let plan = read(&rows, "trace", 400, refused, &traced(OnAmbiguous::Resend));
    assert!(matches!(plan.updates[0], RowUpdate::Retry { .. }));
}

#[test]
fn an_ambiguous_answer_reads_back_what_it_can_and_holds_the_rest_by_default() {
    let rows = [
        row(1, "t-1", "a@example.com", "Ann"),
        row(2, "t-2", "", "Bea"),
    ];
    let plan = run(
        &rows,
        502,
        fixture!("500_internal.json"),
        &policy(Some("email"), OnAmbiguous::Hold),
    );
    assert!(
        matches!(&plan.updates[0], RowUpdate::Verify { read_by, count_attempt: true, .. } if read_by == "email")
    );
    assert!(
        matches!(&plan.updates[1], RowUpdate::Hold { error, .. } if error.contains("cannot be read back")),
        "{plan:?}"
    );
    let plan = run(
        &rows,
        502,
        fixture!("500_internal.json"),
        &traced(OnAmbiguous::Hold),
    );
    assert!(matches!(&plan.updates[1], RowUpdate::Verify { read_by, .. } if read_by == "trace"));
}

fn upsert_row(id: i64, email: &str) -> BatchRow {
    BatchRow {
        operation: crate::model::Operation::Upsert,
        id_property: Some("email".into()),
        record_key: Some(email.into()),
        ..row(id, &format!("u-{id}"), email, "")
    }
}

#[test]
fn an_upsert_conflict_is_halved_uncharged_then_fails_the_write_alone() {
    let p = policy(None, OnAmbiguous::Hold);
    let body = br#"{"status":"error","category":"OBJECT_ALREADY_EXISTS","message":"Object already exists. Existing ID: 9"}"#;
    let rows = [
        upsert_row(1, "a@x"),
        upsert_row(2, "b@x"),
        upsert_row(3, "c@x"),
    ];
    let plan = reconcile_record(&rows, &classify(409, None, body), &p, TEN, at(now()));
    plan.check_covers(&[1, 2, 3]).unwrap();
    assert!(plan.updates.iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            count_attempt: false,
            split_to: Some(2),
            ..
        }
    )));
    let alone = reconcile_record(&rows[..1], &classify(409, None, body), &p, TEN, at(now()));
    assert!(matches!(
        &alone.updates[0],
        RowUpdate::Failed {
            id: 1,
            count_attempt: true,
            ..
        }
    ));
}

#[test]
fn upsert_results_match_by_trace_id_or_echoed_value_and_a_lost_answer_is_resent() {
    let p = policy(None, OnAmbiguous::Hold);
    let rows = [
        upsert_row(1, "a@x"),
        upsert_row(2, "B@x"),
        upsert_row(3, "c@x"),
    ];
    // Shuffled; one result without a trace id (matched by the email it echoes); one
    // input never mentioned.
    let body = br#"{"results":[
        {"id":"20","new":false,"properties":{"email":"b@x"}},
        {"id":"10","new":true,"objectWriteTraceId":"u-1","properties":{}}]}"#;
    let plan = reconcile_record(&rows, &classify(200, None, body), &p, TEN, at(now()));
    plan.check_covers(&[1, 2, 3]).unwrap();
    assert!(plan.updates.contains(&RowUpdate::Succeeded {
        id: 1,
        hubspot_id: "10".into(),
        note: None,
        new_record: Some(true)
    }));
    assert!(plan.updates.contains(&RowUpdate::Succeeded {
        id: 2,
        hubspot_id: "20".into(),
        note: None,
        new_record: Some(false)
    }));
    assert!(plan.updates.iter().any(|u| matches!(
        u,
        RowUpdate::Retry {
            id: 3,
            count_attempt: true,
            ..
        }
    )));
    // No answer at all: resent, never held (an upsert is safe to repeat).
    let lost = crate::hubspot::classify::transport_failure("timed out");
    let plan = reconcile_record(&rows, &lost, &p, TEN, at(now()));
    assert!(
        plan.updates
            .iter()
            .all(|u| matches!(u, RowUpdate::Retry { .. }))
    );
}

#[test]
fn an_update_of_a_missing_record_fails_by_the_id_hubspot_names() {
    let p = policy(None, OnAmbiguous::Hold);
    let rows = [BatchRow {
        operation: crate::model::Operation::Update,
        record_key: Some("999".into()),
        ..row(1, "x", "", "")
    }];
    let body = br#"{"status":"COMPLETE","results":[],"errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"Object not found.","context":{"ids":["999"]}}]}"#;
    let plan = reconcile_record(&rows, &classify(207, None, body), &p, TEN, at(now()));
    assert!(
        matches!(&plan.updates[0], RowUpdate::Failed { id: 1, error, .. } if error.starts_with("OBJECT_NOT_FOUND"))
    );
}

#[test]
fn an_association_batch_credits_pairs_it_made_and_halves_on_a_refused_one() {
    let p = policy(None, OnAmbiguous::Hold);
    let assoc = |to: &str| crate::model::Association {
        to: crate::model::AssociationTarget::Record { id: to.into() },
        to_object_type: Some(crate::model::ObjectType::parse("companies").unwrap()),
        types: vec![],
    };
    let at_step = |id: i64, to: &str| BatchRow {
        hubspot_id: Some(format!("{id}00")),
        associations: vec![assoc(to)],
        ..upsert_row(id, &format!("{id}@x"))
    };
    let rows = [at_step(1, "7"), at_step(2, "8"), at_step(3, "9")];
    let body = br#"{"status":"COMPLETE","results":[{"fromObjectId":100,"toObjectId":7}],
        "errors":[{"status":"error","category":"OBJECT_NOT_FOUND","message":"No companies with id 8"}]}"#;
    let plan = reconcile_associations(
        &rows,
        Some("companies"),
        &classify(207, None, body),
        &p,
        TEN,
        at(now()),
    );
    plan.check_covers(&[1, 2, 3]).unwrap();
    assert!(
        matches!(&plan.updates[0], RowUpdate::Succeeded { id: 1, hubspot_id, .. } if hubspot_id == "100")
    );
    assert!(plan.updates[1..].iter().all(|u| matches!(
        u,
        RowUpdate::Retry {
            count_attempt: false,
            split_to: Some(1),
            ..
        }
    )));
    let alone = reconcile_associations(
        &rows[1..2],
        Some("companies"),
        &classify(207, None, body),
        &p,
        TEN,
        at(now()),
    );
    assert!(
        matches!(&alone.updates[0], RowUpdate::Failed { id: 2, error, .. }
        if error.contains("associations[0] (to companies 8)") && error.contains("No companies with id 8"))
    );
}
