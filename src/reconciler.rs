//! What a HubSpot answer does to each write of the batch, as a pure function from
//! (batch, [`Answer`], policies) to a [`Plan`] of row updates, error-history entries and
//! sending pauses. Applying the plan is one store call (not written yet).
//!
//! Results are mapped to inputs by `objectWriteTraceId` when HubSpot echoes it, else by the
//! object type's unique property, else by matching returned property values; never by
//! position, since HubSpot does not keep the input order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use crate::hubspot::classify::{Answer, Detail, RatePolicy};
use crate::hubspot::wire::{BatchResponse, CreatedObject};
pub use crate::model::{OnAmbiguous, OnConflict};
use crate::retry::Backoff;

/// One write of the batch as it was sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub id: i64,
    pub trace_id: String,
    /// Attempts counted before this one.
    pub attempts: u32,
    pub properties: BTreeMap<String, String>,
}

/// The rules for one object type and the retry budget.
#[derive(Debug, Clone)]
pub struct Policy {
    pub unique_property: Option<String>,
    pub on_conflict: OnConflict,
    pub on_ambiguous: OnAmbiguous,
    pub max_attempts: u32,
    pub backoff: Backoff,
}

/// The new state of one row.
#[derive(Debug, Clone, PartialEq)]
pub enum RowUpdate {
    Succeeded {
        id: i64,
        hubspot_id: String,
        /// Set when the id was adopted from a conflict rather than created now.
        note: Option<String>,
    },
    Failed {
        id: i64,
        error: String,
        count_attempt: bool,
    },
    /// Back to `pending`, sendable after `after`.
    Retry {
        id: i64,
        after: Duration,
        count_attempt: bool,
        error: Option<String>,
        /// Largest batch this row may go in next (halving to find a bad input).
        split_to: Option<usize>,
    },
    /// Parked as `unconfirmed`: never resent without an operator.
    Hold { id: i64, error: String },
}

/// One entry for the error history table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    pub trace_id: String,
    /// The attempt this error belongs to (attempts before it + 1).
    pub attempt: u32,
    pub status: u16,
    pub category: Option<String>,
    pub message: String,
    pub correlation_id: Option<String>,
    pub raw: String,
}

/// A pause of sending that the answer calls for.
#[derive(Debug, Clone, PartialEq)]
pub enum Pause {
    /// All sending waits this long (429 windows, `Retry-After`).
    All { wait: Duration, reason: String },
    /// All sending waits until the daily limit resets.
    UntilDailyReset { reason: String },
    /// The token is refused: probe with single requests until it works.
    Unauthorized { reason: String },
    /// This object type may not be written: probe it alone until it works.
    ObjectType { reason: String },
    /// The object type does not exist: every queued row of it fails with this error.
    FailObjectType { error: String },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Plan {
    pub updates: Vec<RowUpdate>,
    pub errors: Vec<ErrorRecord>,
    pub pause: Option<Pause>,
}

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

/// Decides the fate of every row of the batch. `interval` is the rate-limit window a
/// `TEN_SECONDLY_ROLLING` 429 waits out; `jitter` in `[0, 1)` spreads retries.
pub fn reconcile(
    rows: &[BatchRow],
    answer: &Answer,
    policy: &Policy,
    interval: Duration,
    jitter: f64,
) -> Plan {
    let mut plan = Plan::default();
    match answer {
        Answer::Created(response) => created(rows, response, policy, jitter, &mut plan),
        Answer::MalformedSuccess(d) => ambiguous_all(rows, d, policy, None, jitter, &mut plan),
        Answer::Transient {
            detail,
            retry_after,
        } => ambiguous_all(rows, detail, policy, *retry_after, jitter, &mut plan),
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
            plan.pause = Some(Pause::FailObjectType {
                error: last_error(d),
            });
        }
        Answer::Conflict {
            detail,
            existing_id,
        } => conflict(rows, detail, existing_id.as_deref(), policy, &mut plan),
        Answer::Unauthorized(d) => {
            requeue_all(rows, d, &mut plan);
            plan.pause = Some(Pause::Unauthorized {
                reason: last_error(d),
            });
        }
        Answer::Forbidden(d) => {
            requeue_all(rows, d, &mut plan);
            plan.pause = Some(Pause::ObjectType {
                reason: last_error(d),
            });
        }
        Answer::RateLimited {
            detail,
            policy: rate,
            retry_after,
        } => {
            requeue_all(rows, detail, &mut plan);
            let reason = last_error(detail);
            plan.pause = Some(match (rate, retry_after) {
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
            });
        }
    }
    plan
}

/// A 2xx: results by trace id / unique value / property values, errors by trace id, and
/// whatever is left unaccounted for is ambiguous.
fn created(
    rows: &[BatchRow],
    response: &BatchResponse,
    policy: &Policy,
    jitter: f64,
    plan: &mut Plan,
) {
    let matched = match_results(rows, &response.results, policy.unique_property.as_deref());
    let by_trace: HashMap<&str, &BatchRow> =
        rows.iter().map(|r| (r.trace_id.as_str(), r)).collect();
    let mut settled: HashSet<i64> = HashSet::new();
    for (row_index, hubspot_id) in matched {
        let row = &rows[row_index];
        settled.insert(row.id);
        plan.updates.push(RowUpdate::Succeeded {
            id: row.id,
            hubspot_id,
            note: None,
        });
    }
    for error in &response.errors {
        let category = error.category.clone();
        let message = error
            .message
            .clone()
            .unwrap_or_else(|| "HubSpot reported an error with no message".into());
        let transient = category
            .as_deref()
            .is_some_and(|c| TRANSIENT_CATEGORIES.contains(&c));
        for trace in error.trace_ids() {
            let Some(row) = by_trace.get(trace.as_str()) else {
                continue;
            };
            if !settled.insert(row.id) {
                continue;
            }
            plan.errors.push(ErrorRecord {
                trace_id: row.trace_id.clone(),
                attempt: row.attempts + 1,
                status: 207,
                category: category.clone(),
                message: message.clone(),
                correlation_id: None,
                raw: error.raw.to_string(),
            });
            let text = format!("{}: {message}", category.as_deref().unwrap_or("ERROR"));
            if transient {
                retry_or_fail(row, text, None, policy, jitter, plan);
            } else {
                plan.updates.push(RowUpdate::Failed {
                    id: row.id,
                    error: text,
                    count_attempt: true,
                });
            }
        }
    }
    let unaccounted: Vec<BatchRow> = rows
        .iter()
        .filter(|r| !settled.contains(&r.id))
        .cloned()
        .collect();
    if !unaccounted.is_empty() {
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
        ambiguous_all(&unaccounted, &detail, policy, None, jitter, plan);
    }
}

/// Maps results to row indexes: trace id first, then the unique property, then property
/// values; rows that cannot be told apart are interchangeable.
pub fn match_results(
    rows: &[BatchRow],
    results: &[CreatedObject],
    unique: Option<&str>,
) -> Vec<(usize, String)> {
    let mut taken = vec![false; rows.len()];
    let mut out = Vec::new();
    let mut leftovers = Vec::new();
    let by_trace: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.trace_id.as_str(), i))
        .collect();
    for result in results {
        let Some(id) = result.id.clone() else {
            continue;
        };
        match result
            .object_write_trace_id
            .as_deref()
            .and_then(|t| by_trace.get(t))
        {
            Some(&i) if !taken[i] => {
                taken[i] = true;
                out.push((i, id));
            }
            _ => leftovers.push((result, id)),
        }
    }
    for (result, id) in leftovers {
        let value = |name: &str| result.properties.get(name).and_then(|v| v.as_str());
        let found = match unique {
            Some(u) if value(u).is_some() => rows.iter().enumerate().position(|(i, r)| {
                !taken[i]
                    && r.properties
                        .get(u)
                        .map(String::as_str)
                        .zip(value(u))
                        .is_some_and(|(a, b)| a.eq_ignore_ascii_case(b))
            }),
            _ => rows.iter().enumerate().position(|(i, r)| {
                !taken[i] && {
                    let compared: Vec<bool> = r
                        .properties
                        .iter()
                        .filter_map(|(k, v)| value(k).map(|got| got == v))
                        .collect();
                    !compared.is_empty() && compared.iter().all(|same| *same)
                }
            }),
        };
        if let Some(i) = found {
            taken[i] = true;
            out.push((i, id));
        }
    }
    out
}

/// 409: adopt or fail the identified write and requeue the rest at once; if none can be
/// identified, split.
fn conflict(
    rows: &[BatchRow],
    d: &Detail,
    existing_id: Option<&str>,
    policy: &Policy,
    plan: &mut Plan,
) {
    let culprit = if rows.len() == 1 {
        Some(0)
    } else {
        policy.unique_property.as_deref().and_then(|u| {
            let message = d.message.to_ascii_lowercase();
            let hits: Vec<usize> = rows
                .iter()
                .enumerate()
                .filter(|(_, r)| {
                    r.properties
                        .get(u)
                        .is_some_and(|v| !v.is_empty() && message.contains(&v.to_ascii_lowercase()))
                })
                .map(|(i, _)| i)
                .collect();
            (hits.len() == 1).then(|| hits[0])
        })
    };
    let Some(culprit) = culprit else {
        record_all(rows, d, plan);
        split(rows, plan);
        return;
    };
    let row = &rows[culprit];
    record_all(std::slice::from_ref(row), d, plan);
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
    for (i, r) in rows.iter().enumerate() {
        if i != culprit {
            plan.updates.push(RowUpdate::Retry {
                id: r.id,
                after: Duration::ZERO,
                count_attempt: false,
                error: None,
                split_to: None,
            });
        }
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

/// HubSpot may have created these: hold them, or resend them (counting the attempt) until
/// the budget runs out.
fn ambiguous_all(
    rows: &[BatchRow],
    d: &Detail,
    policy: &Policy,
    retry_after: Option<Duration>,
    jitter: f64,
    plan: &mut Plan,
) {
    record_all(rows, d, plan);
    let hold = policy.unique_property.is_none() && policy.on_ambiguous == OnAmbiguous::Hold;
    for r in rows {
        if hold {
            plan.updates.push(RowUpdate::Hold {
                id: r.id,
                error: format!(
                    "unconfirmed: HubSpot may have created it ({})",
                    last_error(d)
                ),
            });
        } else {
            retry_or_fail(r, last_error(d), retry_after, policy, jitter, plan);
        }
    }
}

fn retry_or_fail(
    row: &BatchRow,
    error: String,
    retry_after: Option<Duration>,
    policy: &Policy,
    jitter: f64,
    plan: &mut Plan,
) {
    let attempts = row.attempts + 1;
    plan.updates.push(if attempts >= policy.max_attempts {
        RowUpdate::Failed {
            id: row.id,
            error: format!("gave up after {attempts} attempts: {error}"),
            count_attempt: true,
        }
    } else {
        RowUpdate::Retry {
            id: row.id,
            after: retry_after
                .unwrap_or_default()
                .max(policy.backoff.delay(attempts, jitter)),
            count_attempt: true,
            error: Some(error),
            split_to: None,
        }
    });
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
mod tests {
    use super::*;
    use crate::hubspot::classify::classify;

    macro_rules! fixture {
        ($name:literal) => {
            include_bytes!(concat!("../tests/fixtures/hubspot/", $name))
        };
    }

    fn row(id: i64, trace: &str, email: &str, firstname: &str) -> BatchRow {
        BatchRow {
            id,
            trace_id: trace.into(),
            attempts: 0,
            properties: [
                ("email".to_owned(), email.to_owned()),
                ("firstname".to_owned(), firstname.to_owned()),
            ]
            .into_iter()
            .collect(),
        }
    }

    fn policy(unique: Option<&str>, on_ambiguous: OnAmbiguous) -> Policy {
        Policy {
            unique_property: unique.map(str::to_owned),
            on_conflict: OnConflict::Adopt,
            on_ambiguous,
            max_attempts: 3,
            backoff: Backoff {
                initial: Duration::from_secs(2),
                max: Duration::from_secs(600),
            },
        }
    }

    const TEN: Duration = Duration::from_secs(10);

    fn run(rows: &[BatchRow], status: u16, body: &[u8], p: &Policy) -> Plan {
        reconcile(rows, &classify(status, None, body), p, TEN, 0.0)
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
                    id: 2,
                    hubspot_id: "512".into(),
                    note: None
                },
                RowUpdate::Succeeded {
                    id: 1,
                    hubspot_id: "511".into(),
                    note: None
                },
            ]
        );
    }

    #[test]
    fn without_echoed_trace_ids_results_match_by_unique_property_or_by_values() {
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
        // By values, `A@example.com` is not HubSpot's `a@example.com`: only Bea matches, and
        // Ann, accounted for by nothing, is ambiguous (resent, attempt counted).
        let plan = run(
            &rows,
            201,
            fixture!("201_no_trace_ids.json"),
            &policy(None, OnAmbiguous::Resend),
        );
        assert_eq!(succeeded(&plan), [(2, "902".to_owned())]);
        assert!(
            matches!(
                plan.updates[1],
                RowUpdate::Retry {
                    id: 1,
                    count_attempt: true,
                    ..
                }
            ),
            "{:?}",
            plan.updates
        );
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
        assert_eq!(
            plan.updates[0],
            RowUpdate::Succeeded {
                id: 1,
                hubspot_id: "701".into(),
                note: None
            }
        );
        let RowUpdate::Failed {
            id: 2,
            error,
            count_attempt: true,
        } = &plan.updates[1]
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
                RowUpdate::Retry {
                    count_attempt: true,
                    ..
                }
            )),
            "a unique property makes resending safe: {:?}",
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
    fn a_409_adopts_the_identified_write_and_requeues_the_rest_uncounted() {
        let rows = [row(1, "t-1", "a@example.com", "Ann")];
        let plan = run(
            &rows,
            409,
            fixture!("409_object_already_exists.json"),
            &policy(Some("email"), OnAmbiguous::Resend),
        );
        let RowUpdate::Succeeded {
            hubspot_id,
            note: Some(note),
            ..
        } = &plan.updates[0]
        else {
            panic!()
        };
        assert_eq!(hubspot_id, "12345");
        assert!(note.contains("already existed"));

        let mut fail = policy(Some("email"), OnAmbiguous::Resend);
        fail.on_conflict = OnConflict::Fail;
        let plan = run(
            &rows,
            409,
            fixture!("409_object_already_exists.json"),
            &fail,
        );
        assert!(matches!(plan.updates[0], RowUpdate::Failed { .. }));

        // Named by value in the message: identified inside a larger batch.
        let rows = [
            row(1, "t-1", "a@example.com", "Ann"),
            row(2, "t-2", "b@example.com", "Bea"),
        ];
        let body = br#"{"status":"error","message":"A contact with email b@example.com already exists. Existing ID: 77","category":"OBJECT_ALREADY_EXISTS"}"#;
        let plan = run(
            &rows,
            409,
            body,
            &policy(Some("email"), OnAmbiguous::Resend),
        );
        assert!(
            matches!(&plan.updates[0], RowUpdate::Succeeded { id: 2, hubspot_id, note: Some(_) } if hubspot_id == "77")
        );
        assert!(matches!(
            plan.updates[1],
            RowUpdate::Retry {
                id: 1,
                count_attempt: false,
                ..
            }
        ));

        // Not identifiable: split.
        let plan = run(
            &rows,
            409,
            fixture!("409_object_already_exists.json"),
            &policy(Some("email"), OnAmbiguous::Resend),
        );
        assert!(plan.updates.iter().all(|u| matches!(
            u,
            RowUpdate::Retry {
                split_to: Some(1),
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
            0.0,
        );
        assert!(
            matches!(plan.pause, Some(Pause::All { wait, .. }) if wait == Duration::from_secs(42))
        );
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
            error.starts_with("gave up after 3 attempts: HTTP 503"),
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
            0.0,
        );
        assert!(
            plan.updates
                .iter()
                .all(|u| matches!(u, RowUpdate::Hold { .. }))
        );
    }
}
