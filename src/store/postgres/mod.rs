//! The outbox on PostgreSQL (issue 12): the same families as on SQLite, in PostgreSQL's
//! SQL. What differs, and why:
//!
//! - Several daemons may share the database, so nothing relies on one writer at a time.
//!   Claims lock the rows they take (`FOR UPDATE SKIP LOCKED`), and every transaction
//!   that settles writes or registers writes that wait for writes first takes one
//!   transaction-scoped advisory lock (`lock_references`): SQLite's single write lock
//!   gave that order for free, and without it a write could start waiting for a write
//!   that settles in a concurrent transaction and never hear of it.
//! - Times are `timestamptz`; they are bound as the same text the SQLite store uses
//!   (cast in the SQL) and read back through `outbox_ts()` in that same text, so the
//!   stages above see one format whichever database holds the outbox.
//! - JSON columns are `jsonb`: read back as text (`::text`), which may space or order an
//!   object's keys differently from what was written; everything that compares them
//!   parses them first.
//! - Sets of ids travel as arrays (`= ANY($1)`), payloads as one `jsonb` parameter.

mod audit;
mod browse;
mod claim;
mod counts;
mod ingest;
mod intake;
mod ops;
mod owner;
mod pauses;
mod queue;
mod read;
mod references;
mod settle;
mod trace;
mod transfer;

use std::sync::Arc;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{PgConnection, Postgres, Transaction};

use super::{Outbox, PG_MIGRATOR, Role, StoreError};
use owner::Owner;

/// A database URL, which may hold a password: never printed, not even in debug output.
#[derive(Clone)]
struct Url(String);

impl std::fmt::Debug for Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Url(..)")
    }
}

/// A handle on an outbox in PostgreSQL. Cloning shares the pool.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// For the connections outside the pool: the liveness lock's, the listener's.
    url: Url,
    /// A daemon's liveness lock (see [`owner`]); commands have none and claim nothing.
    owner: Option<Arc<Owner>>,
}

/// The advisory lock key of the reference bookkeeping (see [`lock_references`]): the
/// text `hubspot_outbox.references` hashed once, written out so no two daemons could ever
/// disagree on it.
const REFERENCES_LOCK: i64 = 0x6873_6f62_7265_6673;

/// The advisory lock key of maintenance (retention): held by one daemon's liveness
/// session at a time (see [`owner::Owner::leads`]).
const MAINTENANCE_LOCK: i64 = 0x6873_6f62_6d61_696e;

impl PgStore {
    /// Connects to the database at `url` with up to `max_connections` connections. A
    /// daemon or an operator's command runs pending migrations first (sqlx holds an
    /// advisory lock meanwhile, so daemons starting together migrate once); a reader does
    /// not, as its database role need not be allowed to change the schema. A daemon also
    /// takes its liveness lock (see `owner`).
    pub async fn connect(url: &str, max_connections: u32, role: Role) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .min_connections(1)
            .connect(url)
            .await?;
        if role != Role::Reader {
            PG_MIGRATOR.run(&pool).await?;
        }
        let owner = match role {
            Role::Daemon => Some(Owner::acquire(url).await?),
            _ => None,
        };
        Ok(Self {
            pool,
            url: Url(url.to_owned()),
            owner,
        })
    }

    /// This daemon's liveness key for a claim: an error when it has none (a command) or
    /// has lost it for now, so nothing is claimed that another daemon could take for a
    /// dead daemon's.
    fn claimant(&self) -> Result<i64, StoreError> {
        match &self.owner {
            Some(owner) if owner.held() => Ok(owner.key),
            Some(_) => Err(StoreError::Sqlx(sqlx::Error::Protocol(
                "this daemon's liveness lock is lost for now; nothing is claimed until it is back"
                    .into(),
            ))),
            None => Err(StoreError::Sqlx(sqlx::Error::Protocol(
                "only a daemon claims writes".into(),
            ))),
        }
    }

    /// A transaction for changes. Read committed: each statement sees what was committed
    /// before it began, and every change is guarded by the state it expects.
    async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        Ok(self.pool.begin().await?)
    }
}

/// Marks the inserts of this transaction as the daemon's own (validated on the way in, or
/// imported as they stand): the insert guard then leaves their columns alone and the
/// queue's cap does not refuse them. The mark names this backend and transaction, so it
/// can never cover another; [`unmark_own_inserts`] removes it before the commit.
async fn mark_own_inserts(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO ingest_marker (pid, xact) VALUES (pg_backend_pid(), txid_current())
         ON CONFLICT (pid) DO UPDATE SET xact = excluded.xact",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Removes [`mark_own_inserts`]'s mark, before the commit.
async fn unmark_own_inserts(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM ingest_marker WHERE pid = pg_backend_pid()")
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the reference bookkeeping's lock until the end of the transaction. Every
/// transaction that settles writes (succeeded, failed, discarded) or registers writes
/// that wait for writes takes it before its first change, so those transactions run one
/// at a time (each a few milliseconds) and always take their locks in the same order;
/// claims and reads never take it.
async fn lock_references(conn: &mut PgConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(REFERENCES_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

#[async_trait]
impl Outbox for PgStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1 FROM outbox LIMIT 1")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn is_shared(&self) -> bool {
        true
    }

    /// LISTENs on channel `hubspot_outbox` (the insert trigger's NOTIFY, at each commit)
    /// on a connection of its own, and wakes `inserted` for every notification. sqlx's
    /// listener connects again after a lost connection; what was notified meanwhile is
    /// found by the next poll.
    fn listen(&self, inserted: Arc<tokio::sync::Notify>) {
        let url = self.url.clone();
        tokio::spawn(async move {
            let mut listener = loop {
                match sqlx::postgres::PgListener::connect(&url.0).await {
                    Ok(mut l) => match l.listen("hubspot_outbox").await {
                        Ok(()) => break l,
                        Err(e) => {
                            tracing::warn!(error = %e, "LISTEN hubspot_outbox failed; polling meanwhile")
                        }
                    },
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot connect to listen for new rows; polling meanwhile")
                    }
                }
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            };
            loop {
                match listener.recv().await {
                    Ok(_) => inserted.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "listening for new rows failed; polling meanwhile");
                        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }

    async fn leads_maintenance(&self) -> bool {
        match &self.owner {
            Some(owner) => owner.leads(MAINTENANCE_LOCK).await,
            None => false,
        }
    }
}
