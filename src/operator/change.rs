//! Changing writes: `retry` puts failed or unconfirmed writes back in the queue (with
//! `--edit`, after fixing their properties), `discard` gives them up for the record
//! (named by trace id, waiting writes too).

use chrono::Utc;
use serde_json::{Value, json};

use super::{OpsError, SelectArgs, open_write, selection};
use crate::config::Config;
use crate::model::validate::{StoredFields, parse_stored};

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
    let (verb, n) = if args.dry_run && discard {
        ("would change", store.count_discard(&selection).await?)
    } else if args.dry_run {
        ("would change", store.count_selection(&selection).await?)
    } else if discard {
        ("discarded", store.discard_writes(&selection).await?)
    } else {
        ("requeued", store.retry_writes(&selection).await?)
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
        .edit_and_retry(trace_id, &checked.properties_json(), checked.record_key())
        .await?;
    store.close().await;
    if !changed {
        return Err(OpsError::Usage(format!(
            "`{trace_id}` is {}, not failed or unconfirmed; nothing changed",
            write.state
        )));
    }
    Ok(vec![if as_json {
        json!({"action": "retry", "edited": trace_id, "writes": 1}).to_string()
    } else {
        format!("edited and requeued {trace_id}")
    }])
}
