//! Which rows go next, in which batch, and when: pure decisions, no I/O.
//!
//! - [`ready_types`]: which object types may send now (a full batch, or a partial one
//!   that has lingered long enough), in round-robin order after the last one served.
//! - [`choose_rows`]: which candidates form the batch (no two with the same unique value,
//!   at most the split cap).

use std::collections::HashSet;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::model::ClaimedRow;

/// An object type with due rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Due {
    pub object_type: String,
    pub count: usize,
    pub oldest_due_at: DateTime<Utc>,
}

/// What the scheduler can do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// These types may send now, in this order.
    Ready(Vec<String>),
    /// Nothing may send before this long has passed (a partial batch is lingering).
    WaitFor(Duration),
    /// Nothing is due.
    Nothing,
}

/// Types that may send now: a full batch goes at once; a partial one once its oldest row
/// has been due for `linger`. Round robin: the types after `last` come first, so a flood of
/// one type never starves another.
pub fn ready_types(
    due: &[Due],
    max_size: usize,
    linger: Duration,
    now: DateTime<Utc>,
    last: Option<&str>,
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
    ready.sort_by(|a, b| a.object_type.cmp(&b.object_type));
    let start = last.map_or(0, |last| {
        ready
            .iter()
            .position(|d| d.object_type.as_str() > last)
            .unwrap_or(0)
    });
    ready.rotate_left(start);
    Readiness::Ready(ready.into_iter().map(|d| d.object_type.clone()).collect())
}

/// Picks the batch from `candidates` (oldest first): at most `max_size`, at most the split
/// cap of the first candidate, and never two writes with the same value of the unique
/// property (HubSpot would reject the whole batch); the second waits for the next batch.
/// Candidates to be read back (the store offers them first) make a read batch instead:
/// one property per read, each value once.
pub fn choose_rows(candidates: &[ClaimedRow], max_size: usize, unique: Option<&str>) -> Vec<usize> {
    if let Some(read_by) = candidates.first().and_then(|r| r.read_by.as_deref()) {
        return choose_reads(candidates, max_size, read_by);
    }
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
        if let Some(value) = unique.and_then(|u| unique_value(row, u))
            && !seen.insert(value.to_lowercase())
        {
            continue;
        }
        chosen.push(i);
    }
    chosen
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
            Readiness::Ready(vec!["contacts".into()])
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
            Readiness::Ready(vec!["contacts".into()])
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
        let order = |last| match ready_types(&all, 100, LINGER, now, last) {
            Readiness::Ready(v) => v,
            other => panic!("{other:?}"),
        };
        assert_eq!(order(None), ["contacts", "deals", "tickets"]);
        assert_eq!(order(Some("contacts")), ["deals", "tickets", "contacts"]);
        assert_eq!(order(Some("tickets")), ["contacts", "deals", "tickets"]);
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
