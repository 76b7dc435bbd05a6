//! Looking at writes: `failed` (the failed ones, newest first) and `show` (one write
//! with its whole error history).

use chrono::Utc;
use serde_json::{Value, json};

use super::render::write_json;
use super::{FilterArgs, OpsError, filter, open_read};
use crate::config::Config;

/// `failed`: one line (or JSON object) per failed write, newest first.
pub async fn failed(
    config: &Config,
    args: &FilterArgs,
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    let f = filter(args, Utc::now())?;
    let store = open_read(config).await?;
    let rows = store.failed_writes(&f).await?;
    store.close().await;
    Ok(rows
        .iter()
        .map(|r| {
            if as_json {
                serde_json::to_string(r).expect("rows serialize")
            } else {
                format!(
                    "{}  {}  {} {}  attempts {}  {}: {}",
                    r.failed_at,
                    r.trace_id,
                    r.object_type,
                    r.operation,
                    r.attempts,
                    r.category.as_deref().unwrap_or("ERROR"),
                    r.message.as_deref().unwrap_or("")
                )
            }
        })
        .collect())
}

/// `show`: the write and its history.
pub async fn show(config: &Config, trace_id: &str, as_json: bool) -> Result<Vec<String>, OpsError> {
    let store = open_read(config).await?;
    let write = store
        .get_write(trace_id)
        .await?
        .ok_or_else(|| OpsError::NotFound(trace_id.to_owned()))?;
    let history = store.error_history(trace_id).await?;
    store.close().await;
    let history_json: Vec<Value> = history
        .iter()
        .map(|e| {
            json!({"attempt": e.attempt, "httpStatus": e.status, "category": e.category, "message": e.message,
                   "correlationId": e.correlation_id})
        })
        .collect();
    let mut value = write_json(&write);
    value["history"] = Value::Array(history_json);
    if as_json {
        return Ok(vec![value.to_string()]);
    }
    let record = match (&write.id_property, &write.record_key) {
        (Some(p), Some(k)) => format!(" by {p} = {k}"),
        (None, Some(k)) => format!(" record {k}"),
        _ => String::new(),
    };
    let created = match write.new_record {
        Some(true) => " (created by this upsert)",
        Some(false) => " (updated by this upsert)",
        None => "",
    };
    let mut out = vec![
        format!(
            "{}  {} {}{record}  {}",
            write.trace_id, write.object_type, write.operation, write.state
        ),
        format!(
            "hubspot id: {}{created}",
            write.hubspot_id.as_deref().unwrap_or("-")
        ),
        format!("attempts: {}", write.attempts),
        format!("properties: {}", write.properties),
        format!("associations: {}", write.associations),
        format!(
            "step: {}{}",
            write.step,
            write
                .associations_done
                .as_deref()
                .map(|d| format!(" (associations done for {d})"))
                .unwrap_or_default()
        ),
        format!("created {}, updated {}", write.created_at, write.updated_at),
    ];
    if let Some(written) = &write.referenced_associations {
        out.insert(5, format!("associations as written: {written}"));
    }
    if write.waiting_for != "[]" {
        out.push(format!("waiting for: {}", write.waiting_for));
    }
    if let Some(e) = &write.last_error {
        out.push(format!("last error: {e}"));
    }
    out.push(format!("history ({} errors):", history.len()));
    for e in history {
        out.push(format!(
            "  attempt {}  HTTP {}  {}: {}{}",
            e.attempt,
            e.status,
            e.category.as_deref().unwrap_or("ERROR"),
            e.message,
            e.correlation_id
                .map(|c| format!(" (correlation id {c})"))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}
