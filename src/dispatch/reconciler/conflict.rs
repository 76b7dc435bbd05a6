//! A conflict answer (409 "already exists", or HubSpot's 400 "already has that value"
//! for a custom unique property) names at most the first conflicting record. Bisecting a
//! batch of 100 down to it costs up to a dozen requests per conflict; reading the batch
//! back costs one.

use std::time::Duration;

use super::{last_error, read_by, record_all, split};
use crate::hubspot::classify::Detail;
use crate::model::{BatchRow, OnConflict, Plan, Policy, RowUpdate};

/// A conflict (409 "already exists", or a 400 "already has that value" for a custom
/// unique property): HubSpot names at most the first conflicting record, so rather than
/// bisect the batch, every write that can be read back is (by its unique value or its
/// trace property: found ones are adopted or failed by `on_conflict`, the others sent
/// again in the next batch), each capped to half the batch in case the read explains
/// nothing (a conflict on a property the daemon does not know). A write alone in a batch
/// already capped to one is the conflict: adopted (409 with the existing id, under
/// `on_conflict = "adopt"` with a unique property) or failed. Rows that cannot be read
/// back are halved as before.
pub(super) fn conflict(
    rows: &[BatchRow],
    d: &Detail,
    existing_id: Option<&str>,
    policy: &Policy,
    plan: &mut Plan,
) {
    let half = rows.len().div_ceil(2);
    let isolated = rows.len() == 1 && rows[0].split_to == Some(1);
    if !isolated && rows.iter().any(|r| read_by(r, policy).is_some()) {
        record_all(rows, d, plan);
        for r in rows {
            plan.updates.push(match read_by(r, policy) {
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
