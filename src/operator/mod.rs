//! The operator's side: commands that look at and change the outbox (`status`, `failed`,
//! `show`, `retry`, `discard`, `purge`, `check-config`, `setup`, `export`, `import`) and the `enqueue` client. Each
//! command opens the database itself, read-only where it only reads, so it works whether
//! or not the daemon runs, and returns the lines to print. With `--json`, every line is
//! one JSON object. The socket's operator endpoints call the same functions.
//!
//! - [`mod@status`]: counts, rates, pauses, metrics gauges, and the effective config.
//! - [`writes`]: `failed` and `show`.
//! - [`mod@change`]: `retry` (with `--edit`) and `discard`.
//! - [`mod@purge`]: deleting old succeeded or discarded writes.
//! - [`transfer`]: `export` and `import`, moving an outbox to another database.
//! - [`render`]: a stored write as the API and `show --json` print it.
//! - [`mod@setup`]: checking and creating the trace property in HubSpot.
//! - [`enqueue`] and [`client`]: sending NDJSON to a running daemon over its socket.

pub mod change;
pub mod client;
pub mod enqueue;
pub mod purge;
pub mod render;
pub mod setup;
pub mod status;
pub mod transfer;
pub mod writes;

use chrono::{DateTime, Utc};

use crate::config::Config;
use crate::store::ops::{Filter, Selection};
use crate::store::{Store, StoreError};

pub use change::{Edit, change, edit};
pub use purge::purge;
pub use setup::setup;
pub use status::{check_config, status};
pub use writes::{failed, show};

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
    #[error("cannot create `{}`: {source}", dir.display())]
    CreateDir {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Opens the database read-only; it must exist.
pub async fn open_read(config: &Config) -> Result<Store, OpsError> {
    if let Some(url) = &config.database.url {
        return Ok(Store::connect(url.expose(), 2, crate::store::Role::Reader).await?);
    }
    let path = &config.database.path;
    if !path.exists() {
        return Err(OpsError::NoDatabase(path.display().to_string()));
    }
    Ok(Store::open_read_only(path, config.database.busy_timeout).await?)
}

/// Opens the database for changes; it must exist (commands never create an outbox).
pub async fn open_write(config: &Config) -> Result<Store, OpsError> {
    if let Some(url) = &config.database.url {
        return Ok(Store::connect(url.expose(), 2, crate::store::Role::Operator).await?);
    }
    let path = &config.database.path;
    if !path.exists() {
        return Err(OpsError::NoDatabase(path.display().to_string()));
    }
    Ok(Store::open(path, config.database.busy_timeout).await?)
}

/// Opens the outbox for changes, creating its directory and schema when they do not
/// exist yet (`migrate`, `setup`, `import`).
pub async fn open_creating(config: &Config) -> Result<Store, OpsError> {
    if let Some(url) = &config.database.url {
        return Ok(Store::connect(url.expose(), 2, crate::store::Role::Operator).await?);
    }
    let path = &config.database.path;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| OpsError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    Ok(Store::open(path, config.database.busy_timeout).await?)
}

/// Which failed (or unconfirmed) writes a command looks at: the `--object-type`,
/// `--category`, `--since` and `--limit` options, or the same fields of a socket request.
#[derive(Debug, Clone, Default)]
pub struct FilterArgs {
    pub object_type: Option<String>,
    pub category: Option<String>,
    /// A duration (`2h`) or a time (`2026-11-29T10:00:00Z`).
    pub since: Option<String>,
    pub limit: Option<i64>,
}

/// Which writes `retry` and `discard` act on: trace ids, or every failed or unconfirmed
/// write matching the filter.
#[derive(Debug, Clone, Default)]
pub struct SelectArgs {
    pub trace_ids: Vec<String>,
    pub failed: bool,
    pub unconfirmed: bool,
    pub filter: FilterArgs,
    pub dry_run: bool,
    pub json: bool,
}

/// `--since 2h` or `--since 2026-11-29T10:00:00Z`.
pub fn parse_since(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, OpsError> {
    if let Ok(d) = humantime::parse_duration(text) {
        return Ok(crate::model::earlier(now, d));
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            OpsError::Usage(format!(
                "--since `{text}` is neither a duration (2h) nor a time (2026-11-29T10:00:00Z)"
            ))
        })
}

/// The store's filter for `args`, with `--since` read relative to `now`.
pub fn filter(args: &FilterArgs, now: DateTime<Utc>) -> Result<Filter, OpsError> {
    Ok(Filter {
        object_type: args.object_type.clone(),
        category: args.category.clone(),
        since: args
            .since
            .as_deref()
            .map(|s| parse_since(s, now))
            .transpose()?,
        limit: args.limit,
    })
}

/// The store's selection for `args`; `hint` says how to choose when the choice is
/// missing or ambiguous (worded for the command line or for the socket).
pub fn selection(args: &SelectArgs, now: DateTime<Utc>, hint: &str) -> Result<Selection, OpsError> {
    match (args.trace_ids.is_empty(), args.failed, args.unconfirmed) {
        (false, false, false) => Ok(Selection::TraceIds(args.trace_ids.clone())),
        (true, true, false) => Ok(Selection::Failed(filter(&args.filter, now)?)),
        (true, false, true) => Ok(Selection::Unconfirmed(filter(&args.filter, now)?)),
        _ => Err(OpsError::Usage(hint.to_owned())),
    }
}
