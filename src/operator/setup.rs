//! `hubspot-outbox setup`: check each object type's trace property in HubSpot now, and
//! create it where it is missing (unless `--dry-run`), as the daemon does before a type's
//! first send; print what was found and done. Run it before the first start, or after
//! granting a scope or freeing a unique property: a running daemon checks a type whose
//! property was unavailable again within the hour (or at its next start).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;

use super::OpsError;
use crate::config::Config;
use crate::dispatch::Dispatcher;
use crate::dispatch::sender::HttpSender;
use crate::dispatch::trace::Found;
use crate::runtime::metrics::Metrics;
use crate::store::Store;

/// What setup did, per object type: the lines to print, and whether every type is ready
/// (the exit code says so).
pub struct SetupReport {
    pub lines: Vec<String>,
    pub all_ready: bool,
}

/// Checks (and, unless `dry_run`, creates) the trace property of `types`; with none
/// given, of every type in `[objects]`, in the outbox, and checked before.
pub async fn setup(
    config: &Config,
    store: Store,
    types: &[String],
    dry_run: bool,
    as_json: bool,
) -> Result<SetupReport, OpsError> {
    let Some(token) = &config.access_token else {
        return Err(OpsError::Usage(
            "setup talks to HubSpot: set HUBSPOT_ACCESS_TOKEN (or hubspot.access_token_file)"
                .into(),
        ));
    };
    let mut chosen: BTreeSet<String> = types.iter().cloned().collect();
    if chosen.is_empty() {
        chosen.extend(config.objects.keys().cloned());
        chosen.extend(
            store
                .queue_depth()
                .await?
                .into_iter()
                .map(|d| d.object_type),
        );
        chosen.extend(
            store
                .trace_states()
                .await?
                .into_iter()
                .map(|t| t.object_type),
        );
    }
    if chosen.is_empty() {
        return Err(OpsError::Usage(
            "no object type to set up: name one with --object-type (e.g. contacts)".into(),
        ));
    }
    let sender = HttpSender::new(config.hubspot.clone(), token)
        .map_err(|e| OpsError::Usage(e.to_string()))?;
    let dispatcher = Dispatcher::new(
        store.clone(),
        Arc::new(config.clone()),
        sender,
        Arc::default(),
        Arc::new(Metrics::default()),
    );
    let mut report = SetupReport {
        lines: Vec::new(),
        all_ready: true,
    };
    for object_type in chosen {
        let found = dispatcher.setup_trace(&object_type, dry_run).await?;
        let (outcome, property, group, reason) = match &found {
            None => ("off", None, None, None),
            Some((name, Found::Ready)) => ("ready", Some(name), None, None),
            Some((name, Found::Created(g))) => ("created", Some(name), Some(g), None),
            Some((name, Found::WouldCreate(g))) => ("would_create", Some(name), Some(g), None),
            Some((name, Found::Unavailable(r))) => {
                ("unavailable", Some(name), None, Some(r.clone()))
            }
            Some((name, Found::Later | Found::Again)) => (
                "unknown",
                Some(name),
                None,
                Some(
                    "HubSpot did not answer, failed (5xx) or refused the token; try again"
                        .to_owned(),
                ),
            ),
        };
        report.all_ready &= matches!(outcome, "ready" | "created" | "off");
        let property = property.cloned().unwrap_or_default();
        report.lines.push(if as_json {
            json!({"objectType": object_type, "property": property, "outcome": outcome,
                   "group": group, "reason": reason, "dryRun": dry_run})
            .to_string()
        } else {
            match outcome {
                "off" => format!("{object_type}: the trace property is turned off for this type"),
                "ready" => format!("{object_type}: {property} exists with unique values: ready"),
                "created" => format!(
                    "{object_type}: {property} was missing; created in group {}: ready",
                    group.cloned().unwrap_or_default()
                ),
                "would_create" => format!(
                    "{object_type}: {property} is missing; would be created in group {} (dry run)",
                    group.cloned().unwrap_or_default()
                ),
                _ => format!(
                    "{object_type}: {property} {}: {}",
                    outcome.to_uppercase(),
                    reason.unwrap_or_default()
                ),
            }
        });
    }
    Ok(report)
}
