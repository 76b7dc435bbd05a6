//! What a read-back answer (`batch/read` by a unique property) does to the writes whose
//! fate was unknown: found ones succeed with the id HubSpot has (or, when the record is
//! someone else's, follow `on_conflict`), missing ones go back to be sent again, and an
//! answer that leaves them unknown keeps them waiting to be read. Pure, like
//! [`super::reconcile`].

use std::time::Duration;

use super::{Moment, failing_for, last_error, pause_for, record_all};
use crate::hubspot::classify::{Answer, Detail};
use crate::hubspot::wire::BatchResponse;
use crate::model::{BatchRow, OnAmbiguous, OnConflict, Plan, Policy, RowUpdate};

/// Decides the fate of every row of a read batch. `read_by` is the property the rows were
/// looked up by; `policy.trace_property` is the type's trace property, asked for too, which
/// tells a record this daemon created (it holds the write's trace id) from one that was
/// there already.
pub fn reconcile_read(
    rows: &[BatchRow],
    read_by: &str,
    answer: &Answer,
    policy: &Policy,
    interval: Duration,
    at: Moment,
) -> Plan {
    let mut plan = Plan::default();
    match answer {
        Answer::Created(response) => found(rows, read_by, response, policy, at, &mut plan),
        // The read failed (5xx, no answer): read again after a back-off that grows with
        // each failure, counted like a create's; past `max_attempts` and
        // `give_up_after` the write is held, never failed (it may exist).
        Answer::Transient {
            detail,
            retry_after,
        } => read_later(rows, read_by, detail, *retry_after, policy, at, &mut plan),
        // Not now (a pause is applied as for a create): read again when it ends, uncounted.
        Answer::Unreachable(d)
        | Answer::Unauthorized(d)
        | Answer::RateLimited { detail: d, .. } => {
            read_again(rows, read_by, d, Duration::ZERO, &mut plan)
        }
        Answer::Rejected(d) if d.status != 413 => {
            read_again(rows, read_by, d, Duration::ZERO, &mut plan)
        }
        // The token may not read these records (no crm.objects.<type>.read scope): they
        // cannot be read back; the type's creates are not held for it.
        Answer::Forbidden(d) => {
            unreadable(rows, read_by, d, policy, &mut plan);
            return plan;
        }
        Answer::UnknownObjectType(d) => {
            record_all(rows, d, &mut plan);
            for r in rows {
                plan.updates.push(RowUpdate::Failed {
                    id: r.id,
                    error: last_error(d),
                    count_attempt: false,
                });
            }
        }
        // HubSpot will not read by this property (it is not unique, or no longer exists):
        // these writes cannot be read back.
        Answer::Invalid(d)
        | Answer::Rejected(d)
        | Answer::MalformedSuccess(d)
        | Answer::Conflict { detail: d, .. } => unreadable(rows, read_by, d, policy, &mut plan),
    }
    plan.pause = pause_for(answer, interval);
    plan
}

/// A 2xx: results by the value of `read_by`, missing values by `errors[].context.ids`.
fn found(
    rows: &[BatchRow],
    read_by: &str,
    response: &BatchResponse,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    let missing: Vec<String> = response
        .errors
        .iter()
        .filter(|e| e.category.as_deref() == Some("OBJECT_NOT_FOUND"))
        .flat_map(|e| e.context_values("ids"))
        .map(|v| v.to_lowercase())
        .collect();
    let mut any_found = false;
    for row in rows {
        let value = row.read_value(read_by);
        // By the trace property a value is a trace id, compared exactly; a unique value
        // without case (HubSpot lowercases emails).
        let by_trace = row.sent_with.as_deref() == Some(read_by);
        let record = response.results.iter().find(|r| {
            r.id.is_some()
                && r.properties
                    .get(read_by)
                    .and_then(|v| v.as_str())
                    .is_some_and(|v| {
                        if by_trace {
                            v == value
                        } else {
                            v.eq_ignore_ascii_case(value)
                        }
                    })
        });
        if let Some(record) = record {
            any_found = true;
            let id = record.id.clone().expect("filtered on an id");
            // This write's own record holds its trace id in the trace property its create
            // carried; anything else is someone else's.
            let ours = row.sent_with.as_deref().is_some_and(|trace| {
                trace == read_by
                    || record.properties.get(trace).and_then(|v| v.as_str())
                        == Some(row.trace_id.as_str())
            });
            plan.updates.push(if ours {
                RowUpdate::Succeeded {
                    new_record: None,
                    id: row.id,
                    hubspot_id: id,
                    note: Some(format!(
                        "found in HubSpot by {read_by} = {value} after its answer was lost; \
                         created by an earlier request"
                    )),
                }
            } else {
                existing(row, read_by, value, id, policy)
            });
        } else if missing.iter().any(|m| m.eq_ignore_ascii_case(value)) {
            plan.updates.push(not_found(row, policy, at));
        } else {
            let detail = Detail {
                status: 200,
                category: Some("UNACCOUNTED".into()),
                message: format!(
                    "HubSpot's read answer named {read_by} = {value} neither found nor missing"
                ),
                correlation_id: None,
                raw: String::new(),
            };
            read_later(
                std::slice::from_ref(row),
                read_by,
                &detail,
                None,
                policy,
                at,
                plan,
            );
        }
    }
    // A read after a conflict that found nothing explains nothing: those writes keep the
    // halved batch size they were given, so the conflict is narrowed down. When it found
    // something, the rest go back in full batches.
    for update in &mut plan.updates {
        if let RowUpdate::Retry { split_to, .. } = update
            && any_found
        {
            *split_to = None;
        }
    }
}

/// A record with this value exists but is not this write's (another write's, or made in
/// HubSpot): adopted or failed by `on_conflict`.
fn existing(row: &BatchRow, read_by: &str, value: &str, id: String, policy: &Policy) -> RowUpdate {
    match policy.on_conflict {
        OnConflict::Adopt => RowUpdate::Succeeded {
            new_record: None,
            id: row.id,
            hubspot_id: id,
            note: Some(format!(
                "already existed in HubSpot (found by {read_by} = {value}); adopted its id"
            )),
        },
        OnConflict::Fail => RowUpdate::Failed {
            id: row.id,
            error: format!(
                "already exists in HubSpot: record {id} has {read_by} = {value} \
                 (objects.<type>.on_conflict = \"fail\")"
            ),
            count_attempt: false,
        },
    }
}

/// Not in HubSpot: send it again at once, no attempt counted (the failed send was
/// counted). A write that has been failing for `give_up_after` and `max_attempts` gives
/// up here, where it is known not to exist.
fn not_found(row: &BatchRow, policy: &Policy, at: Moment) -> RowUpdate {
    let failing_for = failing_for(row, at);
    if row.attempts >= policy.max_attempts && failing_for >= policy.give_up_after {
        return RowUpdate::Failed {
            id: row.id,
            error: format!(
                "gave up after {} attempts over {}: {} (a read-back found no record of it in HubSpot)",
                row.attempts,
                humantime::format_duration(Duration::from_secs(failing_for.as_secs())),
                row.last_error.as_deref().unwrap_or("transient failures")
            ),
            count_attempt: false,
        };
    }
    RowUpdate::Retry {
        id: row.id,
        after: Duration::ZERO,
        count_attempt: false,
        error: None,
        split_to: row.split_to.map(|s| s.max(1) as usize),
    }
}

/// Still unknown after a failed read: read again after a back-off that grows with the
/// write's attempts (each failed read counts one), or, once it has had `max_attempts` and
/// been failing for `give_up_after`, hold it for an operator (it may exist; never failed).
#[allow(clippy::too_many_arguments)]
fn read_later(
    rows: &[BatchRow],
    read_by: &str,
    d: &Detail,
    retry_after: Option<Duration>,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    record_all(rows, d, plan);
    for r in rows {
        let attempts = r.attempts + 1;
        let failing_for = failing_for(r, at);
        plan.updates.push(
            if attempts >= policy.max_attempts && failing_for >= policy.give_up_after {
                RowUpdate::Hold {
                    id: r.id,
                    error: format!(
                        "unconfirmed: HubSpot may have created it, and reading it back by \
                         {read_by} failed {attempts} times over {} ({}); find it in HubSpot, \
                         then `retry` or `discard` it",
                        humantime::format_duration(Duration::from_secs(failing_for.as_secs())),
                        last_error(d)
                    ),
                }
            } else {
                RowUpdate::Verify {
                    id: r.id,
                    read_by: read_by.to_owned(),
                    after: retry_after
                        .unwrap_or_default()
                        .max(policy.backoff.delay(attempts, at.jitter)),
                    count_attempt: true,
                    error: Some(format!("reading it back: {}", last_error(d))),
                    split_to: r.split_to.map(|s| s.max(1) as usize),
                }
            },
        );
    }
}

/// Still unknown: read again after `after`.
fn read_again(rows: &[BatchRow], read_by: &str, d: &Detail, after: Duration, plan: &mut Plan) {
    record_all(rows, d, plan);
    for r in rows {
        plan.updates.push(RowUpdate::Verify {
            id: r.id,
            read_by: read_by.to_owned(),
            after,
            count_attempt: false,
            error: Some(format!("reading it back: {}", last_error(d))),
            split_to: r.split_to.map(|s| s.max(1) as usize),
        });
    }
}

/// The read itself is refused: these writes cannot be read back, and follow
/// `on_ambiguous` as writes without a trace property do.
fn unreadable(rows: &[BatchRow], read_by: &str, d: &Detail, policy: &Policy, plan: &mut Plan) {
    record_all(rows, d, plan);
    for r in rows {
        let error = format!(
            "unconfirmed: HubSpot may have created it, and reading it back by {read_by} failed \
             ({}); find it in HubSpot, then `retry` or `discard` it",
            last_error(d)
        );
        plan.updates.push(match policy.on_ambiguous {
            OnAmbiguous::Hold => RowUpdate::Hold { id: r.id, error },
            OnAmbiguous::Resend => RowUpdate::Retry {
                id: r.id,
                after: Duration::ZERO,
                count_attempt: false,
                error: Some(error),
                split_to: None,
            },
        });
    }
}
