//! Writes that point at writes still in the queue (issue 11), the pure part: which writes
//! a write points at, what their states mean for it, and reference cycles within one
//! request. The store keeps the waiting set and applies these decisions.
//!
//! An association's `to` may be `{"objectWriteTraceId": "company-42"}`. HubSpot has no
//! such thing (an input of a batch cannot point at another), so the write waits until
//! every write it points at has succeeded, and then goes with their HubSpot ids.

use std::collections::HashMap;

use super::association_types::{target_of, type_name};
use super::validate::FieldError;
use super::{Association, AssociationCategory, AssociationTarget, NewWrite, ObjectType, TraceId};

/// The trace ids `associations` point at, each once, in order of first appearance.
pub fn referenced(associations: &[Association]) -> Vec<&TraceId> {
    let mut out: Vec<&TraceId> = Vec::new();
    for t in associations.iter().filter_map(|a| a.to.write()) {
        if !out.contains(&t) {
            out.push(t);
        }
    }
    out
}

/// A referenced write as the store finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// It is in the outbox.
    Row {
        state: String,
        object_type: String,
        hubspot_id: Option<String>,
        last_error: Option<String>,
    },
    /// It succeeded and retention purged it: only its trace id is remembered.
    Purged,
}

/// What a waiting write's references say now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// Every write it points at has succeeded: its associations with their HubSpot ids
    /// (and `toObjectType` filled in), as stored JSON text.
    Ready(String),
    /// Some have not finished, or are not in the outbox yet (how long that may last is
    /// the store's to watch: `waits_for.missing_since`).
    Wait,
    /// It can never be sent as written: why, naming the association and the write.
    Fail(String),
}

/// Decides a write's fate from the writes it points at (`targets`, by trace id; absent:
/// not in the outbox). `from` is the write's own object type, which tells the target type
/// of a HUBSPOT_DEFINED association; a target of another type than the association says
/// is refused here rather than by HubSpot. A failure outweighs waiting: a write whose one
/// reference failed fails now, whatever the others do.
pub fn resolve(
    from: &str,
    associations: &[Association],
    targets: &HashMap<String, Found>,
) -> Resolution {
    let mut resolved = Vec::with_capacity(associations.len());
    let mut waiting = false;
    for (i, a) in associations.iter().enumerate() {
        let Some(trace) = a.to.write() else {
            resolved.push(a.clone());
            continue;
        };
        let field = format!("associations[{i}].to.objectWriteTraceId");
        let (state, object_type, hubspot_id, last_error) = match targets.get(trace.as_str()) {
            None => {
                waiting = true;
                continue;
            }
            Some(Found::Purged) => {
                return Resolution::Fail(format!(
                    "{field}: write `{trace}` succeeded and was purged by retention, so its \
                     HubSpot id is no longer known here; point at the record by its id"
                ));
            }
            Some(Found::Row {
                state,
                object_type,
                hubspot_id,
                last_error,
            }) => (state, object_type, hubspot_id, last_error),
        };
        match (state.as_str(), hubspot_id) {
            ("failed", _) => {
                let why = last_error.as_deref().unwrap_or("no error recorded");
                return Resolution::Fail(format!(
                    "{field}: write `{trace}` failed: {why} (once it succeeds, retry this write too)"
                ));
            }
            ("discarded", _) => {
                let why = last_error
                    .as_deref()
                    .map(|e| format!(" (its last error: {e})"))
                    .unwrap_or_default();
                return Resolution::Fail(format!("{field}: write `{trace}` was discarded{why}"));
            }
            ("succeeded", Some(id)) => {
                if let Some(expected) = expected_target(from, a)
                    && expected != type_name(object_type)
                {
                    return Resolution::Fail(format!(
                        "associations[{i}]: write `{trace}` is a {object_type} record, but the \
                         association is to {expected}"
                    ));
                }
                resolved.push(Association {
                    to: AssociationTarget::Record { id: id.clone() },
                    to_object_type: ObjectType::parse(object_type).ok(),
                    types: a.types.clone(),
                });
            }
            ("succeeded", None) => {
                return Resolution::Fail(format!(
                    "{field}: write `{trace}` succeeded without a HubSpot id to point at"
                ));
            }
            _ => waiting = true,
        }
    }
    if waiting {
        Resolution::Wait
    } else {
        Resolution::Ready(serde_json::to_string(&resolved).expect("associations serialize"))
    }
}

/// The object type an association says it points at: its `toObjectType`, else the one a
/// HUBSPOT_DEFINED type id from `from` tells. Plural names (`contacts`), for comparing.
fn expected_target<'a>(from: &str, a: &'a Association) -> Option<&'a str> {
    if let Some(t) = &a.to_object_type {
        return Some(type_name(t.as_str()));
    }
    a.types
        .iter()
        .filter(|t| t.association_category == AssociationCategory::HubspotDefined)
        .find_map(|t| target_of(t.association_type_id, from))
}

/// Reference cycles among the writes of one request, which could never be sent: for the
/// first write found on each, an error naming the cycle (`a → b → a`). Only writes with
/// their own trace id can be pointed at. Linear in the request's size (sinks are peeled
/// off until only writes on or leading into a cycle remain).
pub fn request_cycles(writes: &[NewWrite]) -> Vec<(usize, FieldError)> {
    let index: HashMap<&str, usize> = writes
        .iter()
        .enumerate()
        .rev()
        .filter_map(|(i, w)| w.trace_id.as_ref().map(|t| (t.as_str(), i)))
        .collect();
    // Edges to writes of this request, by position.
    let edges: Vec<Vec<usize>> = writes
        .iter()
        .map(|w| {
            referenced(&w.associations)
                .into_iter()
                .filter_map(|t| index.get(t.as_str()).copied())
                .collect()
        })
        .collect();
    let mut out_degree: Vec<usize> = edges.iter().map(Vec::len).collect();
    let mut into: Vec<Vec<usize>> = vec![Vec::new(); writes.len()];
    for (from, targets) in edges.iter().enumerate() {
        for &to in targets {
            into[to].push(from);
        }
    }
    let mut removed = vec![false; writes.len()];
    let mut sinks: Vec<usize> = (0..writes.len()).filter(|&i| out_degree[i] == 0).collect();
    while let Some(s) = sinks.pop() {
        removed[s] = true;
        for &from in &into[s] {
            out_degree[from] -= 1;
            if out_degree[from] == 0 {
                sinks.push(from);
            }
        }
    }
    let mut errors = Vec::new();
    for start in 0..writes.len() {
        if removed[start] {
            continue;
        }
        // Every write left points at another one left (or into a cycle already named):
        // walking forward repeats a write, or reaches one already dealt with.
        let mut path = vec![start];
        let cycle = loop {
            let here = *path.last().expect("the path starts non-empty");
            let Some(&next) = edges[here].iter().find(|&&n| !removed[n]) else {
                break Vec::new();
            };
            if let Some(at) = path.iter().position(|&p| p == next) {
                break path[at..].to_vec();
            }
            path.push(next);
        };
        for &c in &path {
            removed[c] = true;
        }
        if cycle.is_empty() {
            continue;
        }
        let first = *cycle.iter().min().expect("a cycle has a write");
        let at = cycle.iter().position(|&c| c == first).expect("it is on it");
        let names: Vec<&str> = cycle[at..]
            .iter()
            .chain(&cycle[..at])
            .chain(std::iter::once(&first))
            .map(|&c| writes[c].trace_id.as_ref().expect("on a cycle").as_str())
            .collect();
        let next = names[1];
        let a = writes[first]
            .associations
            .iter()
            .position(|a| a.to.write().map(TraceId::as_str) == Some(next))
            .expect("the cycle follows an association");
        errors.push((
            first,
            FieldError {
                field: format!("associations[{a}].to.objectWriteTraceId"),
                message: format!(
                    "closes a reference cycle ({}): none of these writes could ever be sent",
                    names.join(" → ")
                ),
            },
        ));
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::validate::parse_write;
    use serde_json::json;

    fn write(trace: &str, refs: &[&str]) -> NewWrite {
        let associations: Vec<_> = refs
            .iter()
            .map(|r| json!({"to": {"objectWriteTraceId": r},
                            "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]}))
            .collect();
        parse_write(
            json!({"objectType": "contacts", "objectWriteTraceId": trace,
                           "properties": {}, "associations": associations}),
        )
        .unwrap()
    }

    fn row(state: &str, object_type: &str, id: Option<&str>) -> Found {
        Found::Row {
            state: state.into(),
            object_type: object_type.into(),
            hubspot_id: id.map(str::to_owned),
            last_error: Some("it broke".into()),
        }
    }

    #[test]
    fn references_are_listed_once_in_order() {
        let w = write("c", &["b", "a", "b"]);
        let refs: Vec<&str> = referenced(&w.associations)
            .into_iter()
            .map(TraceId::as_str)
            .collect();
        assert_eq!(refs, ["b", "a"]);
    }

    #[test]
    fn a_write_is_ready_once_every_reference_succeeded() {
        let w = write("c", &["co"]);
        let mut targets = HashMap::new();
        targets.insert("co".to_owned(), row("pending", "companies", None));
        assert_eq!(
            resolve("contacts", &w.associations, &targets),
            Resolution::Wait
        );
        targets.insert("co".to_owned(), row("succeeded", "companies", Some("77")));
        assert_eq!(
            resolve("contacts", &w.associations, &targets),
            Resolution::Ready(
                r#"[{"to":{"id":"77"},"toObjectType":"companies","types":[{"associationCategory":"HUBSPOT_DEFINED","associationTypeId":279}]}]"#
                    .into()
            )
        );
    }

    #[test]
    fn a_missing_reference_waits_and_a_failed_one_fails_naming_it() {
        let w = write("c", &["gone", "bad"]);
        let mut targets = HashMap::new();
        targets.insert("bad".to_owned(), row("in_flight", "companies", None));
        assert_eq!(
            resolve("contacts", &w.associations, &targets),
            Resolution::Wait
        );
        targets.insert("bad".to_owned(), row("failed", "companies", None));
        let Resolution::Fail(why) = resolve("contacts", &w.associations, &targets) else {
            panic!("a failed reference must fail the write");
        };
        assert!(
            why.starts_with("associations[1].to.objectWriteTraceId: write `bad` failed: it broke"),
            "{why}"
        );
        targets.insert("bad".to_owned(), Found::Purged);
        assert!(matches!(
            resolve("contacts", &w.associations, &targets),
            Resolution::Fail(why) if why.contains("purged by retention")
        ));
    }

    #[test]
    fn a_reference_to_a_record_of_the_wrong_type_fails() {
        // 279 is contact → company; the write pointed at is a deal.
        let w = write("c", &["d"]);
        let targets = HashMap::from([("d".to_owned(), row("succeeded", "deals", Some("5")))]);
        let Resolution::Fail(why) = resolve("contacts", &w.associations, &targets) else {
            panic!("a deal is not a company");
        };
        assert!(
            why.contains("is a deals record, but the association is to companies"),
            "{why}"
        );
    }

    /// Whether the graph `edges` (by position) has a cycle: a plain depth-first search.
    fn has_cycle(edges: &[Vec<usize>]) -> bool {
        fn visit(n: usize, edges: &[Vec<usize>], state: &mut [u8]) -> bool {
            state[n] = 1;
            for &m in &edges[n] {
                if state[m] == 1 || (state[m] == 0 && visit(m, edges, state)) {
                    return true;
                }
            }
            state[n] = 2;
            false
        }
        let mut state = vec![0; edges.len()];
        (0..edges.len()).any(|n| state[n] == 0 && visit(n, edges, &mut state))
    }

    proptest::proptest! {
        /// Any request (writes pointing at each other, at themselves, at writes not in it):
        /// a cycle is reported if and only if there is one, and every reported one is made
        /// of real references.
        #[test]
        fn request_cycles_finds_exactly_the_real_cycles(
            refs in proptest::collection::vec(proptest::collection::vec(0usize..24, 0..3), 1..20)
        ) {
            let n = refs.len();
            let writes: Vec<NewWrite> = refs
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let to: Vec<String> = r.iter().map(|t| format!("w{t}")).collect();
                    let to: Vec<&str> = to.iter().map(String::as_str).collect();
                    let mut w = write(&format!("w{i}"), &[]);
                    w.associations = write("x", &to).associations;
                    w
                })
                .collect();
            let edges: Vec<Vec<usize>> = refs
                .iter()
                .map(|r| r.iter().copied().filter(|&t| t < n).collect())
                .collect();
            let found = request_cycles(&writes);
            proptest::prop_assert_eq!(!found.is_empty(), has_cycle(&edges));
            for (_, e) in &found {
                let inside = e.message.split('(').nth(1).unwrap().split(')').next().unwrap();
                let names: Vec<usize> = inside
                    .split(" → ")
                    .map(|w| w[1..].parse().unwrap())
                    .collect();
                proptest::prop_assert_eq!(names.first(), names.last());
                for pair in names.windows(2) {
                    proptest::prop_assert!(edges[pair[0]].contains(&pair[1]), "{}", e.message);
                }
            }
        }
    }

    #[test]
    fn cycles_within_a_request_are_named_once() {
        let writes = vec![
            write("a", &["b"]),
            write("b", &["c"]),
            write("c", &["a"]),
            write("d", &["a"]),
            write("e", &[]),
            write("f", &["d"]),
        ];
        let cycles = request_cycles(&writes);
        assert_eq!(cycles.len(), 1, "{cycles:?}");
        assert_eq!(cycles[0].0, 0);
        assert_eq!(cycles[0].1.field, "associations[0].to.objectWriteTraceId");
        assert!(
            cycles[0].1.message.contains("(a → b → c → a)"),
            "{:?}",
            cycles[0]
        );
        // A chain, however long, is no cycle.
        let chain: Vec<NewWrite> = (0..1000)
            .map(|i| write(&format!("w{i}"), &[&format!("w{}", i + 1)]))
            .collect();
        assert!(request_cycles(&chain).is_empty());
    }
}
