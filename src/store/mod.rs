//! The outbox: every SQL statement of the daemon lives under this module, one function
//! per state change, one family of them per file. The stages above speak `crate::model`
//! types to it through [`Store`], a handle on whichever database holds the outbox; only
//! the rows that exist for the store's own callers (look-ups, operator views, due counts)
//! are defined here.
//!
//! Each family is a trait, declared with its rows in its own file here and implemented
//! once per database, under [`sqlite`] and [`postgres`]: the contract
//! is written once and each database says it in its own SQL. A trait per family, not one
//! for everything, so each implementation file holds one family. sqlx's `Any` driver is
//! not used: it cannot say `BEGIN IMMEDIATE`, `SKIP LOCKED`, `LISTEN` or advisory locks.
//! A [`Store`] dereferences to `dyn Outbox`, whose supertraits' methods need no import.
//!
//! - [`browse`]: the dashboard's list of writes (filtered, paged by key) and error groups.
//! - [`ingest`]: storing accepted writes (group commit, idempotency look-ups).
//! - [`intake`]: validating rows that producers inserted with plain SQL.
//! - [`claim`]: due object types, claiming a batch, rows a crash left in flight.
//! - [`settle`]: applying a reconciler plan to a batch's rows.
//! - [`pauses`]: recorded pauses and the day's request count.
//! - [`ops`]: what operators change (retry, discard, edit, purge) and count.
//! - [`read`]: looking writes and their error history up.
//! - [`references`]: writes waiting for queued writes they point at.
//! - [`queue`]: how full the queue is.
//! - [`trace`]: each object type's trace property state; requests counted outside claims.
//! - [`transfer`]: reading a whole outbox out and another one in (`export`, `import`).

pub mod audit;
pub mod browse;
pub mod claim;
pub mod ingest;
pub mod intake;
pub mod ops;
pub mod pauses;
pub mod postgres;
pub mod queue;
pub mod read;
pub mod references;
pub mod settle;
pub mod sqlite;
pub mod trace;
pub mod transfer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use sqlite::SqliteStore;

/// The whole outbox, whichever database holds it: every family, and what the daemon
/// needs of the connection itself.
#[async_trait]
pub trait Outbox:
    audit::AuditStore
    + browse::BrowseStore
    + claim::ClaimStore
    + ingest::IngestStore
    + intake::IntakeStore
    + ops::OpsStore
    + pauses::PauseStore
    + queue::QueueStore
    + read::ReadStore
    + references::ReferenceStore
    + settle::SettleStore
    + trace::TraceStore
    + transfer::TransferStore
    + std::fmt::Debug
    + Send
    + Sync
{
    /// Whether the database answers a query: what `GET /healthz` reports.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Closes every connection (on SQLite, checkpointing the WAL on the last one).
    async fn close(&self);

    /// Whether other daemons may share this outbox (PostgreSQL): rows in flight may then
    /// be a dead daemon's at any time, not only at start, and are looked for periodically.
    fn is_shared(&self) -> bool {
        false
    }

    /// Wakes `inserted` whenever a producer commits new rows, where the database can say
    /// so (PostgreSQL's LISTEN/NOTIFY); polling finds them otherwise, and always finds
    /// what a notification missed.
    fn listen(&self, _inserted: Arc<tokio::sync::Notify>) {}

    /// Whether this daemon is the one that runs maintenance (retention) now: always
    /// alone; sharing the outbox, the one holding the maintenance lock, which passes to
    /// another daemon when its holder stops.
    async fn leads_maintenance(&self) -> bool {
        true
    }
}

/// What a PostgreSQL handle is opened for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The daemon: migrates, and holds a liveness lock so other daemons can tell whether
    /// its rows in flight are still being sent.
    Daemon,
    /// An operator's command that changes writes: migrates, claims nothing.
    Operator,
    /// A command that only looks: no migration (its role may lack the right).
    Reader,
}

/// A handle on the outbox. Cloning shares the database's pools. It dereferences to
/// [`Outbox`]: the family traits' methods are called on it directly.
#[derive(Clone, Debug)]
pub struct Store(Arc<dyn Outbox>);

impl std::ops::Deref for Store {
    type Target = dyn Outbox;

    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path` for the daemon (see
    /// [`SqliteStore::open`]).
    pub async fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(SqliteStore::open(path, busy_timeout).await?)))
    }

    /// [`Store::open`] with the file capped at `max_size` bytes (0: no cap; see
    /// [`SqliteStore::open_limited`]).
    pub async fn open_limited(
        path: &Path,
        busy_timeout: Duration,
        max_size: u64,
    ) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(
            SqliteStore::open_limited(path, busy_timeout, max_size).await?,
        )))
    }

    /// The outbox in the PostgreSQL database at `url`, with up to `max_connections`
    /// connections, opened for `role` (see [`postgres::PgStore::connect`]).
    pub async fn connect(url: &str, max_connections: u32, role: Role) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(
            postgres::PgStore::connect(url, max_connections, role).await?,
        )))
    }

    /// Opens an existing SQLite database read-only, for commands that only look.
    pub async fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        Ok(Self(Arc::new(
            SqliteStore::open_read_only(path, busy_timeout).await?,
        )))
    }
}

/// Every way the store can fail. The callers only need to know "the outbox is not usable
/// right now"; the message says why.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlx(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("SQLite did not switch to {expected} journal mode (it reports `{actual}`)")]
    JournalMode {
        expected: &'static str,
        actual: String,
    },
    #[error("cannot fsync `{path}`: {source}")]
    Sync {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The migrations, embedded at build time (see `build.rs`).
impl StoreError {
    /// Whether SQLite found no room: the disk is full, or `database.max_size` is reached
    /// (`SQLITE_FULL`). The statement changed nothing.
    pub fn is_full(&self) -> bool {
        match self {
            Self::Sqlx(sqlx::Error::Database(e)) => {
                e.code()
                    .as_deref()
                    .and_then(|c| c.parse::<i32>().ok())
                    .map(|c| c & 0xff)
                    == Some(13)
            }
            Self::Sync { source, .. } => source.raw_os_error() == Some(28),
            _ => false,
        }
    }
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The outbox's schema on PostgreSQL (issue 12): the same table contract for producers
/// (columns, defaults, states, the insert guard, the views), a notification on channel
/// `hubspot_outbox` for every insert, and the rate budget several daemons share.
pub static PG_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The current time in the stored format, `YYYY-MM-DDTHH:MM:SS.sssZ` (UTC), the same text
/// SQLite's `strftime('%Y-%m-%dT%H:%M:%fZ', 'now')` defaults produce.
pub fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
