//! Writes that wait for writes (issue 11). A write whose associations point at queued
//! writes by trace id is `waiting`, with one `waits_for` row per write it points at.
//! Whenever writes settle (succeed, fail, are discarded), the writes waiting for them are
//! looked up by trace id and decided by [`crate::model::references::resolve`], in the
//! same transaction as the change that settled them: a crash leaves either both or
//! neither. Those steps are part of the other families' statements (ingest, intake,
//! settle, ops); this trait holds the two that run on their own.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::model::Association;
use crate::model::references::{Found, Resolution, resolve};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;

/// The category of the error history entry a failed reference leaves.
pub const REFERENCE_CATEGORY: &str = "REFERENCE";

/// The waiting set's own sweeps.
#[async_trait]
pub trait ReferenceStore: Send + Sync {
    /// Fails the waiting writes that have pointed at a trace id not in the outbox since
    /// before `cutoff` (`references.wait_for_missing` ago, spelt `waited` in the error),
    /// and the writes that wait for them. Returns how many failed for want of one.
    async fn expire_missing_references(
        &self,
        cutoff: DateTime<Utc>,
        waited: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Decides every waiting write whose referenced writes have settled, by a scan of the
    /// waiting set (at start). Returns the writes that became due.
    async fn resolve_waiting(&self, now: DateTime<Utc>) -> Result<u64, StoreError>;
}

/// The most writes a cycle check visits; past it, the write is taken to close no cycle
/// (a chain that long is far beyond any real use).
const MAX_CYCLE_WALK: usize = 10_000;

/// One edge of the waiting graph as a cycle walk reads it: the waiting write's own trace
/// id, and a write it waits for (its id and trace id, and whether through its record's
/// order).
pub(in crate::store) type Edge = (String, i64, String, bool);

/// A cycle check of one write: whether the write `start` waits, through other unfinished
/// writes, for itself. A walk, breadth first, over the edges each backend's SQL reads for
/// a write (the same three kinds on both: the writes it points at, the queued create named
/// by its trace property, the write before it to the same record); pure, so both backends
/// share it:
///
/// ```ignore
/// let mut walk = Walk::new(start);
/// while let Some(here) = walk.next_write() {
///     if let Some(cycle) = walk.visit(here, edges_of(here).await?) { return Ok(Some(cycle)); }
/// }
/// ```
pub(in crate::store) struct Walk {
    start: i64,
    parent: HashMap<i64, (i64, String, bool)>,
    seen: HashSet<i64>,
    queue: VecDeque<i64>,
    names: HashMap<i64, String>,
}

impl Walk {
    pub(in crate::store) fn new(start: i64) -> Self {
        Self {
            start,
            parent: HashMap::new(),
            seen: HashSet::from([start]),
            queue: VecDeque::from([start]),
            names: HashMap::new(),
        }
    }

    /// The next write whose edges the walk needs; `None` when it is over.
    pub(in crate::store) fn next_write(&mut self) -> Option<i64> {
        if self.seen.len() > MAX_CYCLE_WALK {
            return None;
        }
        self.queue.pop_front()
    }

    /// Takes `here`'s edges; returns the cycle in words (`a → b → a`) once one closes.
    pub(in crate::store) fn visit(&mut self, here: i64, edges: Vec<Edge>) -> Option<String> {
        for (own, id, trace, order) in edges {
            self.names.entry(here).or_insert(own);
            if id == self.start {
                self.parent.insert(self.start, (here, trace, order));
                return Some(describe_cycle(self.start, &self.parent, &self.names));
            }
            if self.seen.insert(id) {
                self.parent.insert(id, (here, trace, order));
                self.queue.push_back(id);
            }
        }
        None
    }
}

/// `a → b → c (an earlier write to the same record) → a`, from the walk's parents.
fn describe_cycle(
    start: i64,
    parent: &HashMap<i64, (i64, String, bool)>,
    names: &HashMap<i64, String>,
) -> String {
    let mut steps = Vec::new();
    let mut at = start;
    loop {
        let (from, name, order) = &parent[&at];
        steps.push(if *order {
            format!("{name} (an earlier write to the same record)")
        } else {
            name.clone()
        });
        at = *from;
        if at == start {
            break;
        }
    }
    steps.push(names.get(&start).cloned().unwrap_or_default());
    steps.reverse();
    steps.join(" → ")
}

/// A referenced write as a backend's `decide` reads it.
#[derive(sqlx::FromRow)]
pub(in crate::store) struct TargetRow {
    pub(in crate::store) write_id: i64,
    pub(in crate::store) trace_id: String,
    pub(in crate::store) state: Option<String>,
    pub(in crate::store) object_type: Option<String>,
    pub(in crate::store) hubspot_id: Option<String>,
    pub(in crate::store) last_error: Option<String>,
    pub(in crate::store) purged: bool,
}

/// A write and what was decided for it: its resolved associations, or its error.
pub(in crate::store) type Decided = (i64, String);

/// What [`crate::model::references::resolve`] decides for waiting writes `rows` (id,
/// object type, associations as stored) given the writes they point at (`targets`):
/// (ready, with their associations resolved; failing, with the error). The rest wait on.
pub(in crate::store) fn judge(
    rows: Vec<(i64, String, String)>,
    targets: Vec<TargetRow>,
) -> (Vec<Decided>, Vec<Decided>) {
    let mut found: HashMap<i64, HashMap<String, Found>> = HashMap::new();
    for t in targets {
        let f = match (t.state, t.object_type) {
            (Some(state), Some(object_type)) => Found::Row {
                state,
                object_type,
                hubspot_id: t.hubspot_id,
                last_error: t.last_error,
            },
            _ if t.purged => Found::Purged,
            _ => continue,
        };
        found.entry(t.write_id).or_default().insert(t.trace_id, f);
    }
    let (mut ready, mut failures) = (Vec::new(), Vec::new());
    let none = HashMap::new();
    for (id, object_type, associations) in rows {
        let parsed: Vec<Association> = match serde_json::from_str(&associations) {
            Ok(parsed) => parsed,
            // Validated rows always parse; one that does not is not sent without them.
            Err(e) => {
                failures.push((id, format!("associations: cannot be read: {e}")));
                continue;
            }
        };
        match resolve(&object_type, &parsed, found.get(&id).unwrap_or(&none)) {
            Resolution::Wait => {}
            Resolution::Ready(resolved) => ready.push((id, resolved)),
            Resolution::Fail(error) => failures.push((id, error)),
        }
    }
    (ready, failures)
}
