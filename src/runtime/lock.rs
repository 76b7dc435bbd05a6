//! "One daemon owns this database": an exclusive `flock` on `<database>.lock`. The kernel
//! drops the lock when the process dies, however it dies, so a restart right after a
//! SIGKILL is never refused or delayed (a lease row with a timeout would be). On
//! PostgreSQL, where several daemons share the database, the same lock guards each
//! daemon's socket instead (`<socket>.lock`).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{owned} is in use by another hubspot-outbox daemon{pid} (lock `{lock}` is held); \
         only one daemon may own it"
    )]
    Held {
        /// What the lock guards, in words: "database `…`" or "socket `…`".
        owned: String,
        lock: PathBuf,
        pid: String,
    },
    #[error("cannot lock `{lock}`: {source}")]
    Io {
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the life of the daemon; dropping it releases the database.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
}

/// The lock file that guards `database`.
pub fn lock_path(database: &Path) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

impl OwnerLock {
    /// Takes the lock or fails at once (never waits) when another process holds it.
    pub fn acquire(database: &Path) -> Result<Self, LockError> {
        Self::acquire_for(database, format!("database `{}`", database.display()))
    }

    /// Takes the lock of the file `guarded` (described as `owned` in the refusal).
    pub fn acquire_for(guarded: &Path, owned: String) -> Result<Self, LockError> {
        let lock = lock_path(guarded);
        let io = |source| LockError::Io {
            lock: lock.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Held {
                    owned,
                    lock,
                    pid: if holder.is_empty() {
                        String::new()
                    } else {
                        format!(" (pid {holder})")
                    },
                });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        // The pid is for the error message above only; the lock is what counts.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_owner_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("outbox.db");
        let first = OwnerLock::acquire(&db).unwrap();
        let err = OwnerLock::acquire(&db).unwrap_err().to_string();
        assert!(
            err.contains("in use by another hubspot-outbox daemon"),
            "{err}"
        );
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(first);
        OwnerLock::acquire(&db).unwrap();
    }
}
