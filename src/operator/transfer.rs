//! `export` and `import`: moving an outbox to another database (SQLite to PostgreSQL, the
//! usual way; any direction works) with every write as it stands, so that nothing is lost,
//! nothing is sent twice, and the operator's history comes along (see
//! [`crate::store::transfer`] for what is and is not carried).
//!
//! The file is JSON Lines: a header, then one line per row (`"kind"`: `write`, `wait`,
//! `error`, `batch`, `purged`, `usage`, each with its table's columns), then an `end`
//! line with the counts. An import reads it into one transaction and commits only when
//! the `end` line is there and its counts match what was read, so a truncated or spliced
//! file imports nothing; a write whose trace id the target already holds stops it too,
//! naming the trace id (running an import twice changes nothing the second time).
//!
//! A SQLite outbox must have no daemon while either command runs on it: the command
//! takes the daemon's lock for its whole run (a daemon started meanwhile is refused, and
//! the command is refused while one runs). For an export that is what makes the file the
//! last word of that outbox; for an import, a SQLite daemon looks for writes left in
//! flight only at its start. A PostgreSQL outbox may keep its daemons while it imports
//! (they adopt imported writes in flight as a dead daemon's, and read before resending);
//! an export from one reads a single snapshot, but only stopped daemons make it the last.

use std::io::{BufRead, Write};
use std::path::Path;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::OpsError;
use crate::config::Config;
use crate::runtime::lock::{LockError, OwnerLock};
use crate::store::transfer::{
    BatchLogRow, HistoryRow, ImportTx, PurgedRow, UsageRow, WaitRow, WriteRow,
};
use crate::store::{Store, StoreError, timestamp};

/// The header's `format`, and the version an import understands.
pub const FORMAT: &str = "hubspot-outbox export";
pub const VERSION: u32 = 1;

/// Rows per page read from the source or inserted into the target.
const PAGE: usize = 500;

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Line {
    Header {
        format: String,
        version: u32,
        /// Unique to this export: an outbox records the exports it imported by it.
        id: String,
        exported_at: String,
        from: String,
    },
    /// Boxed: a write is far larger than the other rows.
    Write(Box<WriteRow>),
    Wait(WaitRow),
    Error(HistoryRow),
    Batch(BatchLogRow),
    Purged(PurgedRow),
    Usage(UsageRow),
    End(Counts),
}

/// How many rows of each kind: the `end` line, and what each command reports.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub writes: u64,
    pub waits: u64,
    pub errors: u64,
    pub batches: u64,
    pub purged: u64,
    pub usage: u64,
}

impl Counts {
    fn text(&self) -> String {
        format!(
            "{} write(s), {} wait(s), {} error(s) of history, {} batch(es), {} purged trace id(s), {} day(s) of usage",
            self.writes, self.waits, self.errors, self.batches, self.purged, self.usage
        )
    }

    fn json(&self, action: &str, database: &str) -> String {
        json!({"action": action, "database": database, "counts": self}).to_string()
    }
}

/// Why an export or import stopped. Nothing of an import is kept when it stops.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Ops(#[from] OpsError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}; stop it first: export and import need a SQLite outbox to themselves")]
    Lock(LockError),
    #[error("cannot {0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("the target outbox refused the import: {0}; nothing was imported")]
    Refused(StoreError),
    #[error("line {line}: {message}; nothing was imported")]
    Bad { line: u64, message: String },
    #[error(
        "the target outbox already holds (or has purged) the write(s) {0}, or the file names \
         them twice; nothing was imported"
    )]
    Taken(String),
    #[error(
        "this export ({id}, taken {exported_at} from {from}) was imported into this outbox \
         before; nothing was imported again"
    )]
    Again {
        id: String,
        exported_at: String,
        from: String,
    },
}

/// Writes the whole outbox of `store` to `out`, then flushes it. Returns what it wrote.
pub async fn export(
    store: &Store,
    database: &str,
    out: &mut dyn Write,
) -> Result<Counts, TransferError> {
    let io = |e| TransferError::Io("write the export", e);
    let mut tx = store.begin_export().await?;
    let mut counts = Counts::default();
    let put = |line: &Line, out: &mut dyn Write| -> Result<(), TransferError> {
        serde_json::to_writer(&mut *out, line).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)
    };
    put(
        &Line::Header {
            format: FORMAT.into(),
            version: VERSION,
            id: uuid::Uuid::now_v7().to_string(),
            exported_at: timestamp(Utc::now()),
            from: database.into(),
        },
        out,
    )?;
    // Every page of one table in key order: `$fetch` reads the page after `$after`
    // (starting at `$start`), `$key` is the last row's key, `$line` makes a row a line.
    macro_rules! every_page {
        ($start:expr, |$after:ident| $fetch:expr, |$last:ident| $key:expr, $line:expr, $count:expr) => {
            let mut $after = $start;
            loop {
                let page = $fetch;
                let Some($last) = page.last() else { break };
                $after = $key;
                $count += page.len() as u64;
                for row in page {
                    put(&$line(row), out)?;
                }
            }
        };
    }
    let limit = PAGE as i64;
    every_page!(
        0,
        |after| tx.writes(after, limit).await?,
        |last| last.id,
        |row| Line::Write(Box::new(row)),
        counts.writes
    );
    let waits = tx.waits().await?;
    counts.waits = waits.len() as u64;
    for row in waits {
        put(&Line::Wait(row), out)?;
    }
    every_page!(
        0,
        |after| tx.history(after, limit).await?,
        |last| last.id,
        Line::Error,
        counts.errors
    );
    every_page!(
        String::new(),
        |after| tx.batches(&after, limit).await?,
        |last| last.batch_id.clone(),
        Line::Batch,
        counts.batches
    );
    every_page!(
        String::new(),
        |after| tx.purged(&after, limit).await?,
        |last| last.trace_id.clone(),
        Line::Purged,
        counts.purged
    );
    let usage = tx.usage().await?;
    counts.usage = usage.len() as u64;
    for row in usage {
        put(&Line::Usage(row), out)?;
    }
    put(&Line::End(counts.clone()), out)?;
    out.flush().map_err(io)?;
    Ok(counts)
}

/// Rows of one kind waiting to be inserted together.
enum Pending {
    None,
    Writes(Vec<WriteRow>),
    Waits(Vec<WaitRow>),
    Errors(Vec<HistoryRow>),
    Batches(Vec<BatchLogRow>),
    Purged(Vec<PurgedRow>),
    Usage(Vec<UsageRow>),
}

impl Pending {
    fn len(&self) -> usize {
        match self {
            Self::None => 0,
            Self::Writes(v) => v.len(),
            Self::Waits(v) => v.len(),
            Self::Errors(v) => v.len(),
            Self::Batches(v) => v.len(),
            Self::Purged(v) => v.len(),
            Self::Usage(v) => v.len(),
        }
    }

    /// Inserts what is held, leaving nothing.
    async fn flush(&mut self, tx: &mut dyn ImportTx) -> Result<(), TransferError> {
        match std::mem::replace(self, Self::None) {
            Self::None => {}
            Self::Writes(rows) => {
                let taken = tx.add_writes(&rows).await.map_err(TransferError::Refused)?;
                if !taken.is_empty() {
                    return Err(TransferError::Taken(taken.join(", ")));
                }
            }
            Self::Waits(rows) => tx.add_waits(&rows).await.map_err(TransferError::Refused)?,
            Self::Errors(rows) => tx
                .add_history(&rows)
                .await
                .map_err(TransferError::Refused)?,
            Self::Batches(rows) => tx
                .add_batches(&rows)
                .await
                .map_err(TransferError::Refused)?,
            Self::Purged(rows) => tx.add_purged(&rows).await.map_err(TransferError::Refused)?,
            Self::Usage(rows) => tx.add_usage(&rows).await.map_err(TransferError::Refused)?,
        }
        Ok(())
    }
}

/// Adds `row` to `pending` (flushing first when it holds another kind or is full).
macro_rules! hold {
    ($pending:ident, $tx:ident, $variant:ident, $row:expr) => {{
        if !matches!($pending, Pending::$variant(_)) || $pending.len() >= PAGE {
            $pending.flush(&mut *$tx).await?;
            $pending = Pending::$variant(Vec::with_capacity(PAGE));
        }
        if let Pending::$variant(rows) = &mut $pending {
            rows.push($row);
        }
    }};
}

/// Reads an export from `input` into `store`, in one transaction. Returns the counts read.
pub async fn import(store: &Store, input: &mut dyn BufRead) -> Result<Counts, TransferError> {
    let mut tx = store.begin_import().await?;
    let mut counts = Counts::default();
    let mut pending = Pending::None;
    let mut number = 0u64;
    let mut text = String::new();
    let bad = |line, message: String| TransferError::Bad { line, message };
    let end = loop {
        text.clear();
        let n = input
            .read_line(&mut text)
            .map_err(|e| TransferError::Io("read the export", e))?;
        if n == 0 {
            return Err(bad(
                number,
                "the export ends without its `end` line (cut short?)".into(),
            ));
        }
        number += 1;
        let line: Line = serde_json::from_str(&text)
            .map_err(|e| bad(number, format!("not a line of an export: {e}")))?;
        match line {
            Line::Header {
                format,
                version,
                id,
                exported_at,
                from,
            } if number == 1 => {
                if format != FORMAT || version != VERSION {
                    return Err(bad(
                        1,
                        format!(
                            "this is `{format}` version {version}; this build reads `{FORMAT}` version {VERSION}"
                        ),
                    ));
                }
                if !tx.record_import(&id, &exported_at, &from).await? {
                    return Err(TransferError::Again {
                        id,
                        exported_at,
                        from,
                    });
                }
            }
            _ if number == 1 => {
                return Err(bad(1, "the export's first line must be its header".into()));
            }
            Line::Header { .. } => return Err(bad(number, "a second header".into())),
            Line::Write(row) => {
                counts.writes += 1;
                hold!(pending, tx, Writes, *row);
            }
            Line::Wait(row) => {
                counts.waits += 1;
                hold!(pending, tx, Waits, row);
            }
            Line::Error(row) => {
                counts.errors += 1;
                hold!(pending, tx, Errors, row);
            }
            Line::Batch(row) => {
                counts.batches += 1;
                hold!(pending, tx, Batches, row);
            }
            Line::Purged(row) => {
                counts.purged += 1;
                hold!(pending, tx, Purged, row);
            }
            Line::Usage(row) => {
                counts.usage += 1;
                hold!(pending, tx, Usage, row);
            }
            Line::End(end) => break end,
        }
    };
    if end != counts {
        return Err(bad(
            number,
            format!(
                "the `end` line counts {}, but the file holds {}",
                end.text(),
                counts.text()
            ),
        ));
    }
    text.clear();
    if input
        .read_line(&mut text)
        .map_err(|e| TransferError::Io("read the export", e))?
        != 0
    {
        return Err(bad(number + 1, "lines after the `end` line".into()));
    }
    pending.flush(&mut *tx).await?;
    tx.commit().await.map_err(TransferError::Refused)?;
    Ok(counts)
}

/// What `export` reports (on stderr when the export itself goes to stdout).
pub fn exported(counts: &Counts, database: &str, as_json: bool) -> String {
    if as_json {
        counts.json("export", database)
    } else {
        format!("exported {} from `{database}`", counts.text())
    }
}

/// What `import` reports.
pub fn imported(counts: &Counts, database: &str, as_json: bool) -> String {
    if as_json {
        counts.json("import", database)
    } else {
        format!("imported {} into `{database}`", counts.text())
    }
}

/// On SQLite, the daemon's lock, held until dropped (see the module's doc); on
/// PostgreSQL, nothing.
fn hold_sqlite(config: &Config) -> Result<Option<OwnerLock>, TransferError> {
    if config.database.url.is_some() {
        return Ok(None);
    }
    Ok(Some(
        OwnerLock::acquire(&config.database.path).map_err(TransferError::Lock)?,
    ))
}

/// `export FILE` (`-`: standard output). Returns the summary line.
pub async fn export_command(
    config: &Config,
    file: &Path,
    as_json: bool,
) -> Result<String, TransferError> {
    let database = config.database.name();
    let _lock = hold_sqlite(config)?;
    let store = super::open_read(config).await?;
    let counts = if file == Path::new("-") {
        let stdout = std::io::stdout();
        let mut out = std::io::BufWriter::new(stdout.lock());
        export(&store, &database, &mut out).await
    } else {
        // Written beside the file and renamed over it once complete and synced: a failed
        // export never leaves a cut-short file where a good one was.
        let mut partial = file.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let create = |e| TransferError::Io("write the export file", e);
        let f = std::fs::File::create(&partial).map_err(create)?;
        let mut out = std::io::BufWriter::new(f);
        let counts = export(&store, &database, &mut out).await;
        let finished = match counts {
            Ok(_) => out
                .into_inner()
                .map_err(|e| create(e.into_error()))
                .and_then(|f| f.sync_all().map_err(create))
                .and_then(|()| std::fs::rename(&partial, file).map_err(create)),
            Err(_) => Ok(()),
        };
        if counts.is_err() || finished.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        finished?;
        counts
    };
    store.close().await;
    Ok(exported(&counts?, &database, as_json))
}

/// `import FILE` (`-`: standard input), creating the outbox if it does not exist yet.
/// Returns the summary line.
pub async fn import_command(
    config: &Config,
    file: &Path,
    as_json: bool,
) -> Result<String, TransferError> {
    let database = config.database.name();
    let mut input: Box<dyn BufRead> = if file == Path::new("-") {
        Box::new(std::io::stdin().lock())
    } else {
        let f = std::fs::File::open(file).map_err(|e| TransferError::Io("open the export", e))?;
        Box::new(std::io::BufReader::new(f))
    };
    if config.database.url.is_none()
        && let Some(dir) = config
            .database
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
    {
        // The lock file lives beside the database, so its directory comes first.
        std::fs::create_dir_all(dir).map_err(|source| OpsError::CreateDir {
            dir: dir.to_owned(),
            source,
        })?;
    }
    let _lock = hold_sqlite(config)?;
    let store = super::open_creating(config).await?;
    let counts = import(&store, &mut *input).await;
    store.close().await;
    Ok(imported(&counts?, &database, as_json))
}
