//! Which daemons are alive, for rows left in flight (issue 12). Each daemon holds a
//! session-level advisory lock, keyed by a random number, on a connection of its own for
//! as long as it runs, and stamps the rows it claims with that key (`claimed_by`).
//! PostgreSQL drops the lock the moment that session ends, however the daemon ended (a
//! crash, a SIGKILL, a lost host), so another daemon can tell a dead owner from a live
//! one at once by trying the lock: no heartbeat table, no rescue timer.
//!
//! The lock's connection is checked every few seconds and taken again if it was lost.
//! While it is lost, this daemon claims nothing: another daemon may take its rows in
//! flight for a dead daemon's. Its requests already sent are settled as usual; one whose
//! rows were taken meanwhile was also read back by the daemon that took them (the same
//! read-before-resend rule as after a crash), which is what keeps that window from
//! duplicating a record unless HubSpot was still processing the request at that moment.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::{Connection, PgConnection};
use tokio::sync::Mutex;
use tracing::{error, info};

use super::{MAINTENANCE_LOCK, REFERENCES_LOCK};
use crate::store::StoreError;

/// How often the lock's connection is checked.
const CHECK_EVERY: Duration = Duration::from_secs(2);

/// This daemon's liveness lock.
#[derive(Debug)]
pub struct Owner {
    /// The advisory lock's key, and what `claimed_by` says.
    pub key: i64,
    url: super::Url,
    conn: Mutex<Option<PgConnection>>,
    held: AtomicBool,
    /// Whether the liveness session also holds the maintenance lock.
    leading: AtomicBool,
}

impl Owner {
    /// Takes a new key's lock on a connection of its own, and keeps it (see the module's
    /// doc) until the returned handle is dropped by every holder.
    pub async fn acquire(url: &str) -> Result<Arc<Self>, StoreError> {
        let key = loop {
            let k: i64 = rand_key();
            if k != REFERENCES_LOCK && k != MAINTENANCE_LOCK {
                break k;
            }
        };
        let owner = Arc::new(Self {
            key,
            url: super::Url(url.to_owned()),
            conn: Mutex::new(None),
            held: AtomicBool::new(false),
            leading: AtomicBool::new(false),
        });
        owner.lock().await?;
        let watched = Arc::downgrade(&owner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(CHECK_EVERY).await;
                let Some(owner) = watched.upgrade() else {
                    return;
                };
                owner.check().await;
            }
        });
        Ok(owner)
    }

    /// Whether this daemon holds its lock now: claims are refused while it does not.
    pub fn held(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// Whether this daemon holds the lock `key` on its liveness session, taking it if it
    /// is free: one daemon at a time leads what `key` names, and when it stops (its
    /// session ends) the next to ask takes over.
    pub async fn leads(&self, key: i64) -> bool {
        if !self.held() {
            return false;
        }
        if self.leading.load(Ordering::SeqCst) {
            return true;
        }
        let mut conn = self.conn.lock().await;
        let Some(c) = conn.as_mut() else {
            return false;
        };
        let got = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(key)
            .fetch_one(c)
            .await
            .unwrap_or(false);
        self.leading.store(got, Ordering::SeqCst);
        got
    }

    /// Opens the lock's connection and takes the lock.
    async fn lock(&self) -> Result<(), StoreError> {
        let mut conn = PgConnection::connect(&self.url.0).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(self.key)
            .fetch_one(&mut conn)
            .await?;
        if !got {
            return Err(StoreError::Sqlx(sqlx::Error::Protocol(
                "this daemon's liveness lock is held by another session".into(),
            )));
        }
        *self.conn.lock().await = Some(conn);
        // A new session holds no other lock yet.
        self.leading.store(false, Ordering::SeqCst);
        self.held.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// Pings the lock's connection; takes the lock again if the connection was lost.
    async fn check(&self) {
        let alive = {
            let mut conn = self.conn.lock().await;
            match conn.as_mut() {
                Some(c) => c.ping().await.is_ok(),
                None => false,
            }
        };
        if alive {
            return;
        }
        if self.held.swap(false, Ordering::SeqCst) {
            error!(
                "lost the connection that shows this daemon is alive; claiming nothing until it is back"
            );
        }
        *self.conn.lock().await = None;
        if self.lock().await.is_ok() {
            info!("this daemon's liveness lock is held again; claiming resumes");
        }
    }
}

/// A random key: the process id, the time and a counter mixed, so two daemons starting
/// together on one host differ.
fn rand_key() -> i64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    h.finish() as i64
}
