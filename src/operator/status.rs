//! What the queue looks like now: `status` (text or JSON, and `GET /v1/status`), the
//! gauges of `GET /metrics`, and `check-config`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{OpsError, open_read};
use crate::config::{Config, ConfigError};
use crate::model::capacity::refusal;
use crate::model::day_key;
use crate::runtime::metrics::Gauges;
use crate::store::{Store, StoreError, timestamp};

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
    let now_text = timestamp(now);
    // A pause whose time has passed is over, whatever the table still says.
    let paused: Vec<Value> = store
        .pauses()
        .await?
        .iter()
        .filter(|p| p.until.as_deref().is_none_or(|u| u > now_text.as_str()))
        .map(|p| json!({"scope": p.scope, "kind": p.kind, "reason": p.reason, "until": p.until}))
        .collect();
    let trace: Vec<Value> = store
        .trace_states()
        .await?
        .iter()
        .map(|t| json!({"objectType": t.object_type, "property": t.property, "state": t.state, "reason": t.reason}))
        .collect();
    let queue = store.queue_state().await?;
    let full = refusal(
        queue.queued,
        queue.max_queued,
        1,
        queue.full_reason.as_deref(),
    );
    Ok(json!({
        "writes": depth,
        "queue": {"queued": queue.queued, "maxQueued": queue.max_queued, "full": full},
        "oldestPendingAgeSeconds": oldest_age,
        "sent": {"lastMinute": minute, "lastHour": hour},
        "rateLimit": {
            "requestsInInterval": interval.requests, "requestsPerInterval": rl.requests_per_interval,
            "intervalSeconds": rl.interval.as_secs_f64(),
            "today": today, "dailyLimit": rl.daily_limit, "day": day, "timezone": rl.timezone.name(),
        },
        "paused": paused,
        "traceProperty": trace,
    }))
}

/// The gauges `GET /metrics` renders beside the counters: queue depth, oldest pending
/// age, and whether sending is paused now.
pub async fn gauges(store: &Store) -> Result<Gauges, StoreError> {
    let depth = store.queue_depth().await?;
    let oldest = store.oldest_pending().await?;
    let now = Utc::now();
    let now_text = timestamp(now);
    let pauses = store.pauses().await?;
    let in_force: Vec<_> = pauses
        .iter()
        .filter(|p| p.until.as_deref().is_none_or(|u| u > now_text.as_str()))
        .collect();
    let paused = !in_force.is_empty();
    let unreachable = in_force.iter().any(|p| p.kind == "unreachable");
    let queue = store.queue_state().await?;
    let queue_full = refusal(
        queue.queued,
        queue.max_queued,
        1,
        queue.full_reason.as_deref(),
    )
    .is_some();
    let trace_ready = store
        .trace_states()
        .await?
        .into_iter()
        .map(|t| (t.object_type, t.state == "ready"))
        .collect();
    Ok(Gauges {
        depth: depth
            .into_iter()
            .map(|d| (d.object_type, d.state, d.writes))
            .collect(),
        oldest_pending_seconds: oldest
            .and_then(|t| t.parse::<DateTime<Utc>>().ok())
            .map(|t| (now - t).num_milliseconds().max(0) as f64 / 1000.0),
        paused,
        unreachable,
        trace_ready,
        queued: queue.queued,
        max_queued: queue.max_queued,
        queue_full,
    })
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
    let queue = &v["queue"];
    let max = queue["maxQueued"].as_i64().unwrap_or(0);
    out.push(format!(
        "queue: {} writes not yet sent, of {}",
        queue["queued"],
        if max == 0 {
            "no cap".to_owned()
        } else {
            format!("at most {max} (queue.max_queued)")
        }
    ));
    if let Some(full) = queue["full"].as_str() {
        out.push(format!("NEW WRITES REFUSED: {full}"));
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
    for t in v["traceProperty"].as_array().cloned().unwrap_or_default() {
        let object_type = t["objectType"].as_str().unwrap_or("");
        let property = t["property"].as_str().unwrap_or("");
        out.push(match t["reason"].as_str() {
            None => format!("trace property: {object_type} {property} ready"),
            Some(reason) => format!(
                "trace property: {object_type} {property} UNAVAILABLE (a write of this type \
                 without a unique value is held, not resent, after a timeout or 5xx): {reason}"
            ),
        });
    }
    Ok(out)
}

/// `check-config`: the effective values, token redacted.
pub fn check_config(config: &Config, as_json: bool) -> Result<Vec<String>, ConfigError> {
    // The users file is read only here and by the daemon (see `config::ui`).
    let users = config.ui.load_users()?;
    let token = if config.access_token.is_some() {
        "[REDACTED]"
    } else {
        "(none: nothing will be sent)"
    };
    let value = json!({
        "database": {"path": config.database.path, "pollInterval": format!("{:?}", config.database.poll_interval),
                     "busyTimeout": format!("{:?}", config.database.busy_timeout),
                     "url": config.database.url.as_ref().map(|u| u.redacted()),
                     "maxConnections": config.database.max_connections},
        "socket": {"path": config.socket.path, "mode": format!("{:04o}", config.socket.mode)},
        "limits": {"maxRequestBytes": config.limits.max_request_bytes, "maxWritesPerRequest": config.limits.max_writes_per_request},
        "hubspot": {"baseUrl": config.hubspot.base_url, "apiVersion": config.hubspot.api_version,
                    "requestTimeout": format!("{:?}", config.hubspot.request_timeout),
                    "authRetryInterval": format!("{:?}", config.hubspot.auth_retry_interval), "accessToken": token,
                    "traceProperty": config.hubspot.trace_property, "createTraceProperty": config.hubspot.create_trace_property},
        "rateLimit": {"requestsPerInterval": config.rate_limit.requests_per_interval,
                      "interval": format!("{:?}", config.rate_limit.interval), "dailyLimit": config.rate_limit.daily_limit,
                      "timezone": config.rate_limit.timezone.name(), "maxInFlight": config.rate_limit.max_in_flight},
        "batching": {"maxSize": config.batching.max_size, "linger": format!("{:?}", config.batching.linger)},
        "retry": {"maxAttempts": config.retry.max_attempts, "giveUpAfter": format!("{:?}", config.retry.give_up_after),
                  "unreachableAfter": config.retry.unreachable_after, "maxProbeInterval": format!("{:?}", config.retry.max_probe_interval), "initialBackoff": format!("{:?}", config.retry.backoff.initial),
                  "maxBackoff": format!("{:?}", config.retry.backoff.max), "onAmbiguous": config.retry.on_ambiguous},
        "objects": config.objects.iter().map(|(k, o)| (k.clone(), json!({"uniqueProperty": o.unique_property, "onConflict": o.on_conflict, "traceProperty": config.trace_property(k)}))).collect::<serde_json::Map<_, _>>(),
        "log": {"level": config.log.level, "format": format!("{:?}", config.log.format).to_lowercase()},
        "ui": {"listen": config.ui.listen.map(|a| a.to_string()), "usersFile": config.ui.users_file,
               "users": users.iter().map(|u| json!({"name": u.name, "role": if u.operator { "operator" } else { "read-only" }})).collect::<Vec<_>>(),
               "secureCookie": config.ui.secure_cookie, "sessionTimeout": format!("{:?}", config.ui.session_timeout),
               "portalId": config.ui.portal_id, "appUrl": config.ui.app_url},
    });
    if as_json {
        Ok(vec![value.to_string()])
    } else {
        let mut out = vec!["configuration is valid; effective values:".to_owned()];
        out.extend(
            serde_json::to_string_pretty(&value)
                .expect("json")
                .lines()
                .map(str::to_owned),
        );
        Ok(out)
    }
}
