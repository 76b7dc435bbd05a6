//! The config file's shape, as serde reads it: every section and key optional, each with
//! its default, unknown keys refused. [`super::load`] turns it into the typed settings.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{
    Batching, Limits, LogSettings, QueueConfig, ReferencesConfig, RetentionConfig, Shutdown,
};
use crate::model::{OnAmbiguous, OnConflict};

/// The file's shape. Every section and key is optional; unknown keys are refused so a typo
/// is an error rather than a silently ignored setting.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    pub database: RawDatabase,
    pub socket: RawSocket,
    pub limits: Limits,
    pub queue: QueueConfig,
    pub retention: RetentionConfig,
    pub references: ReferencesConfig,
    pub hubspot: RawHubSpot,
    pub rate_limit: RawRateLimit,
    pub batching: Batching,
    pub retry: RawRetry,
    pub objects: BTreeMap<String, RawObject>,
    pub log: LogSettings,
    pub shutdown: Shutdown,
    pub ui: super::ui::RawUi,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDatabase {
    pub path: Option<PathBuf>,
    pub url: Option<String>,
    pub max_connections: u32,
    pub listen: bool,
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub busy_timeout: Duration,
    #[serde(deserialize_with = "byte_size")]
    pub max_size: u64,
}

impl Default for RawDatabase {
    fn default() -> Self {
        Self {
            path: None,
            url: None,
            max_connections: 8,
            listen: true,
            poll_interval: Duration::from_millis(250),
            busy_timeout: Duration::from_secs(5),
            max_size: 0,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSocket {
    pub path: Option<PathBuf>,
    #[serde(deserialize_with = "file_mode")]
    pub mode: u32,
    pub operators: Vec<String>,
    pub max_connections: usize,
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub header_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub body_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for RawSocket {
    fn default() -> Self {
        Self {
            path: None,
            mode: 0o660,
            operators: Vec::new(),
            max_connections: 256,
            idle_timeout: Duration::from_secs(60),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHubSpot {
    pub access_token_file: Option<PathBuf>,
    pub base_url: String,
    pub api_version: String,
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub auth_retry_interval: Duration,
    pub trace_property: String,
    pub create_trace_property: bool,
}

impl Default for RawHubSpot {
    fn default() -> Self {
        Self {
            access_token_file: None,
            base_url: "https://api.hubapi.com".into(),
            api_version: "v3".into(),
            request_timeout: Duration::from_secs(30),
            auth_retry_interval: Duration::from_secs(60),
            trace_property: crate::config::DEFAULT_TRACE_PROPERTY.into(),
            create_trace_property: true,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRateLimit {
    pub requests_per_interval: u32,
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub daily_limit: u64,
    pub timezone: String,
    pub max_in_flight: usize,
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRetry {
    pub max_attempts: u32,
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
    pub unreachable_after: u32,
    #[serde(with = "humantime_serde")]
    pub max_probe_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub initial_backoff: Duration,
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    pub on_ambiguous: OnAmbiguous,
}

impl Default for RawRetry {
    fn default() -> Self {
        Self {
            max_attempts: 8,
            give_up_after: Duration::from_secs(24 * 3600),
            unreachable_after: 5,
            max_probe_interval: Duration::from_secs(60),
            initial_backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(600),
            on_ambiguous: OnAmbiguous::Hold,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawObject {
    pub unique_property: Option<String>,
    pub on_conflict: Option<OnConflict>,
    pub trace_property: Option<String>,
}

/// A file mode written as an octal string (`"0660"`, `"660"`) or a TOML integer (`0o660`).
pub fn file_mode<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
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

/// A size in bytes: a number, or text with a unit (`"1GiB"`, `"500MB"`, `"64KiB"`, `"0"`).
pub fn byte_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(s) => parse_byte_size(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{s}` is not a size such as \"1GiB\", \"500MB\" or a number of bytes"
            ))
        }),
    }
}

fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(factor)
}
