//! Typed settings: loaded once from an optional TOML file and `HUBSPOT_OUTBOX__*`
//! environment variables, validated once, with the access token kept in a type that never
//! prints.
//!
//! Nothing is read from the working directory by surprise: the only file read is the one
//! named by `--config` (or `HUBSPOT_OUTBOX_CONFIG`). Every key has a default, so the daemon
//! runs with no file at all.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::model::{ObjectType, OnAmbiguous, OnConflict};
use crate::reconciler::Policy;
use crate::retry::Backoff;

/// The environment variable that carries the HubSpot access token.
pub const TOKEN_ENV: &str = "HUBSPOT_ACCESS_TOKEN";

/// The largest batch HubSpot's batch-create accepts.
pub const HUBSPOT_MAX_BATCH: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
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

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The file's shape. Every section and key is optional; unknown keys are refused so a typo
/// is an error rather than a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSettings {
    database: RawDatabase,
    socket: RawSocket,
    limits: Limits,
    hubspot: RawHubSpot,
    rate_limit: RawRateLimit,
    batching: Batching,
    retry: RawRetry,
    objects: BTreeMap<String, RawObject>,
    log: LogSettings,
    shutdown: Shutdown,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawDatabase {
    path: Option<PathBuf>,
    #[serde(with = "humantime_serde")]
    poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    busy_timeout: Duration,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            path: None,
            poll_interval: Duration::from_millis(250),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSocket {
    path: Option<PathBuf>,
    #[serde(deserialize_with = "file_mode")]
    mode: u32,
}

impl Default for RawSocket {
    fn default() -> Self {
        Self {
            path: None,
            mode: 0o660,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHubSpot {
    access_token_file: Option<PathBuf>,
    base_url: String,
    api_version: String,
    #[serde(with = "humantime_serde")]
    request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    auth_retry_interval: Duration,
}

impl Default for RawHubSpot {
    fn default() -> Self {
        Self {
            access_token_file: None,
            base_url: "https://api.hubapi.com".into(),
            api_version: "v3".into(),
            request_timeout: Duration::from_secs(30),
            auth_retry_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRateLimit {
    requests_per_interval: u32,
    #[serde(with = "humantime_serde")]
    interval: Duration,
    daily_limit: u64,
    timezone: String,
    max_in_flight: usize,
}

impl Default for RawRateLimit {
    fn default() -> Self {
        Self {
            requests_per_interval: 100,
            interval: Duration::from_secs(10),
            daily_limit: 250_000,
            timezone: "UTC".into(),
            max_in_flight: 8,
        }
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawRetry {
    max_attempts: u32,
    #[serde(with = "humantime_serde")]
    initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    max_backoff: Duration,
    on_ambiguous: OnAmbiguous,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            on_ambiguous: OnAmbiguous::Resend,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawObject {
    unique_property: Option<String>,
    on_conflict: Option<OnConflict>,
}

/// Limits on what one request to the socket API may carry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body in bytes; larger bodies get 413.
    pub max_request_bytes: usize,
    /// Most writes in one request; more get 413.
    pub max_writes_per_request: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_request_bytes: 16 * 1024 * 1024,
            max_writes_per_request: 10_000,
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
}

impl HubSpotConfig {
    /// The batch-create URL for an object type.
    pub fn batch_create_url(&self, object_type: &str) -> String {
        if self.api_version == "v3" {
            format!(
                "{}/crm/v3/objects/{object_type}/batch/create",
                self.base_url
            )
        } else {
            format!(
                "{}/crm/objects/{}/{object_type}/batch/create",
                self.base_url, self.api_version
            )
        }
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
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub on_ambiguous: OnAmbiguous,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectConfig {
    /// A property whose values are unique in HubSpot (contacts: `email`).
    pub unique_property: Option<String>,
    /// Default: `adopt` when `unique_property` is set, else `fail`.
    pub on_conflict: OnConflict,
}

impl Config {
    /// The reconciler's rules for one object type.
    pub fn policy(&self, object_type: &str) -> Policy {
        let object = self.objects.get(object_type);
        Policy {
            unique_property: object.and_then(|o| o.unique_property.clone()),
            on_conflict: object.map_or(OnConflict::Fail, |o| o.on_conflict),
            on_ambiguous: self.retry.on_ambiguous,
            max_attempts: self.retry.max_attempts,
            backoff: self.retry.backoff,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub path: PathBuf,
    /// How often the daemon looks for rows that producers inserted with plain SQL.
    pub poll_interval: Duration,
    /// How long a connection waits for SQLite's write lock before failing.
    pub busy_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct SocketConfig {
    pub path: PathBuf,
    /// File mode of the socket file; connecting needs write permission.
    pub mode: u32,
}

/// The HubSpot private-app access token. Its `Debug` and `Display` print `[REDACTED]`,
/// so it cannot reach a log line or an error message by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessToken(String);

impl AccessToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    /// The token itself, for the `Authorization` header and nothing else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AccessToken([REDACTED])")
    }
}

impl fmt::Display for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Where the process looks for values: the environment, injected so tests need not
/// touch the real one.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        std::env::vars()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect()
    }
}

/// An environment made of given pairs: for tests, and for embedding the daemon with
/// settings that must not come from the process environment.
#[derive(Debug, Clone, Default)]
pub struct MapEnv(pub std::collections::HashMap<String, String>);

impl MapEnv {
    pub fn new(pairs: &[(&str, &str)]) -> Self {
        Self(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }
}

impl Env for MapEnv {
    fn var(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.0
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

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
        Ok(Self {
            database: DatabaseConfig {
                path: db_path,
                poll_interval: raw.database.poll_interval,
                busy_timeout: raw.database.busy_timeout,
            },
            socket: SocketConfig {
                path: socket_path,
                mode: raw.socket.mode,
            },
            limits: raw.limits,
            log: raw.log,
            access_token,
            hubspot,
            rate_limit,
            batching: raw.batching,
            retry,
            objects,
            shutdown: raw.shutdown,
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
    Ok(RetryConfig {
        max_attempts: raw.max_attempts,
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
        out.insert(
            name,
            ObjectConfig {
                unique_property: object.unique_property,
                on_conflict,
            },
        );
    }
    Ok(out)
}

/// The systemd credential holding the token (`LoadCredential=hubspot-access-token:...`).
pub const TOKEN_CREDENTIAL: &str = "hubspot-access-token";

/// `HUBSPOT_ACCESS_TOKEN` wins; then `hubspot.access_token_file`; then the systemd
/// credential `$CREDENTIALS_DIRECTORY/hubspot-access-token`; each trimmed. A file that is
/// named but unreadable or empty is an error, not a silent "no token".
fn load_token(file: Option<&Path>, env: &dyn Env) -> Result<Option<AccessToken>, ConfigError> {
    if let Some(token) = env.var(TOKEN_ENV) {
        return Ok(Some(AccessToken::new(token.trim())));
    }
    let credential = env
        .var("CREDENTIALS_DIRECTORY")
        .map(|dir| PathBuf::from(dir).join(TOKEN_CREDENTIAL))
        .filter(|p| p.exists());
    let Some(file) = file.map(Path::to_path_buf).or(credential) else {
        return Ok(None);
    };
    let file = file.as_path();
    let text = std::fs::read_to_string(file).map_err(|e| {
        invalid(
            "hubspot.access_token_file",
            format!("cannot read `{}`: {e}", file.display()),
        )
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid(
            "hubspot.access_token_file",
            format!("`{}` is empty", file.display()),
        ));
    }
    Ok(Some(AccessToken::new(token)))
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

/// A file mode written as an octal string (`"0660"`, `"660"`) or a TOML integer (`0o660`).
fn file_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Mode {
        Text(String),
        Number(u32),
    }
    match Mode::deserialize(d)? {
        Mode::Number(n) => Ok(n),
        Mode::Text(s) => u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|_| {
            serde::de::Error::custom(format!("`{s}` is not an octal file mode such as \"0660\""))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(toml: &str, env: &MapEnv) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("c.toml");
        std::fs::write(&file, toml).unwrap();
        Config::load(Some(&file), env)
    }

    #[test]
    fn no_file_gives_documented_defaults() {
        let c = Config::load(None, &MapEnv::new(&[("HOME", "/home/u")])).unwrap();
        assert_eq!(
            c.database.path,
            Path::new("/home/u/.local/state/hubspot-outbox/outbox.db")
        );
        assert_eq!(
            c.socket.path,
            Path::new("/home/u/.local/state/hubspot-outbox/outbox.sock")
        );
        assert_eq!(c.socket.mode, 0o660);
        assert_eq!(c.database.poll_interval, Duration::from_millis(250));
        assert_eq!(c.limits.max_request_bytes, 16 * 1024 * 1024);
        assert_eq!(c.limits.max_writes_per_request, 10_000);
        assert!(c.access_token.is_none());
    }

    #[test]
    fn the_shipped_example_config_is_valid_and_says_the_defaults() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/hubspot-outbox.toml");
        let env = MapEnv::new(&[("HOME", "/home/u")]);
        let example = Config::load(Some(&file), &env).unwrap();
        let defaults = Config::load(None, &env).unwrap();
        assert_eq!(format!("{example:?}"), format!("{defaults:?}"));
    }

    #[test]
    fn dispatch_settings_have_hubspots_defaults_and_are_checked() {
        let env = MapEnv::new(&[("HOME", "/h")]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!(
            c.hubspot.batch_create_url("contacts"),
            "https://api.hubapi.com/crm/v3/objects/contacts/batch/create"
        );
        assert_eq!(
            (c.rate_limit.requests_per_interval, c.rate_limit.daily_limit),
            (100, 250_000)
        );
        assert_eq!(c.batching.max_size, 100);
        assert_eq!(c.retry.on_ambiguous, OnAmbiguous::Resend);
        assert_eq!(c.policy("contacts").unique_property, None);

        let c = load_toml(
            "[hubspot]\nbase_url = \"http://127.0.0.1:9/\"\napi_version = \"2026-03\"\n\
             [objects.contacts]\nunique_property = \"email\"\n[objects.deals]\n",
            &env,
        )
        .unwrap();
        assert_eq!(
            c.hubspot.batch_create_url("deals"),
            "http://127.0.0.1:9/crm/objects/2026-03/deals/batch/create"
        );
        let contacts = c.policy("contacts");
        assert_eq!(contacts.unique_property.as_deref(), Some("email"));
        assert_eq!(
            contacts.on_conflict,
            OnConflict::Adopt,
            "adopt is the default with a unique property"
        );
        assert_eq!(c.policy("deals").on_conflict, OnConflict::Fail);

        for (toml, key) in [
            ("[batching]\nmax_size = 101\n", "batching.max_size"),
            (
                "[rate_limit]\ntimezone = \"Mars/Olympus\"\n",
                "rate_limit.timezone",
            ),
            ("[hubspot]\napi_version = \"v4\"\n", "hubspot.api_version"),
            ("[hubspot]\nbase_url = \"ftp://x\"\n", "hubspot.base_url"),
            ("[retry]\non_ambiguous = \"maybe\"\n", "on_ambiguous"),
            (
                "[retry]\ninitial_backoff = \"1h\"\n",
                "retry.initial_backoff",
            ),
            (
                "[objects.Contacts]\nunique_property = \"email\"\n",
                "objects",
            ),
            ("[objects.contacts]\nunique = \"email\"\n", "unique"),
        ] {
            let e = load_toml(toml, &env).unwrap_err().to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn systemd_directories_are_preferred() {
        let env = MapEnv::new(&[
            ("HOME", "/home/u"),
            ("STATE_DIRECTORY", "/var/lib/hubspot-outbox"),
            ("RUNTIME_DIRECTORY", "/run/hubspot-outbox"),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!(
            c.database.path,
            Path::new("/var/lib/hubspot-outbox/outbox.db")
        );
        assert_eq!(c.socket.path, Path::new("/run/hubspot-outbox/outbox.sock"));
    }

    #[test]
    fn environment_overrides_the_file() {
        let env = MapEnv::new(&[
            ("HOME", "/h"),
            ("HUBSPOT_OUTBOX__DATABASE__PATH", "/env/db.sqlite"),
            ("HUBSPOT_OUTBOX__LIMITS__MAX_WRITES_PER_REQUEST", "7"),
            ("HUBSPOT_OUTBOX__SOCKET__MODE", "0600"),
        ]);
        let c = load_toml(
            "[database]\npath = \"/file/db\"\n[socket]\nmode = \"0666\"\n",
            &env,
        )
        .unwrap();
        assert_eq!(c.database.path, Path::new("/env/db.sqlite"));
        assert_eq!(c.limits.max_writes_per_request, 7);
        assert_eq!(c.socket.mode, 0o600);
    }

    #[test]
    fn toml_octal_integer_mode_is_understood() {
        let c = load_toml("[socket]\nmode = 0o640\n", &MapEnv::new(&[("HOME", "/h")])).unwrap();
        assert_eq!(c.socket.mode, 0o640);
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let env = MapEnv::new(&[("HOME", "/h")]);
        let e = load_toml("[database]\npaht = \"x\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("paht"), "{e}");
        let e = load_toml("[limits]\nmax_request_bytes = \"lots\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("max_request_bytes"), "{e}");
        let e = load_toml("[socket]\nmode = \"rw\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("mode"), "{e}");
        let e = load_toml("[database]\npoll_interval = \"0s\"\n", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("database.poll_interval"), "{e}");
        let e = load_toml("[nonsense]\nx = 1\n", &env)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nonsense"), "{e}");
        let env = MapEnv::new(&[("HOME", "/h"), ("HUBSPOT_OUTBOX__SOCKET__MODDE", "1")]);
        let e = Config::load(None, &env).unwrap_err().to_string();
        assert!(e.contains("modde"), "{e}");
    }

    #[test]
    fn token_comes_from_env_or_file_and_never_prints() {
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, "pat-na1-secret\n").unwrap();
        let toml = format!(
            "[hubspot]\naccess_token_file = {:?}\n",
            token_file.display().to_string()
        );
        let c = load_toml(&toml, &MapEnv::new(&[("HOME", "/h")])).unwrap();
        let token = c.access_token.clone().unwrap();
        assert_eq!(token.expose(), "pat-na1-secret");
        assert!(!format!("{c:?}").contains("secret"));
        assert_eq!(format!("{token}"), "[REDACTED]");
        assert_eq!(format!("{token:?}"), "AccessToken([REDACTED])");

        let env = MapEnv::new(&[("HOME", "/h"), (TOKEN_ENV, "from-env")]);
        let c = load_toml(&toml, &env).unwrap();
        assert_eq!(c.access_token.unwrap().expose(), "from-env");

        let creds = tempfile::tempdir().unwrap();
        std::fs::write(creds.path().join(TOKEN_CREDENTIAL), " from-credential \n").unwrap();
        let env = MapEnv::new(&[
            ("HOME", "/h"),
            ("CREDENTIALS_DIRECTORY", creds.path().to_str().unwrap()),
        ]);
        let c = Config::load(None, &env).unwrap();
        assert_eq!(c.access_token.unwrap().expose(), "from-credential");

        let toml = "[hubspot]\naccess_token_file = \"/does/not/exist\"\n";
        let e = load_toml(toml, &MapEnv::new(&[("HOME", "/h")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("hubspot.access_token_file"), "{e}");
    }
}
