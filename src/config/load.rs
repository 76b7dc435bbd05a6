//! Layering and validation: the file (if any), then `HUBSPOT_OUTBOX__SECTION__KEY`
//! variables, read into [`super::raw`] and checked once into the typed [`Config`]; every
//! error names its key.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::env::Env;
use super::raw::{RawHubSpot, RawObject, RawRateLimit, RawRetry, RawSettings};
use super::token::load_token;
use super::{
    Backoff, Config, ConfigError, DatabaseConfig, DatabaseUrl, HUBSPOT_MAX_BATCH, HubSpotConfig,
    ObjectConfig, OnConflict, Operator, OperatorKind, RateLimitConfig, ReferencesConfig,
    RetentionConfig, RetryConfig, SocketConfig, invalid,
};
use crate::model::ObjectType;

impl Config {
    /// Loads the file (if any), applies `HUBSPOT_OUTBOX__SECTION__KEY` overrides, validates,
    /// and resolves defaults.
    pub fn load(file: Option<&Path>, env: &dyn Env) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(file) = file {
            builder = builder.add_source(
                config::File::from(file)
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let overrides: config::Map<String, String> = env
            .vars_with_prefix("HUBSPOT_OUTBOX__")
            .into_iter()
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix("HUBSPOT_OUTBOX")
                .prefix_separator("__")
                .separator("__")
                .source(Some(overrides)),
        );
        let raw: RawSettings = builder.build()?.try_deserialize()?;
        Self::from_raw(raw, env)
    }

    fn from_raw(raw: RawSettings, env: &dyn Env) -> Result<Self, ConfigError> {
        let db_path = match raw.database.path {
            Some(p) => p,
            None => default_state_dir(env)?.join("outbox.db"),
        };
        if db_path.as_os_str().is_empty() {
            return Err(invalid("database.path", "must not be empty"));
        }
        let socket_path = match raw.socket.path {
            Some(p) => p,
            None => default_socket_path(env, &db_path),
        };
        // sun_path holds 108 bytes including the terminating NUL.
        if socket_path.as_os_str().len() > 107 {
            return Err(invalid(
                "socket.path",
                format!(
                    "`{}` is longer than the 107 bytes a Unix socket path may have",
                    socket_path.display()
                ),
            ));
        }
        if raw.socket.mode > 0o777 {
            return Err(invalid(
                "socket.mode",
                "must be a permission mode such as \"0660\"",
            ));
        }
        if raw.socket.max_connections == 0 {
            return Err(invalid("socket.max_connections", "must be at least 1"));
        }
        for (key, value) in [
            ("socket.idle_timeout", raw.socket.idle_timeout),
            ("socket.header_timeout", raw.socket.header_timeout),
            ("socket.body_timeout", raw.socket.body_timeout),
        ] {
            if value.is_zero() {
                return Err(invalid(key, "must be above zero"));
            }
        }
        if raw.limits.max_buffered_bytes < raw.limits.max_request_bytes {
            return Err(invalid(
                "limits.max_buffered_bytes",
                format!(
                    "must be at least limits.max_request_bytes ({}), or no request of that size could be read",
                    raw.limits.max_request_bytes
                ),
            ));
        }
        if raw.database.poll_interval.is_zero() {
            return Err(invalid("database.poll_interval", "must be above zero"));
        }
        if raw.limits.max_request_bytes < 1024 {
            return Err(invalid("limits.max_request_bytes", "must be at least 1024"));
        }
        if raw.limits.max_writes_per_request == 0 {
            return Err(invalid(
                "limits.max_writes_per_request",
                "must be at least 1",
            ));
        }
        tracing_subscriber::EnvFilter::try_new(&raw.log.level)
            .map_err(|e| invalid("log.level", e.to_string()))?;
        let access_token = load_token(raw.hubspot.access_token_file.as_deref(), env)?;
        let hubspot = hubspot_config(raw.hubspot)?;
        let rate_limit = rate_limit_config(raw.rate_limit)?;
        if !(1..=HUBSPOT_MAX_BATCH).contains(&raw.batching.max_size) {
            return Err(invalid(
                "batching.max_size",
                format!("must be 1 to {HUBSPOT_MAX_BATCH} (HubSpot's cap)"),
            ));
        }
        let retry = retry_config(raw.retry)?;
        let objects = objects_config(raw.objects)?;
        let url = match raw.database.url.as_deref() {
            None | Some("") => None,
            Some(url) => Some(DatabaseUrl::parse(url).map_err(|e| invalid("database.url", e))?),
        };
        if url.is_some() && raw.database.max_connections < 2 {
            return Err(invalid("database.max_connections", "must be at least 2"));
        }
        let mut queue = raw.queue;
        if url.is_some() {
            // PostgreSQL's disk is the server's, not this host's: it manages it itself.
            queue.min_free_disk = 0;
        }
        Ok(Self {
            database: DatabaseConfig {
                path: db_path,
                url,
                max_connections: raw.database.max_connections,
                listen: raw.database.listen,
                poll_interval: raw.database.poll_interval,
                busy_timeout: raw.database.busy_timeout,
                max_size: raw.database.max_size,
            },
            socket: SocketConfig {
                path: socket_path,
                mode: raw.socket.mode,
                operators: operators(raw.socket.operators)?,
                max_connections: raw.socket.max_connections,
                idle_timeout: raw.socket.idle_timeout,
                header_timeout: raw.socket.header_timeout,
                body_timeout: raw.socket.body_timeout,
                shutdown_timeout: raw.socket.shutdown_timeout,
            },
            limits: raw.limits,
            queue,
            retention: retention(raw.retention)?,
            references: references(raw.references)?,
            log: raw.log,
            access_token,
            hubspot,
            rate_limit,
            batching: raw.batching,
            retry,
            objects,
            shutdown: raw.shutdown,
            ui: super::ui::ui(raw.ui, env)?,
        })
    }
}

fn hubspot_config(raw: RawHubSpot) -> Result<HubSpotConfig, ConfigError> {
    let url = reqwest::Url::parse(&raw.base_url).map_err(|e| {
        invalid(
            "hubspot.base_url",
            format!("`{}` is not a URL: {e}", raw.base_url),
        )
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.query().is_some() {
        return Err(invalid(
            "hubspot.base_url",
            "must be an http(s) URL without a query",
        ));
    }
    let version_ok = raw.api_version == "v3" || {
        let b = raw.api_version.as_bytes();
        b.len() == 7
            && b[4] == b'-'
            && b.iter()
                .enumerate()
                .all(|(i, c)| i == 4 || c.is_ascii_digit())
    };
    if !version_ok {
        return Err(invalid(
            "hubspot.api_version",
            format!(
                "`{}` is neither \"v3\" nor a date version such as \"2026-03\"",
                raw.api_version
            ),
        ));
    }
    if raw.request_timeout.is_zero() {
        return Err(invalid("hubspot.request_timeout", "must be above zero"));
    }
    if raw.auth_retry_interval.is_zero() {
        return Err(invalid("hubspot.auth_retry_interval", "must be above zero"));
    }
    Ok(HubSpotConfig {
        base_url: raw.base_url.trim_end_matches('/').to_owned(),
        api_version: raw.api_version,
        request_timeout: raw.request_timeout,
        auth_retry_interval: raw.auth_retry_interval,
        trace_property: property_name("hubspot.trace_property", &raw.trace_property)?,
        create_trace_property: raw.create_trace_property,
    })
}

fn rate_limit_config(raw: RawRateLimit) -> Result<RateLimitConfig, ConfigError> {
    if raw.requests_per_interval == 0 {
        return Err(invalid(
            "rate_limit.requests_per_interval",
            "must be at least 1",
        ));
    }
    if raw.interval.is_zero() {
        return Err(invalid("rate_limit.interval", "must be above zero"));
    }
    if raw.max_in_flight == 0 {
        return Err(invalid("rate_limit.max_in_flight", "must be at least 1"));
    }
    let timezone = raw.timezone.parse().map_err(|_| {
        invalid(
            "rate_limit.timezone",
            format!(
                "`{}` is not an IANA time zone such as \"America/New_York\"",
                raw.timezone
            ),
        )
    })?;
    Ok(RateLimitConfig {
        requests_per_interval: raw.requests_per_interval,
        interval: raw.interval,
        daily_limit: raw.daily_limit,
        timezone,
        max_in_flight: raw.max_in_flight,
    })
}

fn retry_config(raw: RawRetry) -> Result<RetryConfig, ConfigError> {
    if raw.max_attempts == 0 {
        return Err(invalid("retry.max_attempts", "must be at least 1"));
    }
    if raw.initial_backoff.is_zero() || raw.initial_backoff > raw.max_backoff {
        return Err(invalid(
            "retry.initial_backoff",
            "must be above zero and at most retry.max_backoff",
        ));
    }
    if raw.unreachable_after == 0 {
        return Err(invalid("retry.unreachable_after", "must be at least 1"));
    }
    if raw.max_probe_interval < Duration::from_millis(10) {
        return Err(invalid("retry.max_probe_interval", "must be at least 10ms"));
    }
    Ok(RetryConfig {
        max_attempts: raw.max_attempts,
        give_up_after: raw.give_up_after,
        unreachable_after: raw.unreachable_after,
        max_probe_interval: raw.max_probe_interval,
        backoff: Backoff {
            initial: raw.initial_backoff,
            max: raw.max_backoff,
        },
        on_ambiguous: raw.on_ambiguous,
    })
}

fn objects_config(
    raw: BTreeMap<String, RawObject>,
) -> Result<BTreeMap<String, ObjectConfig>, ConfigError> {
    let mut out = BTreeMap::new();
    for (name, object) in raw {
        ObjectType::parse(&name)
            .map_err(|m| invalid("objects", format!("[objects.{name}]: {m}")))?;
        if object.unique_property.as_deref() == Some("") {
            return Err(invalid(
                "objects",
                format!("[objects.{name}] unique_property must not be empty"),
            ));
        }
        let on_conflict = object
            .on_conflict
            .unwrap_or(if object.unique_property.is_some() {
                OnConflict::Adopt
            } else {
                OnConflict::Fail
            });
        if let Some(trace) = &object.trace_property {
            property_name("objects", trace)?;
        }
        out.insert(
            name,
            ObjectConfig {
                unique_property: object.unique_property,
                on_conflict,
                trace_property: object.trace_property,
            },
        );
    }
    Ok(out)
}

/// A HubSpot property's internal name: lowercase letters, digits and underscores,
/// starting with a letter, at most 100 characters; `""` is `None` (off).
fn property_name(key: &'static str, name: &str) -> Result<Option<String>, ConfigError> {
    if name.is_empty() {
        return Ok(None);
    }
    let ok = name.len() <= 100
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(Some(name.to_owned()))
    } else {
        Err(invalid(
            key,
            format!(
                "`{name}` is not a property name: lowercase letters, digits and underscores, starting with a letter"
            ),
        ))
    }
}

/// `$STATE_DIRECTORY` (systemd's `StateDirectory=`), else `$XDG_STATE_HOME/hubspot-outbox`,
/// else `$HOME/.local/state/hubspot-outbox`.
fn default_state_dir(env: &dyn Env) -> Result<PathBuf, ConfigError> {
    if let Some(dir) = env.var("STATE_DIRECTORY") {
        // systemd passes a colon-separated list when several directories are configured.
        let first = dir.split(':').next().unwrap_or_default();
        return Ok(PathBuf::from(first));
    }
    if let Some(dir) = env.var("XDG_STATE_HOME") {
        return Ok(PathBuf::from(dir).join("hubspot-outbox"));
    }
    if let Some(home) = env.var("HOME") {
        return Ok(PathBuf::from(home).join(".local/state/hubspot-outbox"));
    }
    Err(ConfigError::NoDefault {
        key: "database.path",
        vars: "STATE_DIRECTORY, XDG_STATE_HOME, HOME",
    })
}

/// `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`), else
/// `$XDG_RUNTIME_DIR/hubspot-outbox`, else beside the database.
fn default_socket_path(env: &dyn Env, db_path: &Path) -> PathBuf {
    if let Some(dir) = env.var("RUNTIME_DIRECTORY") {
        let first = dir.split(':').next().unwrap_or_default();
        return PathBuf::from(first).join("outbox.sock");
    }
    if let Some(dir) = env.var("XDG_RUNTIME_DIR") {
        return PathBuf::from(dir).join("hubspot-outbox/outbox.sock");
    }
    db_path
        .parent()
        .unwrap_or(Path::new("."))
        .join("outbox.sock")
}

/// `socket.operators`: `"user:NAME"`, `"group:NAME"`, or a bare user name. The names are
/// looked up when the daemon starts.
fn operators(raw: Vec<String>) -> Result<Vec<Operator>, ConfigError> {
    raw.into_iter()
        .map(|entry| {
            let (kind, name) = match entry.split_once(':') {
                Some(("user", name)) => (OperatorKind::User, name),
                Some(("group", name)) => (OperatorKind::Group, name),
                Some(_) => {
                    return Err(invalid(
                        "socket.operators",
                        format!("`{entry}`: write \"user:NAME\", \"group:NAME\" or a user name"),
                    ));
                }
                None => (OperatorKind::User, entry.as_str()),
            };
            if name.is_empty() {
                return Err(invalid(
                    "socket.operators",
                    format!("`{entry}` names no one"),
                ));
            }
            Ok(Operator {
                kind,
                name: name.to_owned(),
            })
        })
        .collect()
}

/// The trace ids of purged writes must be remembered at least as long as the writes are
/// kept, or a retry between the two would be taken as new.
fn references(r: ReferencesConfig) -> Result<ReferencesConfig, ConfigError> {
    if r.wait_for_missing.is_zero() {
        return Err(invalid(
            "references.wait_for_missing",
            "must be more than 0: a write enqueued before the write it points at waits this \
             long for it",
        ));
    }
    Ok(r)
}

fn retention(r: RetentionConfig) -> Result<RetentionConfig, ConfigError> {
    for (name, kept) in [("succeeded", r.succeeded), ("discarded", r.discarded)] {
        // 0 keeps for ever: writes never purged need no remembering, and trace ids
        // remembered for ever outlast any write.
        if !kept.is_zero() && !r.trace_ids.is_zero() && r.trace_ids < kept {
            return Err(invalid(
                "retention.trace_ids",
                format!(
                    "must be at least retention.{name} ({}), so a retry of a purged write is \
                     still a duplicate",
                    humantime::format_duration(kept)
                ),
            ));
        }
    }
    Ok(r)
}
