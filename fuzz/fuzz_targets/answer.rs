//! HubSpot answer classification and reconciliation: any status and body, for a create and
//! for a read-back, gets a classification, and every write of the batch gets exactly one
//! fate (`Plan::check_covers`); never a panic.
#![no_main]

use std::collections::BTreeMap;
use std::time::Duration;

use hubspot_outbox::dispatch::reconciler::{Moment, reconcile, reconcile_read};
use hubspot_outbox::hubspot::classify::classify;
use hubspot_outbox::model::{Backoff, BatchRow, OnAmbiguous, OnConflict, Policy};
use libfuzzer_sys::fuzz_target;

const TRACE: &str = "hubspot_outbox_trace_id";

fuzz_target!(|data: &[u8]| {
    if data.len() < 3 {
        return;
    }
    let status = u16::from_be_bytes([data[0], data[1]]) % 1000;
    let knobs = data[2];
    let body = &data[3..];
    let n = usize::from(knobs & 7) + 1;
    let rows: Vec<BatchRow> = (0..n)
        .map(|i| BatchRow {
            id: i as i64 + 1,
            trace_id: format!("t{i}"),
            attempts: (i % 4) as u32,
            first_failed_at: None,
            properties: BTreeMap::from([
                ("email".to_owned(), format!("e{i}@example.com")),
                (TRACE.to_owned(), format!("t{i}")),
            ]),
            split_to: None,
            sent_with: (knobs & 8 != 0).then(|| TRACE.to_owned()),
            last_error: None,
            ..Default::default()
        })
        .collect();
    let policy = Policy {
        unique_property: Some("email".into()),
        trace_property: (knobs & 16 != 0).then(|| TRACE.to_owned()),
        on_conflict: if knobs & 32 != 0 { OnConflict::Fail } else { OnConflict::Adopt },
        on_ambiguous: if knobs & 64 != 0 { OnAmbiguous::Resend } else { OnAmbiguous::Hold },
        max_attempts: 3,
        give_up_after: Duration::from_secs(3600),
        backoff: Backoff {
            initial: Duration::from_secs(2),
            max: Duration::from_secs(600),
        },
    };
    let at = Moment {
        now: "2026-12-04T12:00:00Z".parse().unwrap(),
        jitter: 0.5,
    };
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let answer = classify(status, None, body);
    let plan = reconcile(&rows, &answer, &policy, Duration::from_secs(10), at);
    if let Err(e) = plan.check_covers(&ids) {
        panic!("create: {e}: {answer:?} -> {:?}", plan.updates);
    }
    let read_by = if knobs & 128 != 0 { TRACE } else { "email" };
    let plan = reconcile_read(&rows, read_by, &answer, &policy, Duration::from_secs(10), at);
    if let Err(e) = plan.check_covers(&ids) {
        panic!("read: {e}: {answer:?} -> {:?}", plan.updates);
    }
});
