//! The operator commands (`status`, `failed`, `show`, `retry`, `discard`, `purge`,
//! `migrate`, `check-config`): each opens the database itself, read-only where it only
//! reads, so it works whether or not the daemon runs, and returns the lines to print.
//! With `--json`, every line is one JSON object.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::cli::{FilterArgs, SelectArgs};
use crate::config::Config;
use crate::scheduler::day_key;
use crate::store::ops::{Filter, Purgeable, Selection};
use crate::store::{Store, StoreError};
use crate::write::parse_stored;

#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "no outbox at `{0}` (has the daemon or `hubspot-outbox migrate` run with this config?)"
    )]
    NoDatabase(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Usage(String),
    #[error("no write with objectWriteTraceId `{0}`")]
    NotFound(String),
}

/// Opens the database read-only; it must exist.
pub async fn open_read(config: &Config) -> Result<Store, OpsError> {
    let path = &config.database.path;
    if !path.exists() {
        return Err(OpsError::NoDatabase(path.display().to_string()));
    }
    Ok(Store::open_read_only(path, config.database.busy_timeout).await?)
}

/// Opens the database for changes; it must exist (commands never create an outbox).
pub async fn open_write(config: &Config) -> Result<Store, OpsError> {
    let path = &config.database.path;
    if !path.exists() {
        return Err(OpsError::NoDatabase(path.display().to_string()));
    }
    Ok(Store::open(path, config.database.busy_timeout).await?)
}

/// `--since 2h` or `--since 2026-11-29T10:00:00Z`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, OpsError> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(now - chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            OpsError::Usage(format!(
                "--since `{text}` is neither a duration (2h) nor a time (2026-11-29T10:00:00Z)"
            ))
        })
}

fn filter(args: &FilterArgs) -> Result<Filter, OpsError> {
    Ok(Filter {
        object_type: args.object_type.clone(),
        category: args.category.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| parse_since(s, Utc::now()))
            .transpose()?,
        limit: args.limit,
    })
}

fn selection(args: &SelectArgs) -> Result<Selection, OpsError> {
    match (args.trace_ids.is_empty(), args.failed, args.unconfirmed) {
        (false, false, false) => Ok(Selection::TraceIds(args.trace_ids.clone())),
        (true, true, false) => Ok(Selection::Failed(filter(&args.filter)?)),
        (true, false, true) => Ok(Selection::Unconfirmed(filter(&args.filter)?)),
        _ => Err(OpsError::Usage(
            "choose the writes: TRACE_ID..., or --failed, or --unconfirmed (with optional filters)"
                .into(),
        )),
    }
}

/// What `status --json` prints and `GET /v1/status` answers.
pub async fn status_value(store: &Store, config: &Config) -> Result<Value, StoreError> {
    let now = Utc::now();
    let depth = store.queue_depth().await?;
    let oldest_age = store
        .oldest_pending()
        .await?
        .as_deref()
        .and_then(|t| t.parse::<DateTime<Utc>>().ok())
        .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
    let minute = store.sent_since(now - chrono::Duration::minutes(1)).await?;
    let hour = store.sent_since(now - chrono::Duration::hours(1)).await?;
    let rl = &config.rate_limit;
    let interval = store
        .sent_since(now - chrono::Duration::from_std(rl.interval).unwrap_or_default())
        .await?;
    let day = day_key(now, &rl.timezone);
    let today = store.daily_requests(&day).await?;
    let now_text = crate::store::timestamp(now);
    // A pause whose time has passed is over, whatever the table still says.
    let paused: Vec<Value> = store
        .pauses()
        .await?
        .iter()
        .filter(|p| p.until.as_deref().is_none_or(|u| u > now_text.as_str()))
        .map(|p| json!({"scope": p.scope, "kind": p.kind, "reason": p.reason, "until": p.until}))
        .collect();
    Ok(json!({
        "writes": depth,
        "oldestPendingAgeSeconds": oldest_age,
        "sent": {"lastMinute": minute, "lastHour": hour},
        "rateLimit": {
            "requestsInInterval": interval.requests, "requestsPerInterval": rl.requests_per_interval,
            "intervalSeconds": rl.interval.as_secs_f64(),
            "today": today, "dailyLimit": rl.daily_limit, "day": day, "timezone": rl.timezone.name(),
        },
        "paused": paused,
    }))
}

/// `status`: one JSON object (`--json`) or a few lines of text.
pub async fn status(config: &Config, as_json: bool) -> Result<Vec<String>, OpsError> {
    let store = open_read(config).await?;
    let v = status_value(&store, config).await?;
    store.close().await;
    if as_json {
        return Ok(vec![v.to_string()]);
    }
    let mut out = vec!["writes:".to_owned()];
    let depth = v["writes"].as_array().cloned().unwrap_or_default();
    if depth.is_empty() {
        out.push("  (none)".into());
    }
    for d in &depth {
        out.push(format!(
            "  {:<20} {:<12} {}",
            d["objectType"].as_str().unwrap_or(""),
            d["state"].as_str().unwrap_or(""),
            d["writes"]
        ));
    }
    out.push(match v["oldestPendingAgeSeconds"].as_f64() {
        Some(age) => format!(
            "oldest pending write: {} old",
            humantime::format_duration(Duration::from_secs(age as u64))
        ),
        None => "oldest pending write: none pending".into(),
    });
    let sent = &v["sent"];
    out.push(format!(
        "sent: {} requests ({} writes) in the last minute, {} requests ({} writes) in the last hour",
        sent["lastMinute"]["requests"], sent["lastMinute"]["writes"], sent["lastHour"]["requests"], sent["lastHour"]["writes"]
    ));
    let rl = &v["rateLimit"];
    let daily = config.rate_limit.daily_limit;
    out.push(format!(
        "rate limit: {} of {} requests in the last {}; today ({}, {}) {} of {}",
        rl["requestsInInterval"],
        rl["requestsPerInterval"],
        humantime::format_duration(config.rate_limit.interval),
        rl["day"].as_str().unwrap_or(""),
        rl["timezone"].as_str().unwrap_or(""),
        rl["today"],
        if daily == 0 {
            "unlimited".to_owned()
        } else {
            daily.to_string()
        }
    ));
    let paused = v["paused"].as_array().cloned().unwrap_or_default();
    if paused.is_empty() {
        out.push("sending: not paused".into());
    }
    for p in paused {
        out.push(format!(
            "sending paused ({}, {}): {}{}",
            p["scope"].as_str().unwrap_or(""),
            p["kind"].as_str().unwrap_or(""),
            p["reason"].as_str().unwrap_or(""),
            p["until"]
                .as_str()
                .map(|u| format!(" (until {u})"))
                .unwrap_or_default()
        ));
    }
    Ok(out)
}

/// `failed`: one line (or JSON object) per failed write, newest first.
pub async fn failed(
    config: &Config,
    args: &FilterArgs,
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    let f = filter(args)?;
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
                    "{}  {}  {}  attempts {}  {}: {}",
                    r.failed_at,
                    r.trace_id,
                    r.object_type,
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
    let mut value = crate::socket::routes::write_json(&write);
    value["history"] = Value::Array(history_json);
    if as_json {
        return Ok(vec![value.to_string()]);
    }
    let mut out = vec![
        format!("{}  {}  {}", write.trace_id, write.object_type, write.state),
        format!("hubspot id: {}", write.hubspot_id.as_deref().unwrap_or("-")),
        format!("attempts: {}", write.attempts),
        format!("properties: {}", write.properties),
        format!("associations: {}", write.associations),
        format!("created {}, updated {}", write.created_at, write.updated_at),
    ];
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

/// `retry` (with `--edit`: fix properties first) and `discard`.
pub async fn change(
    config: &Config,
    args: &SelectArgs,
    discard: bool,
) -> Result<Vec<String>, OpsError> {
    let selection = selection(args)?;
    let store = open_write(config).await?;
    let (verb, n) = if args.dry_run {
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

/// `retry --edit TRACE_ID --set name=value... --unset name...`.
pub async fn edit(
    config: &Config,
    trace_id: &str,
    sets: &[String],
    unsets: &[String],
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    if sets.is_empty() && unsets.is_empty() {
        return Err(OpsError::Usage(
            "--edit needs at least one --set NAME=VALUE or --unset NAME".into(),
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
    let checked =
        parse_stored(&write.object_type, &text, &write.associations).map_err(|errors| {
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
        .edit_and_retry(trace_id, &checked.properties_json())
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

/// `purge [--succeeded-older-than D] [--discarded-older-than D]`.
pub async fn purge(
    config: &Config,
    succeeded: Option<Duration>,
    discarded: Option<Duration>,
    dry_run: bool,
    as_json: bool,
) -> Result<Vec<String>, OpsError> {
    if succeeded.is_none() && discarded.is_none() {
        return Err(OpsError::Usage(
            "say what to purge: --succeeded-older-than and/or --discarded-older-than".into(),
        ));
    }
    let store = open_write(config).await?;
    let mut out = Vec::new();
    for (state, age) in [
        (Purgeable::Succeeded, succeeded),
        (Purgeable::Discarded, discarded),
    ] {
        let Some(age) = age else { continue };
        let before = Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        let n = if dry_run {
            store.count_purgeable(state, before).await?
        } else {
            store.purge(state, before).await?
        };
        let before = crate::store::timestamp(before);
        let name = state.as_str();
        out.push(if as_json {
            json!({"action": "purge", "state": name, "dryRun": dry_run, "writes": n, "before": before}).to_string()
        } else if dry_run {
            format!("would purge {n} {name} write(s)")
        } else {
            format!("purged {n} {name} write(s) last changed before {before}")
        });
    }
    store.close().await;
    Ok(out)
}

/// `check-config`: the effective values, token redacted.
pub fn check_config(config: &Config, as_json: bool) -> Vec<String> {
    let token = if config.access_token.is_some() {
        "[REDACTED]"
    } else {
        "(none: nothing will be sent)"
    };
    let value = json!({
        "database": {"path": config.database.path, "pollInterval": format!("{:?}", config.database.poll_interval),
                     "busyTimeout": format!("{:?}", config.database.busy_timeout)},
        "socket": {"path": config.socket.path, "mode": format!("{:04o}", config.socket.mode)},
        "limits": {"maxRequestBytes": config.limits.max_request_bytes, "maxWritesPerRequest": config.limits.max_writes_per_request},
        "hubspot": {"baseUrl": config.hubspot.base_url, "apiVersion": config.hubspot.api_version,
                    "requestTimeout": format!("{:?}", config.hubspot.request_timeout),
                    "authRetryInterval": format!("{:?}", config.hubspot.auth_retry_interval), "accessToken": token},
        "rateLimit": {"requestsPerInterval": config.rate_limit.requests_per_interval,
                      "interval": format!("{:?}", config.rate_limit.interval), "dailyLimit": config.rate_limit.daily_limit,
                      "timezone": config.rate_limit.timezone.name(), "maxInFlight": config.rate_limit.max_in_flight},
        "batching": {"maxSize": config.batching.max_size, "linger": format!("{:?}", config.batching.linger)},
        "retry": {"maxAttempts": config.retry.max_attempts, "initialBackoff": format!("{:?}", config.retry.backoff.initial),
                  "maxBackoff": format!("{:?}", config.retry.backoff.max), "onAmbiguous": config.retry.on_ambiguous},
        "objects": config.objects.iter().map(|(k, o)| (k.clone(), json!({"uniqueProperty": o.unique_property, "onConflict": o.on_conflict}))).collect::<serde_json::Map<_, _>>(),
        "log": {"level": config.log.level, "format": format!("{:?}", config.log.format).to_lowercase()},
    });
    if as_json {
        vec![value.to_string()]
    } else {
        let mut out = vec!["configuration is valid; effective values:".to_owned()];
        out.extend(
            serde_json::to_string_pretty(&value)
                .expect("json")
                .lines()
                .map(str::to_owned),
        );
        out
    }
}
