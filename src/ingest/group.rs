//! Deciding what a group of accepted requests does to the outbox, as a pure function: which
//! writes are new, which repeat a stored write (idempotent duplicates), and which requests
//! must be refused because they reuse a trace id for a different write.

use std::collections::HashMap;

use serde::Serialize;

use crate::model::references::referenced;
use crate::model::validate::{StoredFields, parse_stored};
use crate::model::{NewWrite, TraceId};
use crate::store::ingest::{ExistingWrite, RowToStore};

/// A validated write with its trace id settled.
#[derive(Debug, Clone)]
pub struct PreparedWrite {
    pub row: RowToStore,
    /// The producer chose the trace id, so it may already be stored. Generated ids are
    /// UUIDv7s and are not looked up.
    pub explicit_id: bool,
}

/// Gives every write its stored form and a trace id (generating one where absent).
/// `unique` says an object type's configured unique property, which orders creates
/// among the writes to one record (see [`NewWrite::order_key`]).
pub fn prepare(
    writes: Vec<NewWrite>,
    unique: &dyn Fn(&str) -> Option<String>,
) -> Vec<PreparedWrite> {
    writes
        .into_iter()
        .map(|w| {
            let explicit_id = w.trace_id.is_some();
            let row = stored_form(&w, unique(w.object_type.as_str()).as_deref());
            let trace_id = w.trace_id.unwrap_or_else(TraceId::generate);
            PreparedWrite {
                row: RowToStore {
                    trace_id: trace_id.as_str().to_owned(),
                    ..row
                },
                explicit_id,
            }
        })
        .collect()
}

/// A write's columns as stored (the trace id left empty).
fn stored_form(w: &NewWrite, unique: Option<&str>) -> RowToStore {
    RowToStore {
        trace_id: String::new(),
        object_type: w.object_type.as_str().to_owned(),
        operation: w.operation.as_str().to_owned(),
        id_property: w.id_property().map(str::to_owned),
        record_key: w.record_key().map(str::to_owned),
        order_key: w.order_key(unique),
        properties: w.properties_json(),
        associations: w.associations_json(),
        references: !referenced(&w.associations).is_empty(),
    }
}

/// What happened to one write of an accepted request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub object_write_trace_id: String,
    pub result: WriteResult,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteResult {
    /// Stored now.
    New,
    /// The same write was already stored under this trace id; nothing new was stored.
    Duplicate,
}

/// A write whose trace id is already used by a different write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    /// Position of the write in its request.
    pub index: usize,
    pub trace_id: String,
}

/// The plan for one group commit.
#[derive(Debug)]
pub struct GroupPlan {
    /// Per request, in order: its writes' results, or the conflicts that refuse it whole.
    pub outcomes: Vec<Result<Vec<Accepted>, Vec<Conflict>>>,
    /// The rows to insert, in request order.
    pub rows: Vec<RowToStore>,
}

/// What makes two writes "the same write": object type and canonical JSON texts.
fn same_write(a: &RowToStore, b: &RowToStore) -> bool {
    a.object_type == b.object_type
        && a.operation == b.operation
        && a.id_property == b.id_property
        && a.record_key == b.record_key
        && a.properties == b.properties
        && a.associations == b.associations
}

/// A stored row in canonical form, so `{"age": 42}` inserted with SQL equals
/// `{"age": "42"}` sent over the socket. A stored row that does not validate can equal
/// nothing (`None`), so reusing its trace id is a conflict.
fn canonical(e: &ExistingWrite) -> Option<RowToStore> {
    let w = parse_stored(&StoredFields {
        object_type: &e.object_type,
        operation: &e.operation,
        id_property: e.id_property.as_deref(),
        record_key: e.record_key.as_deref(),
        properties: &e.properties,
        associations: &e.associations,
    })
    .ok()?;
    Some(RowToStore {
        trace_id: e.trace_id.clone(),
        ..stored_form(&w, None)
    })
}

/// A trace id already taken: a stored write (its canonical form; `None` when it cannot be
/// read, which makes any repeat a conflict), or a purged one whose content is gone (any
/// repeat is a duplicate: it was sent).
enum Stored {
    Row(Option<RowToStore>),
    Purged,
}

/// What the plan does with one write.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Decision {
    New,
    Duplicate,
    Conflict,
}

/// Plans a group: requests are decided in order, each against the stored rows and the
/// requests before it in the group. A request with any conflict stores nothing.
pub fn plan_group(requests: Vec<Vec<PreparedWrite>>, existing: &[ExistingWrite]) -> GroupPlan {
    let stored: HashMap<&str, Stored> = existing
        .iter()
        .map(|e| {
            let known = if e.purged {
                Stored::Purged
            } else {
                Stored::Row(canonical(e))
            };
            (e.trace_id.as_str(), known)
        })
        .collect();
    // Explicit trace ids stored by earlier requests of this group, with their index in `rows`.
    let mut grouped: HashMap<String, usize> = HashMap::new();
    let mut rows: Vec<RowToStore> = Vec::new();
    let mut outcomes = Vec::with_capacity(requests.len());
    for request in requests {
        let decisions = decide(&request, &stored, &grouped, &rows);
        if decisions.contains(&Decision::Conflict) {
            let conflicts = request
                .iter()
                .zip(&decisions)
                .enumerate()
                .filter(|(_, (_, d))| **d == Decision::Conflict)
                .map(|(index, (w, _))| Conflict {
                    index,
                    trace_id: w.row.trace_id.clone(),
                })
                .collect();
            outcomes.push(Err(conflicts));
            continue;
        }
        let mut accepted = Vec::with_capacity(request.len());
        for (write, decision) in request.into_iter().zip(decisions) {
            let result = match decision {
                Decision::New => WriteResult::New,
                _ => WriteResult::Duplicate,
            };
            accepted.push(Accepted {
                object_write_trace_id: write.row.trace_id.clone(),
                result,
            });
            if result == WriteResult::New {
                if write.explicit_id {
                    grouped.insert(write.row.trace_id.clone(), rows.len());
                }
                rows.push(write.row);
            }
        }
        outcomes.push(Ok(accepted));
    }
    GroupPlan { outcomes, rows }
}

/// Decides each write of one request without changing anything.
fn decide(
    request: &[PreparedWrite],
    stored: &HashMap<&str, Stored>,
    grouped: &HashMap<String, usize>,
    rows: &[RowToStore],
) -> Vec<Decision> {
    // Explicit ids first seen in this request, with their position in it.
    let mut local: HashMap<&str, usize> = HashMap::new();
    request
        .iter()
        .enumerate()
        .map(|(i, write)| {
            if !write.explicit_id {
                return Decision::New;
            }
            let id = write.row.trace_id.as_str();
            if let Some(Stored::Purged) = stored.get(id) {
                return Decision::Duplicate;
            }
            let earlier: Option<Option<&RowToStore>> = local
                .get(id)
                .map(|&j| Some(&request[j].row))
                .or_else(|| grouped.get(id).map(|&k| Some(&rows[k])))
                .or_else(|| match stored.get(id) {
                    Some(Stored::Row(row)) => Some(row.as_ref()),
                    _ => None,
                });
            match earlier {
                None => {
                    local.insert(id, i);
                    Decision::New
                }
                Some(Some(first)) if same_write(first, &write.row) => Decision::Duplicate,
                Some(_) => Decision::Conflict,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::parse_write;
    use serde_json::json;

    fn prepare(writes: Vec<NewWrite>) -> Vec<PreparedWrite> {
        super::prepare(writes, &|_| None)
    }

    fn write(trace: Option<&str>, email: &str) -> NewWrite {
        let mut v = json!({"objectType": "contacts", "properties": {"email": email}});
        if let Some(t) = trace {
            v["objectWriteTraceId"] = json!(t);
        }
        parse_write(v).unwrap()
    }

    fn stored(trace: &str, props: &str) -> ExistingWrite {
        ExistingWrite {
            trace_id: trace.into(),
            object_type: "contacts".into(),
            operation: "create".into(),
            id_property: None,
            record_key: None,
            properties: props.into(),
            associations: "[]".into(),
            purged: false,
        }
    }

    fn results(outcome: &Result<Vec<Accepted>, Vec<Conflict>>) -> Vec<WriteResult> {
        outcome.as_ref().unwrap().iter().map(|a| a.result).collect()
    }

    #[test]
    fn new_writes_get_generated_ids_and_are_all_stored() {
        let plan = plan_group(vec![prepare(vec![write(None, "a"), write(None, "b")])], &[]);
        assert_eq!(plan.rows.len(), 2);
        assert_ne!(plan.rows[0].trace_id, plan.rows[1].trace_id);
        assert_eq!(
            results(&plan.outcomes[0]),
            [WriteResult::New, WriteResult::New]
        );
    }

    #[test]
    fn a_resent_write_is_a_duplicate_even_if_stored_by_sql_in_another_form() {
        let existing = [stored("t1", r#"{ "email" : "a" }"#)];
        let plan = plan_group(
            vec![prepare(vec![
                write(Some("t1"), "a"),
                write(Some("t2"), "b"),
            ])],
            &existing,
        );
        assert_eq!(
            results(&plan.outcomes[0]),
            [WriteResult::Duplicate, WriteResult::New]
        );
        assert_eq!(plan.rows.len(), 1);
        assert_eq!(plan.rows[0].trace_id, "t2");
    }

    #[test]
    fn reusing_a_trace_id_for_another_write_refuses_the_whole_request() {
        let existing = [stored("t1", r#"{"email":"a"}"#)];
        let plan = plan_group(
            vec![
                prepare(vec![write(Some("t0"), "z"), write(Some("t1"), "DIFFERENT")]),
                prepare(vec![write(Some("t3"), "c")]),
            ],
            &existing,
        );
        assert_eq!(
            plan.outcomes[0].as_ref().unwrap_err(),
            &vec![Conflict {
                index: 1,
                trace_id: "t1".into()
            }]
        );
        // The refused request stored nothing; the next request in the group is unaffected.
        assert_eq!(
            plan.rows
                .iter()
                .map(|r| r.trace_id.as_str())
                .collect::<Vec<_>>(),
            ["t3"]
        );
    }

    #[test]
    fn repeats_within_a_request_and_across_a_group_are_caught() {
        let plan = plan_group(
            vec![
                prepare(vec![write(Some("x"), "a"), write(Some("x"), "a")]),
                prepare(vec![write(Some("x"), "a")]),
                prepare(vec![write(Some("x"), "b")]),
                prepare(vec![write(Some("y"), "a"), write(Some("y"), "b")]),
            ],
            &[],
        );
        assert_eq!(
            results(&plan.outcomes[0]),
            [WriteResult::New, WriteResult::Duplicate]
        );
        assert_eq!(results(&plan.outcomes[1]), [WriteResult::Duplicate]);
        assert!(plan.outcomes[2].is_err());
        assert_eq!(plan.outcomes[3].as_ref().unwrap_err()[0].index, 1);
        assert_eq!(plan.rows.len(), 1);
    }

    #[test]
    fn a_stored_row_that_does_not_validate_conflicts_with_any_reuse() {
        let existing = [stored("t1", r#"{"email":null}"#)];
        let plan = plan_group(vec![prepare(vec![write(Some("t1"), "a")])], &existing);
        assert!(plan.outcomes[0].is_err());
    }
}
