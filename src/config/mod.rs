//! Typed settings: loaded once from an optional TOML file and `HUBSPOT_OUTBOX__*`
//! environment variables, validated once, with the access token kept in a type that never
//! prints.
//!
//! Nothing is read from the working directory by surprise: the only file read is the one
//! named by `--config` (or `HUBSPOT_OUTBOX_CONFIG`). Every key has a default, so the daemon
//! runs with no file at all.
//!
//! - this file: the validated settings every other module reads;
//! - [`raw`]: the file's shape and its defaults, as serde reads it;
//! - [`load`]: layering (file, then environment) and validation, raw to typed;
//! - [`token`]: the secret access token and where it comes from;
//! - [`database_url`]: a PostgreSQL outbox's URL, which never prints its password;
//! - [`mod@env`]: the environment, injected so tests need not touch the process's.

pub mod database_url;
pub mod env;
pub mod load;
pub mod password;
pub mod raw;
pub mod token;
pub mod ui;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::model::{Backoff, OnAmbiguous, OnConflict, Policy};

pub use database_url::DatabaseUrl;
pub use env::{Env, MapEnv, ProcessEnv};
pub use token::{AccessToken, TOKEN_CREDENTIAL, TOKEN_ENV};
pub use ui::{UiConfig, UiUser};

/// The trace property's default name.
pub const DEFAULT_TRACE_PROPERTY: &str = "hubspot_outbox_trace_id";

/// The largest batch HubSpot's batch-create accepts.
pub const HUBSPOT_MAX_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What the config crate said, with any URL's password taken out (a TOML error
    /// quotes the line, a type error the value).
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error(
        "cannot choose a default for `{key}`: none of {vars} is set; set `{key}` in the config file"
    )]
    NoDefault {
        key: &'static str,
        vars: &'static str,
    },
}

impl From<config::ConfigError> for ConfigError {
    fn from(e: config::ConfigError) -> Self {
        Self::Load(database_url::scrub(&e.to_string()))
    }
}

pub(crate) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// How rows are grouped into requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Batching {
    /// Most inputs per request; HubSpot's cap is 100.
    pub max_size: usize,
    /// How long a partial batch may wait to fill.
    #[serde(with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for Batching {
    fn default() -> Self {
        Self {
            max_size: HUBSPOT_MAX_BATCH,
            linger: Duration::from_millis(200),
        }
    }
}

/// How long finished writes are kept (issue 9). Failed and unconfirmed writes are never
/// purged automatically.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Succeeded writes are purged this long after they succeeded; 0: kept.
    #[serde(with = "humantime_serde")]
    pub succeeded: Duration,
    /// Discarded writes are purged this long after they were discarded; 0: kept.
    #[serde(with = "humantime_serde")]
    pub discarded: Duration,
    /// A purged write's trace id is remembered this long (a retry of it is a duplicate);
    /// at least as long as the others; 0: for ever.
    #[serde(with = "humantime_serde")]
    pub trace_ids: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let day = Duration::from_secs(24 * 3600);
        Self {
            succeeded: 30 * day,
            discarded: 90 * day,
            trace_ids: 90 * day,
        }
    }
}

/// Writes that point at queued writes (issue 11).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReferencesConfig {
    /// How long a write waits for a write it points at that is not in the outbox at all
    /// (not enqueued yet); then it fails naming the missing trace id. Must not be 0.
    #[serde(with = "humantime_serde")]
    pub wait_for_missing: Duration,
}

impl Default for ReferencesConfig {
    fn default() -> Self {
        Self {
            wait_for_missing: Duration::from_secs(24 * 3600),
        }
    }
}

/// How much the queue may hold (issue 9). Past either bound new writes are refused (the
/// socket answers 503, a producer's INSERT fails); writes already accepted keep flowing.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// Most writes not yet finished (pending, waiting or in flight); 0: no cap.
    pub max_queued: u64,
    /// Least free space on the database's filesystem, in bytes (`"1GiB"`, `"500MB"` or a
    /// number); 0: not checked.
    #[serde(deserialize_with = "raw::byte_size")]
    pub min_free_disk: u64,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_queued: 5_000_000,
            min_free_disk: 1024 * 1024 * 1024,
        }
    }
}

/// Limits on what one request to the socket API may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes; larger bodies get 413.
    pub max_request_bytes: usize,
    /// Most writes in one request; more get 413.
    pub max_writes_per_request: usize,
    /// Bytes of request bodies held in memory at once, across all connections; a request
    /// past it gets 503 `server_busy` (at least `max_request_bytes`).
    pub max_buffered_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_writes_per_request: 10_000,
            max_buffered_bytes: 64 * 1024 * 1024,
        }
    }
}

/// How the daemon stops.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    /// After SIGTERM/SIGINT, how long requests in flight to HubSpot may take to finish and
    /// be reconciled; whatever is still in flight then is recovered at the next start.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// How the daemon logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    /// A tracing filter (`info`, `hubspot_outbox=debug`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings after validation, with every default resolved.
#[derive(Debug, Clone)]
pub struct Config {
    pub database: DatabaseConfig,
    pub socket: SocketConfig,
    pub limits: Limits,
    pub queue: QueueConfig,
    pub retention: RetentionConfig,
    pub references: ReferencesConfig,
    pub log: LogSettings,
    /// `None` when no token is configured: writes are accepted and kept, none are sent.
    pub access_token: Option<AccessToken>,
    pub hubspot: HubSpotConfig,
    pub rate_limit: RateLimitConfig,
    pub batching: Batching,
    pub retry: RetryConfig,
    /// Per object type settings (`[objects.<type>]`); types not listed use the defaults.
    pub objects: BTreeMap<String, ObjectConfig>,
    pub shutdown: Shutdown,
    /// The dashboard (`[ui]`).
    pub ui: UiConfig,
}

#[derive(Debug, Clone)]
pub struct HubSpotConfig {
    /// `https://api.hubapi.com`, or a simulator's address; no trailing slash.
    pub base_url: String,
    /// `v3` (`/crm/v3/objects/{type}/batch/create`) or a date version such as `2026-03`
    /// (`/crm/objects/2026-03/{type}/batch/create`).
    pub api_version: String,
    pub request_timeout: Duration,
    /// After a 401, how often one probe request tries the token again.
    pub auth_retry_interval: Duration,
    /// The property with unique values every create carries its write's trace id in, so
    /// HubSpot refuses a second record for the same write and doubt is resolved by
    /// reading it back; `None` turns it off (per type: `objects.<type>.trace_property`).
    pub trace_property: Option<String>,
    /// Whether the daemon creates the trace property where it is missing.
    pub create_trace_property: bool,
}

impl HubSpotConfig {
    /// One property of an object type (properties API, always v3).
    pub fn property_url(&self, object_type: &str, name: &str) -> String {
        format!("{}/crm/v3/properties/{object_type}/{name}", self.base_url)
    }

    /// Where properties of an object type are created.
    pub fn properties_url(&self, object_type: &str) -> String {
        format!("{}/crm/v3/properties/{object_type}", self.base_url)
    }

    /// The property groups of an object type.
    pub fn groups_url(&self, object_type: &str) -> String {
        format!("{}/crm/v3/properties/{object_type}/groups", self.base_url)
    }

    /// The batch-read URL for an object type.
    pub fn batch_read_url(&self, object_type: &str) -> String {
        self.batch_url(object_type, "read")
    }

    /// The batch-create URL for an object type.
    pub fn batch_create_url(&self, object_type: &str) -> String {
        self.batch_url(object_type, "create")
    }

    /// An object batch endpoint (`create`, `read`, `upsert`, `update`) for an object type,
    /// on the configured API version.
    pub fn batch_url(&self, object_type: &str, action: &str) -> String {
        if self.api_version == "v3" {
            format!(
                "{}/crm/v3/objects/{object_type}/batch/{action}",
                self.base_url
            )
        } else {
            format!(
                "{}/crm/objects/{}/{object_type}/batch/{action}",
                self.base_url, self.api_version
            )
        }
    }

    /// The v4 endpoint that creates associations from records of one type to records of
    /// another. It is on HubSpot's `v4` path whatever `api_version` says: no
    /// date-versioned form of it is documented.
    pub fn associations_url(&self, from: &str, to: &str) -> String {
        format!(
            "{}/crm/v4/associations/{from}/{to}/batch/create",
            self.base_url
        )
    }
}

#[derive(Debug, Clone)]
pub struct RateLimitConfig {
    /// HubSpot's burst limit for the account's tier, per `interval` (a rolling window).
    pub requests_per_interval: u32,
    pub interval: Duration,
    /// Requests per day; 0 means no daily limit.
    pub daily_limit: u64,
    /// The HubSpot account's time zone: the daily limit resets at its midnight.
    pub timezone: chrono_tz::Tz,
    /// Requests in flight at once.
    pub max_in_flight: usize,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Transient failures give a write up only after this many attempts...
    pub max_attempts: u32,
    /// ...and this long since its first transient failure.
    pub give_up_after: Duration,
    /// Consecutive requests that found HubSpot unreachable (no connection, no answer, a
    /// 5xx) before sending stops and single probes take over.
    pub unreachable_after: u32,
    /// The longest wait between two probes while HubSpot is unreachable.
    pub max_probe_interval: Duration,
    pub backoff: Backoff,
    pub on_ambiguous: OnAmbiguous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectConfig {
    /// A property whose values are unique in HubSpot (contacts: `email`).
    pub unique_property: Option<String>,
    /// Default: `adopt` when `unique_property` is set, else `fail`.
    pub on_conflict: OnConflict,
    /// `Some("")` turns the trace property off for this type; `Some(name)` overrides it.
    pub trace_property: Option<String>,
}

impl Config {
    /// The trace property configured for `object_type`, if any.
    pub fn trace_property(&self, object_type: &str) -> Option<String> {
        match self
            .objects
            .get(object_type)
            .and_then(|o| o.trace_property.clone())
        {
            Some(name) => (!name.is_empty()).then_some(name),
            None => self.hubspot.trace_property.clone(),
        }
    }

    /// The reconciler's rules for one object type.
    pub fn policy(&self, object_type: &str) -> Policy {
        let object = self.objects.get(object_type);
        Policy {
            unique_property: object.and_then(|o| o.unique_property.clone()),
            trace_property: None,
            on_conflict: object.map_or(OnConflict::Fail, |o| o.on_conflict),
            on_ambiguous: self.retry.on_ambiguous,
            max_attempts: self.retry.max_attempts,
            give_up_after: self.retry.give_up_after,
            backoff: self.retry.backoff,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// The SQLite file (without `url`); with `url` it only places the default socket.
    pub path: PathBuf,
    /// `database.url`: the outbox is in PostgreSQL there instead of the SQLite file.
    /// `path`'s other settings (`busy_timeout`, `max_size`) and `queue.min_free_disk`
    /// are SQLite's and do not apply: PostgreSQL manages its own disk.
    pub url: Option<DatabaseUrl>,
    /// Most connections the daemon opens to PostgreSQL.
    pub max_connections: u32,
    /// On PostgreSQL: LISTEN for producers' commits (the insert trigger's NOTIFY) and
    /// validate them at once; `false` polls only, for PgBouncer in transaction mode
    /// (which cannot hold a LISTEN). Polling runs either way.
    pub listen: bool,
    /// How often the daemon looks for rows that producers inserted with plain SQL.
    pub poll_interval: Duration,
    /// How long a connection waits for SQLite's write lock before failing.
    pub busy_timeout: Duration,
    /// The largest the database file may grow to, in bytes (SQLite's `max_page_count` on
    /// the daemon's connections); 0: no limit but the disk's. Past it, as on a full disk,
    /// new writes get 507 and nothing of them is stored.
    pub max_size: u64,
}

impl DatabaseConfig {
    /// The outbox's database in words for logs and errors: the SQLite file, or the
    /// PostgreSQL URL without its password.
    pub fn name(&self) -> String {
        match &self.url {
            Some(url) => url.redacted(),
            None => self.path.display().to_string(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// File mode of the socket file; connecting needs write permission.
    pub mode: u32,
    /// Who may change writes over the socket (`POST /v1/retry`) besides the daemon's own
    /// user and root.
    pub operators: Vec<Operator>,
    /// Most connections open at once; past it the longest-idle one is closed for the new
    /// one (see `ingest::socket::server`).
    pub max_connections: usize,
    /// How long a connection may wait between requests (or before its first).
    pub idle_timeout: Duration,
    /// How long a request's headers may take to arrive, from their first byte.
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// At shutdown, how long requests being answered may take before their connections
    /// are dropped; idle connections are closed at once.
    pub shutdown_timeout: Duration,
}

/// One entry of `socket.operators`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub kind: OperatorKind,
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorKind {
    User,
    Group,
}

#[cfg(test)]
mod tests;
