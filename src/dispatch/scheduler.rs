//! Which rows go next, in which batch, and when: pure decisions, no I/O.
//!
//! - [`ready_types`]: which lanes of which object types may send now (a full batch, or a
//!   partial one that has lingered long enough), in round-robin order after the last one
//!   served.
//! - [`choose_rows`]: which candidates form the batch (no two with the same unique value
//!   or record, at most the split cap; associations: one target type, at most 100 pairs).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::{ClaimedRow, Operation};

/// A lane of an object type with due rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub object_type: String,
    /// `outbox.lane`: `create`, `upsert:PROP`, `update:`, `update:PROP`, `associations`.
    pub lane: String,
    pub count: usize,
    pub oldest_due_at: DateTime<Utc>,
}

/// What the scheduler can do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// These (object type, lane) pairs may send now, in this order.
    Ready(Vec<(String, String)>),
    /// Nothing may send before this long has passed (a partial batch is lingering).
    WaitFor(Duration),
    /// Nothing is due.
    Nothing,
}

/// Lanes that may send now: a full batch goes at once; a partial one once its oldest row
/// has been due for `linger`. Round robin: the (type, lane) pairs after `last` come first,
/// so a flood of one never starves another.
pub fn ready_types(
    due: &[Due],
    max_size: usize,
    linger: Duration,
    now: DateTime<Utc>,
    last: Option<(&str, &str)>,
) -> Readiness {
    let mut ready: Vec<&Due> = Vec::new();
    let mut wait: Option<Duration> = None;
    for d in due {
        let waited = (now - d.oldest_due_at).to_std().unwrap_or_default();
        if d.count >= max_size || waited >= linger {
            ready.push(d);
        } else {
            let left = linger - waited;
            wait = Some(wait.map_or(left, |w| w.min(left)));
        }
    }
    if ready.is_empty() {
        return wait.map_or(Readiness::Nothing, Readiness::WaitFor);
    }
    ready.sort_by(|a, b| (&a.object_type, &a.lane).cmp(&(&b.object_type, &b.lane)));
    let start = last.map_or(0, |last| {
        ready
            .iter()
            .position(|d| (d.object_type.as_str(), d.lane.as_str()) > last)
            .unwrap_or(0)
    });
    ready.rotate_left(start);
    Readiness::Ready(
        ready
            .into_iter()
            .map(|d| (d.object_type.clone(), d.lane.clone()))
            .collect(),
    )
}

/// Picks the batch from `candidates` (oldest first): at most `max_size`, at most the split
/// cap of the first candidate, and never two writes with the same value of the unique
/// property (HubSpot would reject the whole batch); the second waits for the next batch.
/// Candidates to be read back (the store offers them first) make a read batch instead:
/// one property per read, each value once.
///
/// Upserts and updates: never two naming the same record (HubSpot refuses the whole
/// request with "Duplicate IDs found in batch input"). Associations: see
/// [`choose_associations`].
pub fn choose_rows(candidates: &[ClaimedRow], max_size: usize, unique: Option<&str>) -> Vec<usize> {
    let Some(first) = candidates.first() else {
        return Vec::new();
    };
    if let Some(read_by) = first.read_by.as_deref() {
        return choose_reads(candidates, max_size, read_by);
    }
    if first.associating {
        return choose_associations(candidates, max_size);
    }
    let unique = match first.operation {
        Operation::Create => unique,
        _ => None,
    };
    let cap = candidates
        .first()
        .and_then(|r| r.split_to)
        .map_or(max_size, |s| (s.max(1) as usize).min(max_size));
    let mut seen: HashSet<String> = HashSet::new();
    let mut chosen = Vec::with_capacity(cap);
    for (i, row) in candidates.iter().enumerate() {
        if chosen.len() == cap {
            break;
        }
        let key = match row.operation {
            Operation::Create => unique.and_then(|u| unique_value(row, u)),
            _ => row.record_key.clone(),
        };
        if let Some(value) = key
            && !seen.insert(value.to_lowercase())
        {
            continue;
        }
        chosen.push(i);
    }
    chosen
}

/// An associations batch: one request per (from, to) type pair, so the rows with an
/// association still to create to the first row's first pending target type, up to
/// `max_size` pairs in all (a write's associations to that type go in one request; the
/// validation caps them at 100). A first row with nothing pending (never left so by the
/// reconciler) goes alone, and is settled without a request.
pub fn choose_associations(candidates: &[ClaimedRow], max_size: usize) -> Vec<usize> {
    let Some(target) = candidates
        .first()
        .and_then(|r| r.pending_targets().into_iter().next())
    else {
        return vec![0];
    };
    let mut pairs = 0;
    let mut chosen = Vec::new();
    for (i, row) in candidates.iter().enumerate() {
        if !row.pending_targets().contains(&target) {
            continue;
        }
        let n = pairs_to(row, &target);
        if pairs + n > max_size && !chosen.is_empty() {
            break;
        }
        pairs += n;
        chosen.push(i);
    }
    chosen
}

/// The target type an associations batch creates associations to: its first row's
/// first pending one (the choice [`choose_associations`] made).
pub fn association_target(rows: &[ClaimedRow]) -> Option<String> {
    rows.first()?.pending_targets().into_iter().next()
}

/// How many association pairs a row has to `target`.
fn pairs_to(row: &ClaimedRow, target: &str) -> usize {
    let associations: Vec<crate::model::Association> =
        serde_json::from_str(&row.associations).unwrap_or_default();
    associations
        .iter()
        .filter(|a| {
            a.to_object_type
                .as_ref()
                .is_some_and(|t| t.as_str() == target)
        })
        .count()
}

/// A read batch: up to `max_size` rows read back by the same property as the first, each
/// value once (a second write with the same value waits for the next read).
fn choose_reads(candidates: &[ClaimedRow], max_size: usize, read_by: &str) -> Vec<usize> {
    let mut seen: HashSet<String> = HashSet::new();
    candidates
        .iter()
        .enumerate()
        .filter(|(_, r)| r.read_by.as_deref() == Some(read_by))
        .filter(|(_, r)| {
            let value = unique_value(r, read_by).unwrap_or_else(|| r.trace_id.clone());
            seen.insert(value.to_lowercase())
        })
        .map(|(i, _)| i)
        .take(max_size)
        .collect()
}

/// The row's value of the unique property, if it has one.
fn unique_value(row: &ClaimedRow, property: &str) -> Option<String> {
    let props: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&row.properties).ok()?;
    props
        .get(property)?
        .as_str()
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn due(object_type: &str, count: usize, oldest: &str) -> Due {
        Due {
            object_type: object_type.into(),
            lane: "create".into(),
            count,
            oldest_due_at: t(oldest),
        }
    }

    fn row(id: i64, email: &str, split_to: Option<i64>) -> ClaimedRow {
        ClaimedRow {
            id,
            trace_id: format!("t{id}"),
            properties: format!(r#"{{"email":"{email}"}}"#),
            associations: "[]".into(),
            attempts: 0,
            split_to,
            first_failed_at: None,
            read_by: None,
            sent_with: None,
            last_error: None,
            ..Default::default()
        }
    }

    const LINGER: Duration = Duration::from_millis(200);

    #[test]
    fn a_full_batch_goes_at_once_and_a_partial_one_after_linger() {
        let now = t("2026-11-29T12:00:00.100Z");
        assert_eq!(
            ready_types(
                &[due("contacts", 100, "2026-11-29T12:00:00.050Z")],
                100,
                LINGER,
                now,
                None
            ),
            Readiness::Ready(vec![("contacts".into(), "create".into())])
        );
        assert_eq!(
            ready_types(
                &[due("contacts", 3, "2026-11-29T12:00:00.050Z")],
                100,
                LINGER,
                now,
                None
            ),
            Readiness::WaitFor(Duration::from_millis(150))
        );
        assert_eq!(
            ready_types(
                &[due("contacts", 3, "2026-11-29T11:59:59.000Z")],
                100,
                LINGER,
                now,
                None
            ),
            Readiness::Ready(vec![("contacts".into(), "create".into())])
        );
        assert_eq!(ready_types(&[], 100, LINGER, now, None), Readiness::Nothing);
    }

    #[test]
    fn types_take_turns_after_the_last_one_served() {
        let now = t("2026-11-29T12:00:00Z");
        let all = [
            due("contacts", 5000, "2026-11-29T11:00:00Z"),
            due("deals", 1, "2026-11-29T11:00:00Z"),
            due("tickets", 1, "2026-11-29T11:00:00Z"),
        ];
        let order = |last: Option<&str>| match ready_types(
            &all,
            100,
            LINGER,
            now,
            last.map(|t| (t, "create")),
        ) {
            Readiness::Ready(v) => v.into_iter().map(|(t, _)| t).collect::<Vec<_>>(),
            other => panic!("{other:?}"),
        };
        assert_eq!(order(None), ["contacts", "deals", "tickets"]);
        assert_eq!(order(Some("contacts")), ["deals", "tickets", "contacts"]);
        assert_eq!(order(Some("tickets")), ["contacts", "deals", "tickets"]);
    }

    #[test]
    fn lanes_of_one_type_take_turns_too() {
        let now = t("2026-11-29T12:00:00Z");
        let mut upserts = due("contacts", 5000, "2026-11-29T11:00:00Z");
        upserts.lane = "upsert:email".into();
        let all = [due("contacts", 5000, "2026-11-29T11:00:00Z"), upserts];
        let Readiness::Ready(order) =
            ready_types(&all, 100, LINGER, now, Some(("contacts", "create")))
        else {
            panic!()
        };
        assert_eq!(order[0], ("contacts".into(), "upsert:email".into()));
    }

    fn upsert(id: i64, key: &str) -> ClaimedRow {
        ClaimedRow {
            operation: Operation::Upsert,
            id_property: Some("email".into()),
            record_key: Some(key.into()),
            ..row(id, "", None)
        }
    }

    #[test]
    fn two_writes_to_one_record_never_share_a_batch() {
        let rows = [
            upsert(1, "a@x.com"),
            upsert(2, "A@x.com"),
            upsert(3, "b@x.com"),
        ];
        assert_eq!(choose_rows(&rows, 100, Some("email")), [0, 2]);
    }

    #[test]
    fn an_associations_batch_holds_one_target_type_and_at_most_max_pairs() {
        let assoc = |to: &str, n: usize| {
            let items: Vec<String> = (0..n)
                .map(|i| {
                    format!(
                        r#"{{"to":{{"id":"{i}"}},"toObjectType":"{to}","types":[{{"associationCategory":"USER_DEFINED","associationTypeId":9}}]}}"#
                    )
                })
                .collect();
            format!("[{}]", items.join(","))
        };
        let at = |id: i64, associations: String, done: Option<&str>| ClaimedRow {
            associating: true,
            hubspot_id: Some(format!("h{id}")),
            associations,
            associations_done: done.map(str::to_owned),
            ..upsert(id, &format!("{id}@x"))
        };
        let rows = [
            at(1, assoc("companies", 2), None),
            at(2, assoc("deals", 1), None),
            at(3, assoc("companies", 3), None),
            at(4, assoc("companies", 1), Some(r#"["companies"]"#)),
        ];
        assert_eq!(choose_associations(&rows, 100), [0, 2]);
        assert_eq!(association_target(&rows).as_deref(), Some("companies"));
        // 2 + 3 pairs do not fit in 4: the second waits.
        assert_eq!(choose_associations(&rows, 4), [0]);
        assert_eq!(choose_associations(&rows[3..], 100), [0]);
        assert_eq!(association_target(&rows[3..]), None);
    }

    #[test]
    fn two_writes_with_the_same_unique_value_never_share_a_batch() {
        let rows = [
            row(1, "a@x.com", None),
            row(2, "A@X.com", None),
            row(3, "b@x.com", None),
            row(4, "", None),
        ];
        assert_eq!(choose_rows(&rows, 100, Some("email")), [0, 2, 3]);
        assert_eq!(choose_rows(&rows, 100, None), [0, 1, 2, 3]);
        assert_eq!(choose_rows(&rows, 2, Some("email")), [0, 2]);
    }

    #[test]
    fn a_split_cap_limits_the_batch() {
        let rows: Vec<ClaimedRow> = (0..10)
            .map(|i| row(i, &format!("{i}@x"), Some(3)))
            .collect();
        assert_eq!(choose_rows(&rows, 100, None).len(), 3);
        assert_eq!(choose_rows(&rows[..0], 100, None).len(), 0);
    }

    #[test]
    fn a_read_batch_holds_one_property_and_each_value_once_and_ignores_split_caps() {
        let read = |id, email: &str, by: &str| ClaimedRow {
            read_by: Some(by.into()),
            ..row(id, email, Some(1))
        };
        let rows = [
            read(1, "a@x.com", "email"),
            read(2, "A@x.com", "email"),
            read(3, "", "email"),
            read(4, "c@x.com", "trace"),
            read(5, "d@x.com", "email"),
        ];
        assert_eq!(choose_rows(&rows, 100, Some("email")), [0, 2, 4]);
        assert_eq!(choose_rows(&rows, 2, Some("email")), [0, 2]);
        assert_eq!(choose_rows(&rows[3..], 100, Some("email")), [0]);
    }
}
