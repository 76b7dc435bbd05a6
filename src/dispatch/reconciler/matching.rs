//! Which result of a 2xx answer belongs to which write: HubSpot does not keep the input
//! order, so a result is credited to a write only by what identifies it: the echoed
//! `objectWriteTraceId`, else the trace property's value (the write's trace id), else the
//! object type's unique property (compared without case, as HubSpot lowercases emails). Never by position, and never by other property values:
//! two writes may share them, and HubSpot normalises them (number and date formats), so
//! a match by values can credit one write with another's id.

use std::collections::HashMap;

use crate::hubspot::wire::CreatedObject;
use crate::model::BatchRow;

/// Results credited to rows, and how many results carried an id but matched no row
/// (or more than one).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Matched {
    /// (row index, HubSpot id).
    pub credited: Vec<(usize, String)>,
    pub unmatched_results: usize,
}

/// Matches `results` to the rows not yet `settled` (by index): each result goes to the
/// one row it identifies, or to none.
pub fn match_results(
    rows: &[BatchRow],
    settled: &[bool],
    results: &[CreatedObject],
    trace: Option<&str>,
    unique: Option<&str>,
) -> Matched {
    let mut taken = settled.to_vec();
    let mut out = Matched::default();
    let by_trace: HashMap<&str, usize> = rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.trace_id.as_str(), i))
        .collect();
    for result in results {
        let Some(id) = result.id.clone() else {
            continue;
        };
        // The echoed trace id, else the trace property's value: both name the write.
        let echoed = result.object_write_trace_id.as_deref().or_else(|| {
            let name = trace?;
            result.properties.get(name)?.as_str()
        });
        if let Some(&i) = echoed.and_then(|t| by_trace.get(t)) {
            // It names its write; if that write is settled already (HubSpot also named
            // it in `errors[]`), the result is not someone else's either.
            if !taken[i] {
                taken[i] = true;
                out.credited.push((i, id));
            }
            continue;
        }
        let found = unique.and_then(|u| {
            let value = result.properties.get(u)?.as_str()?;
            let mut hits = rows.iter().enumerate().filter(|(i, r)| {
                !taken[*i]
                    && r.properties
                        .get(u)
                        .is_some_and(|v| !v.is_empty() && v.eq_ignore_ascii_case(value))
            });
            let first = hits.next()?.0;
            hits.next().is_none().then_some(first)
        });
        match found {
            Some(i) => {
                taken[i] = true;
                out.credited.push((i, id));
            }
            None => out.unmatched_results += 1,
        }
    }
    out
}
