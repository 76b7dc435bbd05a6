//! Which result of a 2xx answer belongs to which write: HubSpot does not keep the input
//! order, so results are matched by what they carry, never by position.

use std::collections::HashMap;

use crate::hubspot::wire::CreatedObject;
use crate::model::BatchRow;

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
