//! What an answer to a v4 associations batch (`.../batch/create` from one object type to
//! another) does to each write at its associations step. Creating an association that
//! exists changes nothing, so doubt is resolved by sending again; a pair HubSpot refuses
//! fails its write with an error naming the association, once the write is alone in its
//! batch (halving, as for creates, so one bad pair charges no one else).

use std::collections::HashSet;
use std::time::Duration;

use super::record::resend_all;
use super::{Moment, last_error, record_all, split};
use crate::hubspot::classify::{Answer, Detail};
use crate::hubspot::wire::BatchResponse;
use crate::model::{BatchRow, Plan, Policy, RowUpdate};

/// Decides the fate of every row of an associations batch to `target` (`None`: the
/// rows had nothing left to associate, and no request was sent).
pub fn reconcile_associations(
    rows: &[BatchRow],
    target: Option<&str>,
    answer: &Answer,
    policy: &Policy,
    interval: Duration,
    at: Moment,
) -> Plan {
    let mut plan = Plan::default();
    let Some(target) = target else {
        for r in rows {
            plan.updates.push(finished(r));
        }
        return plan;
    };
    match answer {
        Answer::Created(response) => answered(rows, target, response, policy, at, &mut plan),
        Answer::MalformedSuccess(d) => resend_all(rows, d, None, policy, at, &mut plan),
        Answer::Transient {
            detail,
            retry_after,
        } => resend_all(rows, detail, *retry_after, policy, at, &mut plan),
        // The request names a pair HubSpot refuses (a wrong `toObjectType` gives an
        // unknown type or a 404 for the path; a wrong label a 400): halve, then fail the
        // write alone, naming its associations to `target`.
        Answer::Invalid(d)
        | Answer::Conflict { detail: d, .. }
        | Answer::UnknownObjectType(d)
        | Answer::Rejected(d)
            if d.status != 413 || rows.len() > 1 =>
        {
            refused(rows, target, d, &mut plan);
            // A wrong target type is the write's fault, not its object type's: no pause.
            return plan;
        }
        other => {
            // 401, 403, 429, a request that never left: nothing was done; as for a create.
            return super::reconcile(rows, other, policy, interval, at);
        }
    }
    plan.pause = super::pause_for(answer, interval);
    plan
}

/// A 2xx: a row whose every pair to `target` is among the results is done with that
/// target; a row HubSpot named no result for is refused (when `errors[]` says why) or
/// sent again (when nothing does).
fn answered(
    rows: &[BatchRow],
    target: &str,
    response: &BatchResponse,
    policy: &Policy,
    at: Moment,
    plan: &mut Plan,
) {
    let made: HashSet<(&str, &str)> = response
        .results
        .iter()
        .filter_map(|r| Some((r.from_object_id.as_deref()?, r.to_object_id.as_deref()?)))
        .collect();
    let mut missing = Vec::new();
    for r in rows {
        let from = r.hubspot_id.as_deref().unwrap_or_default();
        let all = pairs(r, target)
            .iter()
            .all(|(_, to)| made.contains(&(from, to.as_str())));
        if all {
            plan.updates.push(progress(r, target));
        } else {
            missing.push(r.clone());
        }
    }
    if missing.is_empty() {
        return;
    }
    match response.errors.first() {
        Some(error) => {
            let detail = Detail {
                status: 207,
                category: error.category.clone(),
                message: error
                    .message
                    .clone()
                    .unwrap_or_else(|| "HubSpot reported an error with no message".into()),
                correlation_id: None,
                raw: error.raw.to_string(),
            };
            refused(&missing, target, &detail, plan);
        }
        None => {
            let detail = Detail {
                status: 200,
                category: Some("UNACCOUNTED".into()),
                message: format!(
                    "HubSpot's answer did not list every association to {target} of {} writes; sent again",
                    missing.len()
                ),
                correlation_id: None,
                raw: String::new(),
            };
            resend_all(&missing, &detail, None, policy, at, plan);
        }
    }
}

/// HubSpot refused pairs of these rows: halve the batch (no attempt counted) until a
/// row is alone, then fail it with the error, naming its associations to `target`.
fn refused(rows: &[BatchRow], target: &str, d: &Detail, plan: &mut Plan) {
    record_all(rows, d, plan);
    if rows.len() > 1 {
        split(rows, plan);
        return;
    }
    let row = &rows[0];
    let named: Vec<String> = pairs(row, target)
        .iter()
        .map(|(i, to)| format!("associations[{i}] (to {target} {to})"))
        .collect();
    plan.updates.push(RowUpdate::Failed {
        id: row.id,
        error: format!(
            "its record {} is done, but HubSpot refused {}: {}",
            row.hubspot_id.as_deref().unwrap_or("?"),
            named.join(", "),
            last_error(d)
        ),
        count_attempt: true,
    });
}

/// The row's associations to `target`: (index in `associations`, target record id).
fn pairs(row: &BatchRow, target: &str) -> Vec<(usize, String)> {
    row.associations
        .iter()
        .enumerate()
        .filter(|(_, a)| {
            a.to_object_type
                .as_ref()
                .is_some_and(|t| t.as_str() == target)
        })
        .map(|(i, a)| (i, a.to.record_id().unwrap_or_default().to_owned()))
        .collect()
}

/// `target` is done for the row: succeeded when nothing else is pending.
fn progress(row: &BatchRow, target: &str) -> RowUpdate {
    let mut done = row.associations_done.clone();
    done.push(target.to_owned());
    let left = crate::model::batch::pending_targets(&row.associations, &done);
    if left.is_empty() {
        finished(row)
    } else {
        RowUpdate::Associated { id: row.id, done }
    }
}

/// Record and associations done.
fn finished(row: &BatchRow) -> RowUpdate {
    RowUpdate::Succeeded {
        id: row.id,
        hubspot_id: row.hubspot_id.clone().unwrap_or_default(),
        note: None,
        new_record: None,
    }
}
