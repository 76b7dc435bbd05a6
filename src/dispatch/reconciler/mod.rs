//! What a HubSpot answer does to each write of the batch, as a pure function from
//! (batch, [`Answer`], policy) to a [`Plan`] of row updates, error-history entries and
//! sending pauses. No I/O: the dispatcher applies the plan with one store call
//! (`Store::settle_batch`).
//!
//! Results are mapped to inputs by [`matching`]: by `objectWriteTraceId` when HubSpot
//! echoes it, else by the object type's unique property, else by matching returned
//! property values; never by position, since HubSpot does not keep the input order.

mod associate;
mod conflict;
pub mod matching;
mod read;
mod record;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::hubspot::classify::{Answer, Detail, RatePolicy};
use crate::hubspot::wire::{BatchError, BatchResponse};
use crate::model::{
    BatchRow, ClaimedRow, ErrorRecord, OnAmbiguous, Pause, Plan, Policy, RowUpdate,
};
pub use associate::reconcile_associations;
use conflict::conflict;
use matching::match_results;
pub use read::reconcile_read;
pub use record::reconcile_record;

/// Error categories in a 2xx `errors[]` that are worth retrying; every other category is a
/// permanent fault of the input.
const TRANSIENT_CATEGORIES: [&str; 6] = [
    "RATE_LIMITS",
    "RATE_LIMIT",
    "INTERNAL_ERROR",
    "SERVICE_UNAVAILABLE",
    "TIMEOUT",
    "LOCKED",
];

/// When a batch is reconciled: the time (a transient failure gives a write up only once
/// it has been failing for `give_up_after`) and a number in `[0, 1)` that spreads retries.
#[derive(Debug, Clone, Copy)]
pub struct Moment {
    pub now: DateTime<Utc>,
    pub jitter: f64,
}

/// Decides the fate of every row of the batch. `interval` is the rate-limit window a
/// `TEN_SECONDLY_ROLLING` 429 waits out.
pub fn reconcile(
    rows: &[BatchRow],
    answer: &Answer,
    policy: &Policy,
    interval: Duration,
    at: Moment,
) -> Plan {
    let mut plan = Plan::default();
    match answer {
        Answer::Created(response) => created(rows, response, policy, at, &mut plan),
        Answer::MalformedSuccess(d) => ambiguous_all(rows, d, policy, None, at, &mut plan),
        Answer::Transient {
            detail,
            retry_after,
        } => ambiguous_all(rows, detail, policy, *retry_after, at, &mut plan),
        Answer::Invalid(d) if rows.len() == 1 => {
            record_all(rows, d, &mut plan);
            plan.updates.push(RowUpdate::Failed {
                id: rows[0].id,
                error: last_error(d),
                count_attempt: true,
            });
        }
        Answer::Invalid(d) => {
            record_all(rows, d, &mut plan);
            split(rows, &mut plan);
        }
        Answer::UnknownObjectType(d) => {
            record_all(rows, d, &mut plan);
            for r in rows {
                plan.updates.push(RowUpdate::Failed {
                    id: r.id,
                    error: last_error(d),
                    count_attempt: true,
                });
            }
        }
        Answer::Conflict {
            detail,
            existing_id,
        } => conflict(rows, detail, existing_id.as_deref(), policy, &mut plan),
        // Nothing was created and nothing is wrong with the writes: no attempt counted
        // (401, 403, a request HubSpot never got, 429).
        Answer::Unauthorized(d)
        | Answer::Forbidden(d)
        | Answer::Unreachable(d)
        | Answer::RateLimited { detail: d, .. } => requeue_all(rows, d, &mut plan),
        // Too large: halve the batch; a single write too large for HubSpot is its fault.
        Answer::Rejected(d) if d.status == 413 && rows.len() > 1 => {
            record_all(rows, d, &mut plan);
            split(rows, &mut plan);
        }
        Answer::Rejected(d) if d.status == 413 => {
            record_all(rows, d, &mut plan);
            plan.updates.push(RowUpdate::Failed {
                id: rows[0].id,
                error: last_error(d),
                count_attempt: true,
            });
        }
        // The request itself is refused (a wrong path or version, a proxy in the way):
        // the object type is held (see [`pause_for`]) until HubSpot takes it again.
        Answer::Rejected(d) => requeue_all(rows, d, &mut plan),
    }
    plan.pause = pause_for(answer, interval);
    plan
}

/// The pause of sending an answer calls for, whatever the request was (a create or a
/// read): 429 windows, the daily limit, a refused token, an object type the token may not
/// write or HubSpot refuses requests for, an object type that does not exist.
pub fn pause_for(answer: &Answer, interval: Duration) -> Option<Pause> {
    Some(match answer {
        Answer::UnknownObjectType(d) => Pause::FailObjectType {
            error: last_error(d),
        },
        Answer::Unauthorized(d) => Pause::Unauthorized {
            reason: last_error(d),
        },
        Answer::Forbidden(d) => Pause::ObjectType {
            kind: "forbidden",
            reason: last_error(d),
        },
        Answer::Rejected(d) if d.status != 413 => Pause::ObjectType {
            kind: "rejected",
            reason: last_error(d),
        },
        Answer::RateLimited {
            detail,
            policy: rate,
            retry_after,
        } => {
            let reason = last_error(detail);
            match (rate, retry_after) {
                (_, Some(wait)) => Pause::All {
                    wait: *wait,
                    reason,
                },
                (RatePolicy::Daily, None) => Pause::UntilDailyReset { reason },
                (RatePolicy::Secondly, None) => Pause::All {
                    wait: Duration::from_secs(1),
                    reason,
                },
                (RatePolicy::Interval | RatePolicy::Unknown, None) => Pause::All {
                    wait: interval,
                    reason,
                },
            }
        }
        _ => return None,
    })
}

/// A claimed batch that never left (a pause began before its slot): every row goes back
/// to the queue as it was, due when the pause ends, with no attempt counted and its split
/// cap kept; a row that was to be read back still is (sending it instead could create it
/// twice).
pub fn unsent(rows: &[ClaimedRow], wait: Duration) -> Plan {
    Plan {
        updates: rows
            .iter()
            .map(|r| {
                let split_to = r.split_to.map(|s| s.max(1) as usize);
                match &r.read_by {
                    Some(read_by) => RowUpdate::Verify {
                        id: r.id,
                        read_by: read_by.clone(),
                        after: wait,
                        count_attempt: false,
                        error: None,
                        split_to,
                    },
                    None => RowUpdate::Retry {
                        id: r.id,
                        after: wait,
                        count_attempt: false,
                        error: None,
                        split_to,
                    },
                }
            })
            .collect(),
        ..Plan::default()
    }
}

/// A 2xx: results by trace id / unique value / property values, errors by trace id, and
/// whatever is left unaccounted for is ambiguous.
fn created(
    rows: &[BatchRow],
    response: &BatchResponse,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    let index: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.trace_id.as_str(), i))
        .collect();
    let mut settled = vec![false; rows.len()];
    // Errors first: a write HubSpot names in `errors[]` is never credited with a result.
    for error in &response.errors {
        for trace in error.trace_ids() {
            let Some(&i) = index.get(trace.as_str()) else {
                continue;
            };
            if std::mem::replace(&mut settled[i], true) {
                continue;
            }
            input_error(&rows[i], error, policy, at, plan);
        }
    }
    let matched = match_results(
        rows,
        &settled,
        &response.results,
        policy.trace_property.as_deref(),
        policy.unique_property.as_deref(),
    );
    for (i, hubspot_id) in matched.credited {
        settled[i] = true;
        plan.updates.push(RowUpdate::Succeeded {
            new_record: None,
            id: rows[i].id,
            hubspot_id,
            note: None,
        });
    }
    let unaccounted: Vec<BatchRow> = rows
        .iter()
        .zip(&settled)
        .filter(|(_, done)| !**done)
        .map(|(r, _)| r.clone())
        .collect();
    if unaccounted.is_empty() {
        return;
    }
    if matched.unmatched_results >= unaccounted.len() {
        // HubSpot created every one of them (a result for each), but nothing in its
        // answer says which id is whose. Resending would duplicate them all: read back
        // those that can be, hold the others.
        let detail = Detail {
            status: 200,
            category: Some("UNIDENTIFIED".into()),
            message: format!(
                "HubSpot created {} of these writes but its answer does not say which id is \
                 whose (no echoed objectWriteTraceId, no trace or unique property value)",
                unaccounted.len()
            ),
            correlation_id: None,
            raw: String::new(),
        };
        record_all(&unaccounted, &detail, plan);
        for r in &unaccounted {
            plan.updates.push(match read_by(r, policy) {
                Some(read_by) => RowUpdate::Verify {
                    id: r.id,
                    read_by,
                    after: Duration::ZERO,
                    count_attempt: true,
                    error: Some(format!("created, id unknown: {}", detail.message)),
                    split_to: None,
                },
                None => RowUpdate::Hold {
                    id: r.id,
                    error: format!(
                        "created, id unknown: {}; find the record in HubSpot, then discard this write",
                        detail.message
                    ),
                },
            });
        }
        return;
    }
    let detail = Detail {
        status: 200,
        category: Some("UNACCOUNTED".into()),
        message: format!(
            "HubSpot's answer named neither a result nor an error for {} of {} inputs",
            unaccounted.len(),
            rows.len()
        ),
        correlation_id: None,
        raw: String::new(),
    };
    ambiguous_all(&unaccounted, &detail, policy, None, at, plan);
}

/// An `errors[]` entry of a 2xx answer charged to the input it names: recorded in its
/// history, then retried (a transient category) or failed.
fn input_error(row: &BatchRow, error: &BatchError, policy: &Policy, at: Moment, plan: &mut Plan) {
    let category = error.category.clone();
    let message = error
        .message
        .clone()
        .unwrap_or_else(|| "HubSpot reported an error with no message".into());
    let transient = category
        .as_deref()
        .is_some_and(|c| TRANSIENT_CATEGORIES.contains(&c));
    let text = format!("{}: {message}", category.as_deref().unwrap_or("ERROR"));
    plan.errors.push(ErrorRecord {
        trace_id: row.trace_id.clone(),
        attempt: row.attempts + 1,
        status: 207,
        category,
        message,
        correlation_id: None,
        raw: error.raw.to_string(),
    });
    if transient {
        retry_or_fail(row, text, None, policy, at, plan);
    } else {
        plan.updates.push(RowUpdate::Failed {
            id: row.id,
            error: text,
            count_attempt: true,
        });
    }
}

/// Halve the batch: every row goes back at once, uncounted, capped to half the size.
fn split(rows: &[BatchRow], plan: &mut Plan) {
    let half = rows.len().div_ceil(2);
    for r in rows {
        plan.updates.push(RowUpdate::Retry {
            id: r.id,
            after: Duration::ZERO,
            count_attempt: false,
            error: None,
            split_to: Some(half),
        });
    }
}

/// Rows go back to `pending` with no attempt counted (401, 403, 429).
fn requeue_all(rows: &[BatchRow], d: &Detail, plan: &mut Plan) {
    record_all(rows, d, plan);
    for r in rows {
        plan.updates.push(RowUpdate::Retry {
            id: r.id,
            after: Duration::ZERO,
            count_attempt: false,
            error: Some(last_error(d)),
            split_to: None,
        });
    }
}

/// HubSpot may have created these. A write that can be read back (it has a value for
/// its type's unique property, or was sent with the trace property) is read back before
/// it is sent again; one that cannot is held (`on_ambiguous = "hold"`, the default) or
/// resent until the budget runs out (`"resend"`: a duplicate is possible).
fn ambiguous_all(
    rows: &[BatchRow],
    d: &Detail,
    policy: &Policy,
    retry_after: Option<Duration>,
    at: Moment,
    plan: &mut Plan,
) {
    record_all(rows, d, plan);
    for r in rows {
        if let Some(read_by) = read_by(r, policy) {
            plan.updates.push(RowUpdate::Verify {
                id: r.id,
                read_by,
                after: retry_after
                    .unwrap_or_default()
                    .max(policy.backoff.delay(r.attempts + 1, at.jitter)),
                count_attempt: true,
                error: Some(last_error(d)),
                split_to: None,
            });
        } else if policy.on_ambiguous == OnAmbiguous::Hold {
            plan.updates.push(RowUpdate::Hold {
                id: r.id,
                error: format!(
                    "unconfirmed: HubSpot may have created it ({}), and it cannot be read back \
                     (no trace property, no unique value); find it in HubSpot, then `retry` or \
                     `discard` it",
                    last_error(d)
                ),
            });
        } else {
            retry_or_fail(r, last_error(d), retry_after, policy, at, plan);
        }
    }
}

/// The property a write is read back by when its fate is unknown: the trace property it
/// was sent with (it names this write's own record and nothing else), else its type's
/// unique property when it has a value for it; `None` when neither: it cannot be read
/// back.
pub fn read_by(row: &BatchRow, policy: &Policy) -> Option<String> {
    policy
        .trace_property
        .as_ref()
        .or(policy
            .unique_property
            .as_ref()
            .filter(|u| row.properties.get(*u).is_some_and(|v| !v.is_empty())))
        .cloned()
}

/// A transient failure: retried with back-off, the attempt counted. It gives the write
/// up only when both bounds are past: `max_attempts` attempts, and `give_up_after` since
/// its first transient failure, so an outage of HubSpot or the network shorter than that
/// fails nothing however many attempts it costs.
fn retry_or_fail(
    row: &BatchRow,
    error: String,
    retry_after: Option<Duration>,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    let attempts = row.attempts + 1;
    let failing_for = failing_for(row, at);
    plan.updates.push(
        if attempts >= policy.max_attempts && failing_for >= policy.give_up_after {
            RowUpdate::Failed {
                id: row.id,
                error: format!(
                    "gave up after {attempts} attempts over {}: {error}",
                    humantime::format_duration(Duration::from_secs(failing_for.as_secs()))
                ),
                count_attempt: true,
            }
        } else {
            RowUpdate::Retry {
                id: row.id,
                after: retry_after
                    .unwrap_or_default()
                    .max(policy.backoff.delay(attempts, at.jitter)),
                count_attempt: true,
                error: Some(error),
                split_to: None,
            }
        },
    );
}

/// How long the write has been failing transiently (zero if it has not).
fn failing_for(row: &BatchRow, at: Moment) -> Duration {
    row.first_failed_at
        .map(|first| (at.now - first).to_std().unwrap_or_default())
        .unwrap_or_default()
}

fn record_all(rows: &[BatchRow], d: &Detail, plan: &mut Plan) {
    for r in rows {
        plan.errors.push(ErrorRecord {
            trace_id: r.trace_id.clone(),
            attempt: r.attempts + 1,
            status: d.status,
            category: d.category.clone(),
            message: d.message.clone(),
            correlation_id: d.correlation_id.clone(),
            raw: d.raw.clone(),
        });
    }
}

/// `HTTP 400 VALIDATION_ERROR: message (correlation id ...)`: what `last_error` says.
fn last_error(d: &Detail) -> String {
    let status = if d.status == 0 {
        "no answer".to_owned()
    } else {
        format!("HTTP {}", d.status)
    };
    let mut text = match &d.category {
        Some(c) => format!("{status} {c}: {}", d.message),
        None => format!("{status}: {}", d.message),
    };
    if let Some(id) = &d.correlation_id {
        text.push_str(&format!(" (correlation id {id})"));
    }
    text
}

#[cfg(test)]
mod tests;
