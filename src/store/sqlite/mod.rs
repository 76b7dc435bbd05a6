//! The outbox on SQLite: one file beside the daemon, WAL, `BEGIN IMMEDIATE` for every
//! change (SQLite has one writer at a time; the busy timeout queues the others). One
//! file per family of statements, each implementing its family's trait from
//! [`crate::store`].

mod audit;
mod browse;
mod claim;
mod ingest;
mod intake;
mod ops;
mod pauses;
mod queue;
mod read;
mod references;
mod settle;
mod trace;
mod transfer;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use async_trait::async_trait;

use super::{MIGRATOR, Outbox, StoreError};

/// A handle on the outbox database. Cloning shares the pools.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    /// Every statement but socket ingest: `synchronous = FULL`, so each commit (a claim,
    /// a HubSpot id recorded, a row marked failed) is fsync'd before it returns.
    pool: SqlitePool,
    /// Socket ingest only: one connection with `synchronous = NORMAL`, whose commits the
    /// committer makes durable itself with [`SqliteStore::sync_wal`] before acknowledging. That
    /// lets the next group commit while the previous one is being fsync'd.
    ingest: SqlitePool,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database for the daemon: WAL, a busy timeout for the
    /// lock SQLite shares with SQL producers, foreign keys, and pending migrations run.
    /// See the field docs for the two durability settings.
    pub async fn open(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        Self::open_limited(path, busy_timeout, 0).await
    }

    /// [`SqliteStore::open`], with the database file capped at `max_size` bytes (0: no cap):
    /// SQLite's `max_page_count` on every connection, so a write past it fails as on a
    /// full disk ([`StoreError::is_full`]) and changes nothing.
    pub async fn open_limited(
        path: &Path,
        busy_timeout: Duration,
        max_size: u64,
    ) -> Result<Self, StoreError> {
        let mut options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        if max_size > 0 {
            // SQLite's default page size; a database made with another keeps the cap in
            // pages of this size, close enough for a quota.
            let pages = max_size.div_ceil(4096).max(1);
            options = options.pragma("max_page_count", pages.to_string());
        }
        // A few connections: writers queue on SQLite's single write lock anyway, readers
        // (GET requests, health checks) proceed beside them in WAL mode.
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .min_connections(1)
            .connect_with(options.clone())
            .await?;
        check_journal_mode(&pool).await?;
        MIGRATOR.run(&pool).await?;
        let ingest = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(options.synchronous(SqliteSynchronous::Normal))
            .await?;
        Ok(Self {
            pool,
            ingest,
            path: path.to_owned(),
        })
    }

    /// Opens an existing database read-only, for commands that only look.
    pub async fn open_read_only(path: &Path, busy_timeout: Duration) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite:")?
            .filename(path)
            .read_only(true)
            .busy_timeout(busy_timeout);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await?;
        Ok(Self {
            ingest: pool.clone(),
            pool,
            path: path.to_owned(),
        })
    }

    /// Makes every commit made so far durable: fsyncs the WAL file.
    ///
    /// fsync flushes the file, not the descriptor, so syncing through our own descriptor
    /// covers what SQLite wrote through its own. A commit's frames stay in the WAL until a
    /// *completed* checkpoint has copied them into the database and fsync'd it (SQLite does
    /// that at `synchronous = NORMAL`); only then is the WAL reused or removed. So a commit
    /// is durable either in the WAL this syncs or in the already-synced database file. A
    /// missing WAL file means the last connection checkpointed and removed it.
    ///
    /// The database file itself is never opened here: closing any descriptor of it would
    /// drop every POSIX lock this process holds on it, SQLite's included.
    pub async fn sync_wal(&self) -> Result<(), StoreError> {
        let mut wal = self.path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let synced = tokio::task::spawn_blocking(move || {
            match std::fs::File::open(&wal).and_then(|f| f.sync_data()) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(source) => Err(StoreError::Sync { path: wal, source }),
            }
        })
        .await;
        synced.unwrap_or_else(|e| {
            Err(StoreError::Sync {
                path: self.path.clone(),
                source: std::io::Error::other(e),
            })
        })
    }

    /// A write transaction that takes SQLite's write lock at once (`BEGIN IMMEDIATE`), so
    /// it waits on the busy timeout instead of failing when a reader upgrades late.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Sqlite>, StoreError> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }
}

#[async_trait]
impl Outbox for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM outbox LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.ingest.close().await;
        self.pool.close().await;
    }
}

/// Unknown pragmas and failed mode switches are silent in SQLite: read the mode back.
async fn check_journal_mode(pool: &SqlitePool) -> Result<(), StoreError> {
    let actual: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await?;
    if actual.eq_ignore_ascii_case("wal") {
        Ok(())
    } else {
        Err(StoreError::JournalMode {
            expected: "wal",
            actual,
        })
    }
}
