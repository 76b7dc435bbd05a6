//! What an answer to a batch upsert or update does to each write. Unlike a create, an
//! upsert or update is safe to send again: the same input twice leaves the record as once.
//! So an answer that leaves doubt (no answer, a 5xx, a result missing) is resent, never
//! read back or held; and a whole-batch refusal (a 409 or 400 for one input) is halved to
//! find that input without charging the others.

use std::collections::HashMap;
use std::time::Duration;

use super::{Moment, input_error, last_error, record_all, requeue_all, retry_or_fail, split};
use crate::hubspot::classify::{Answer, Detail};
use crate::hubspot::wire::{BatchResponse, CreatedObject};
use crate::model::{BatchRow, Pause, Plan, Policy, RowUpdate};

/// HubSpot's whole-batch 400 when `idProperty` is not a unique property: the lane cannot
/// work until that is fixed (in HubSpot, or in the writes).
const NON_UNIQUE: &str = "non-unique";

/// Decides the fate of every row of an upsert or update batch. `interval`: the window a
/// `TEN_SECONDLY_ROLLING` 429 waits out.
pub fn reconcile_record(
    rows: &[BatchRow],
    answer: &Answer,
    policy: &Policy,
    interval: Duration,
    at: Moment,
) -> Plan {
    let mut plan = Plan::default();
    match answer {
        Answer::Created(response) => answered(rows, response, policy, at, &mut plan),
        // No answer, a 5xx, a body that cannot be read: send them again.
        Answer::MalformedSuccess(d) => resend_all(rows, d, None, policy, at, &mut plan),
        Answer::Transient {
            detail,
            retry_after,
        } => resend_all(rows, detail, *retry_after, policy, at, &mut plan),
        Answer::Invalid(d) if d.message.contains(NON_UNIQUE) => {
            requeue_all(rows, d, &mut plan);
            plan.pause = Some(Pause::Lane {
                reason: format!(
                    "{}; fix the property (it must have unique values) or the writes (`retry --edit`)",
                    last_error(d)
                ),
            });
            return plan;
        }
        // One input spoils the batch (a 409 for a conflict on another unique property,
        // a 400 for an invalid one): halve it, charging no one, until it is alone.
        Answer::Invalid(d) | Answer::Conflict { detail: d, .. } if rows.len() > 1 => {
            record_all(rows, d, &mut plan);
            split(rows, &mut plan);
        }
        Answer::Invalid(d) | Answer::Conflict { detail: d, .. } => {
            record_all(rows, d, &mut plan);
            plan.updates.push(RowUpdate::Failed {
                id: rows[0].id,
                error: last_error(d),
                count_attempt: true,
            });
        }
        // Everything else means what it means for a create (nothing done, or done to
        // nothing: 401, 403, 429, 404, 413, an unknown object type).
        other => return super::reconcile(rows, other, policy, interval, at),
    }
    plan.pause = super::pause_for(answer, interval);
    plan
}

/// A 2xx: errors by trace id (else by the record key HubSpot names in `context.ids`),
/// results by trace id, else by the `idProperty` value echoed in `properties`, else (an
/// update by record id) by the record id; never by position. What is left is sent again.
fn answered(
    rows: &[BatchRow],
    response: &BatchResponse,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    let by_trace: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.trace_id.as_str(), i))
        .collect();
    let mut settled = vec![false; rows.len()];
    for error in &response.errors {
        let mut named: Vec<usize> = error
            .trace_ids()
            .iter()
            .filter_map(|t| by_trace.get(t.as_str()).copied())
            .collect();
        if named.is_empty() {
            for id in error.context_values("ids") {
                named.extend(rows.iter().enumerate().filter_map(|(i, r)| {
                    let key = r.record_key.as_deref()?;
                    key.eq_ignore_ascii_case(&id).then_some(i)
                }));
            }
        }
        for i in named {
            if std::mem::replace(&mut settled[i], true) {
                continue;
            }
            input_error(&rows[i], error, policy, at, plan);
        }
    }
    for result in &response.results {
        let Some(id) = result.id.clone() else {
            continue;
        };
        let Some(i) = owner(rows, &settled, &by_trace, result) else {
            continue;
        };
        settled[i] = true;
        let row = &rows[i];
        plan.updates.push(if row.pending_targets().is_empty() {
            RowUpdate::Succeeded {
                id: row.id,
                hubspot_id: id,
                note: None,
                new_record: result.new,
            }
        } else {
            RowUpdate::Recorded {
                id: row.id,
                hubspot_id: id,
                new_record: result.new,
            }
        });
    }
    let unaccounted: Vec<BatchRow> = rows
        .iter()
        .zip(&settled)
        .filter(|(_, done)| !**done)
        .map(|(r, _)| r.clone())
        .collect();
    if !unaccounted.is_empty() {
        let detail = Detail {
            status: 200,
            category: Some("UNACCOUNTED".into()),
            message: format!(
                "HubSpot's answer named neither a result nor an error for {} of {} inputs; sent again",
                unaccounted.len(),
                rows.len()
            ),
            correlation_id: None,
            raw: String::new(),
        };
        resend_all(&unaccounted, &detail, None, policy, at, plan);
    }
}

/// The one row a result belongs to, among those not yet settled.
fn owner(
    rows: &[BatchRow],
    settled: &[bool],
    by_trace: &HashMap<&str, usize>,
    result: &CreatedObject,
) -> Option<usize> {
    if let Some(&i) = result
        .object_write_trace_id
        .as_deref()
        .and_then(|t| by_trace.get(t))
    {
        return (!settled[i]).then_some(i);
    }
    let mut hits = rows.iter().enumerate().filter(|(i, r)| {
        !settled[*i]
            && r.record_key
                .as_deref()
                .is_some_and(|key| match &r.id_property {
                    Some(p) => result
                        .properties
                        .get(p)
                        .and_then(|v| v.as_str())
                        .is_some_and(|v| v.eq_ignore_ascii_case(key)),
                    None => result.id.as_deref() == Some(key),
                })
    });
    let first = hits.next()?.0;
    hits.next().is_none().then_some(first)
}

/// Doubt about whether HubSpot applied them, where sending again is safe (an upsert, an
/// update, an association): they are sent again with back-off, the attempt counted,
/// until the retry budget gives them up.
pub(super) fn resend_all(
    rows: &[BatchRow],
    d: &Detail,
    retry_after: Option<Duration>,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    record_all(rows, d, plan);
    for r in rows {
        retry_or_fail(r, last_error(d), retry_after, policy, at, plan);
    }
}
