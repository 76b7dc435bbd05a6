//! A conflict answer (409 "already exists", or HubSpot's 400 "already has that value"
//! for a custom unique property) names at most the first conflicting record. Bisecting a
//! batch of 100 down to it costs up to a dozen requests per conflict; reading the batch
//! back costs one.

use std::time::Duration;

use super::{last_error, record_all, split};
use crate::hubspot::classify::Detail;
use crate::model::{BatchRow, OnConflict, Plan, Policy, RowUpdate};

/// A conflict (409 "already exists", or a 400 "already has that value" for a custom
/// unique property): HubSpot names at most the first conflicting record, so rather than
/// bisect the batch it is read back, where a read can explain the conflict:
/// - the conflict is on the trace property (HubSpot names it): a record of this batch
///   exists already (an earlier send whose answer was lost); every write is read back by
///   the trace property it was sent with;
/// - else every write with a value for the type's `unique_property` is read back by it
///   (found: adopted or failed by `on_conflict`, or its own record; missing: sent again);
///   the others go again, each capped to half the batch in case the read explains
///   nothing (a conflict on a property the daemon does not know).
///
/// With nothing to read by, the batch is halved as before. A write alone in a batch
/// already capped to one is the conflict: adopted (409 with the existing id, under
/// `on_conflict = "adopt"` with a unique property) or failed.
pub(super) fn conflict(
    rows: &[BatchRow],
    d: &Detail,
    existing_id: Option<&str>,
    policy: &Policy,
    plan: &mut Plan,
) {
    let half = rows.len().div_ceil(2);
    let isolated = rows.len() == 1 && rows[0].split_to == Some(1);
    let on_trace = policy
        .trace_property
        .as_deref()
        .filter(|t| d.message.contains(t));
    let read_by = |r: &BatchRow| match on_trace {
        Some(trace) => Some(trace.to_owned()),
        None => unique_read(r, policy),
    };
    if (on_trace.is_some() || !isolated) && rows.iter().any(|r| read_by(r).is_some()) {
        record_all(rows, d, plan);
        for r in rows {
            plan.updates.push(match read_by(r) {
                Some(read_by) => RowUpdate::Verify {
                    id: r.id,
                    read_by,
                    after: Duration::ZERO,
                    count_attempt: false,
                    error: Some(last_error(d)),
                    split_to: Some(half),
                },
                None => RowUpdate::Retry {
                    id: r.id,
                    after: Duration::ZERO,
                    count_attempt: false,
                    error: None,
                    split_to: Some(half),
                },
            });
        }
        return;
    }
    if rows.len() > 1 {
        record_all(rows, d, plan);
        split(rows, plan);
        return;
    }
    let row = &rows[0];
    record_all(rows, d, plan);
    let adopt = policy.on_conflict == OnConflict::Adopt && policy.unique_property.is_some();
    plan.updates.push(match (adopt, existing_id) {
        (true, Some(existing)) => RowUpdate::Succeeded {
            new_record: None,
            id: row.id,
            hubspot_id: existing.to_owned(),
            note: Some(format!(
                "already existed in HubSpot (409); adopted its id: {}",
                d.message
            )),
        },
        _ => RowUpdate::Failed {
            id: row.id,
            error: last_error(d),
            count_attempt: true,
        },
    });
}

/// The type's unique property, when the write has a value for it: a read by it finds the
/// record the write conflicts with, whoever made it.
fn unique_read(row: &BatchRow, policy: &Policy) -> Option<String> {
    policy
        .unique_property
        .as_ref()
        .filter(|u| row.properties.get(*u).is_some_and(|v| !v.is_empty()))
        .cloned()
}
