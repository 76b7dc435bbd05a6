//! Changing writes: `retry` puts failed or unconfirmed writes back in the queue (with
//! `--edit`, after fixing their properties), `discard` gives them up for the record
//! (named by trace id, waiting writes too).

use chrono::Utc;
use serde_json::{Value, json};

use super::{OpsError, SelectArgs, open_write, selection};
use crate::config::Config;
use crate::model::validate::{StoredFields, parse_stored};
use crate::store::Store;
use crate::store::audit::Actor;
use crate::store::read::StoredWrite;

/// `retry` (with `--edit`: fix properties first) and `discard`.
pub async fn change(
    config: &Config,
    args: &SelectArgs,
    discard: bool,
) -> Result<Vec<String>, OpsError> {
    let selection = selection(
        args,
        Utc::now(),
        "choose the writes: TRACE_ID..., or --failed, or --unconfirmed (with optional filters)",
    )?;
    let store = open_write(config).await?;
    let by = Actor::this_process();
    let (verb, n) = if args.dry_run && discard {
        ("would change", store.count_discard(&selection).await?)
    } else if args.dry_run {
        ("would change", store.count_selection(&selection).await?)
    } else if discard {
        ("discarded", store.discard_writes(&selection, &by).await?)
    } else {
        ("requeued", store.retry_writes(&selection, &by).await?)
    };
    store.close().await;
    Ok(vec![if args.json {
        json!({"action": if discard { "discard" } else { "retry" }, "dryRun": args.dry_run, "writes": n}).to_string()
    } else {
        format!("{verb} {n} write(s)")
    }])
}

/// What `retry --edit` changes.
#[derive(Debug, Clone, Copy)]
pub struct Edit<'a> {
    /// `--set NAME=VALUE`.
    pub sets: &'a [String],
    /// `--unset NAME`.
    pub unsets: &'a [String],
    /// `--set-id ID`: the record an upsert or update names.
    pub record_key: Option<&'a str>,
}

/// `retry --edit TRACE_ID --set name=value... --unset name... --set-id ID`. The edited
/// write is sent again from its first step (its record, then its associations).
pub async fn edit(
    config: &Config,
    trace_id: &str,
    change: &Edit<'_>,
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    let Edit {
        sets,
        unsets,
        record_key,
    } = *change;
    if sets.is_empty() && unsets.is_empty() && record_key.is_none() {
        return Err(OpsError::Usage(
            "--edit needs at least one --set NAME=VALUE, --unset NAME or --set-id ID".into(),
        ));
    }
    let store = open_write(config).await?;
    let write = store
        .get_write(trace_id)
        .await?
        .ok_or_else(|| OpsError::NotFound(trace_id.to_owned()))?;
    let mut properties: serde_json::Map<String, Value> =
        serde_json::from_str(&write.properties).unwrap_or_default();
    for set in sets {
        let (name, value) = set
            .split_once('=')
            .ok_or_else(|| OpsError::Usage(format!("--set `{set}` is not NAME=VALUE")))?;
        properties.insert(name.to_owned(), Value::String(value.to_owned()));
    }
    for name in unsets {
        if properties.remove(name).is_none() {
            return Err(OpsError::Usage(format!(
                "--unset {name}: the write has no such property"
            )));
        }
    }
    let by = Actor::this_process();
    let result = edit_write(&store, &write, properties, record_key, &by).await;
    store.close().await;
    result?;
    Ok(vec![if as_json {
        json!({"action": "retry", "edited": trace_id, "writes": 1}).to_string()
    } else {
        format!("edited and requeued {trace_id}")
    }])
}

/// Replaces `write`'s properties with `properties` (and an upsert's or update's record
/// with `record_key`, when given), checked as a new write would be, and queues it again
/// from its first step, recorded in the audit log as `by`'s: `retry --edit` and the
/// dashboard's "Edit and retry". Refused (nothing changed) when the edited write is
/// invalid, the write is no longer failed or unconfirmed, or it changed since `write` was
/// read (another operator's edit or retry): the edit was made from what it was then.
pub async fn edit_write(
    store: &Store,
    write: &StoredWrite,
    properties: serde_json::Map<String, Value>,
    record_key: Option<&str>,
    by: &Actor,
) -> Result<(), OpsError> {
    let before: serde_json::Map<String, Value> =
        serde_json::from_str(&write.properties).unwrap_or_default();
    let mut what = changed_names(&before, &properties);
    if record_key.is_some_and(|k| Some(k) != write.record_key.as_deref()) {
        what.push_str(if what.is_empty() { "" } else { "; " });
        what.push_str("set the record's id");
    }
    let text = Value::Object(properties).to_string();
    let checked = parse_stored(&StoredFields {
        object_type: &write.object_type,
        operation: &write.operation,
        id_property: write.id_property.as_deref(),
        record_key: record_key.or(write.record_key.as_deref()),
        properties: &text,
        associations: &write.associations,
    })
    .map_err(|errors| {
        OpsError::Usage(format!(
            "the edited write is invalid: {}",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("; ")
        ))
    })?;
    let changed = store
        .edit_and_retry(
            &write.trace_id,
            &checked.properties_json(),
            checked.record_key(),
            &write.updated_at,
            by,
            &what,
        )
        .await?;
    if changed {
        return Ok(());
    }
    let why = match store.get_write(&write.trace_id).await? {
        None => format!("`{}` is no longer in the outbox", write.trace_id),
        Some(now) if !matches!(now.state.as_str(), "failed" | "unconfirmed") => format!(
            "`{}` is {}, not failed or unconfirmed",
            write.trace_id, now.state
        ),
        Some(now) => format!(
            "`{}` changed since it was read (it is {} again, changed at {}); look at it again",
            write.trace_id, now.state, now.updated_at
        ),
    };
    Err(OpsError::Usage(format!("{why}; nothing changed")))
}

/// What an edit changed, for the audit log: property names set (added or changed) and
/// unset, never their values (the log is kept for good; values are often personal data).
pub fn changed_names(
    before: &serde_json::Map<String, Value>,
    after: &serde_json::Map<String, Value>,
) -> String {
    let set: Vec<&str> = after
        .iter()
        .filter(|(k, v)| before.get(*k) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    let unset: Vec<&str> = before
        .keys()
        .filter(|k| !after.contains_key(*k))
        .map(String::as_str)
        .collect();
    let mut parts = Vec::new();
    if !set.is_empty() {
        parts.push(format!("set {}", set.join(", ")));
    }
    if !unset.is_empty() {
        parts.push(format!("unset {}", unset.join(", ")));
    }
    if parts.is_empty() {
        "no property changed".to_owned()
    } else {
        parts.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_is_described_by_names_not_values() {
        let before = json!({"email": "a@x.io", "phone": "1", "name": "A"});
        let after = json!({"email": "b@x.io", "name": "A", "city": "Oslo"});
        let (Value::Object(b), Value::Object(a)) = (before, after) else {
            unreachable!()
        };
        assert_eq!(changed_names(&b, &a), "set city, email; unset phone");
        assert_eq!(changed_names(&b, &b), "no property changed");
    }
}
