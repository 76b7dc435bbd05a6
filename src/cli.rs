//! The command line, parsed by clap. Only `main` uses it: the library takes plain
//! arguments (`operator::FilterArgs`, `operator::SelectArgs`), converted below.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "hubspot-outbox",
    version,
    about = "A durable write queue for HubSpot's CRM"
)]
pub struct Cli {
    /// TOML config file. Without one, every setting has its default; no file is read from
    /// the working directory.
    #[arg(
        long,
        global = true,
        env = "HUBSPOT_OUTBOX_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: accept writes on the socket and keep them in the outbox.
    Run,
    /// Send writes (one JSON object per line) to a running daemon, in chunks.
    Enqueue {
        /// The NDJSON file to read; `-` or nothing reads standard input.
        #[arg(value_name = "FILE|-")]
        file: Option<PathBuf>,
        /// Most writes per request.
        #[arg(long, default_value_t = 5000)]
        chunk_size: usize,
    },
    /// Counts by state and object type, sending rates, rate-limit use, pauses.
    Status {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Failed writes with their error, newest first.
    Failed {
        #[command(flatten)]
        filter: FilterArgs,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// One write: its state, HubSpot id and whole history of errors.
    Show {
        trace_id: String,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Put failed or unconfirmed writes back in the queue (attempts reset).
    Retry {
        #[command(flatten)]
        select: SelectArgs,
        /// Fix a property of this one write before replaying it (with --set).
        #[arg(long, value_name = "TRACE_ID", conflicts_with_all = ["trace_ids", "failed", "unconfirmed"])]
        edit: Option<String>,
        /// NAME=VALUE, with --edit; repeat for several properties.
        #[arg(long = "set", value_name = "NAME=VALUE", requires = "edit")]
        set: Vec<String>,
        /// Remove a property, with --edit (e.g. one HubSpot does not know); repeatable.
        #[arg(long = "unset", value_name = "NAME", requires = "edit")]
        unset: Vec<String>,
        /// The record an upsert or update names (its `id`), with --edit: e.g. an update
        /// whose record does not exist.
        #[arg(long = "set-id", value_name = "ID", requires = "edit")]
        set_id: Option<String>,
    },
    /// Give up failed or unconfirmed writes (or, named by trace id, waiting ones): marked discarded, kept for the record.
    Discard {
        #[command(flatten)]
        select: SelectArgs,
    },
    /// Delete succeeded (or discarded) writes, and their history, older than a duration.
    /// Failed and unconfirmed writes are never purged: discard them first.
    Purge {
        /// e.g. 30d.
        #[arg(long, value_parser = humantime::parse_duration)]
        succeeded_older_than: Option<std::time::Duration>,
        /// e.g. 90d.
        #[arg(long, value_parser = humantime::parse_duration)]
        discarded_older_than: Option<std::time::Duration>,
        /// Count only.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Check each object type's trace property in HubSpot and create it where missing.
    Setup {
        /// The object type to set up; repeatable. Default: every type in [objects], in the
        /// outbox, and checked before.
        #[arg(long = "object-type", value_name = "TYPE")]
        object_types: Vec<String>,
        /// Only look: create nothing, record nothing.
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per line instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Create or upgrade the database schema, then exit.
    Migrate {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Write the whole outbox (every write as it stands, its error history, the batch
    /// log, purged trace ids, daily usage) to FILE as JSON Lines, to move it to another
    /// database with `import`. On SQLite the daemon must be stopped.
    Export {
        /// Where to write; `-` for standard output.
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// Report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Read an `export` into this configuration's outbox (created if missing), all or
    /// nothing; refused if a write's trace id is already there. On SQLite the daemon must
    /// be stopped; PostgreSQL daemons may keep running.
    Import {
        /// The export to read; `-` for standard input.
        #[arg(value_name = "FILE")]
        file: std::path::PathBuf,
        /// Report as one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Validate the configuration and print the effective values (token redacted).
    CheckConfig {
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Run a local stand-in for HubSpot's batch create, to try the daemon without an
    /// account (point `hubspot.base_url` at it and use its token).
    Simulate(SimulateArgs),
    /// Hash a dashboard password for the users file (NAME:ROLE:HASH): reads the password
    /// from standard input (its first line), prints its Argon2 hash. Needs no config.
    HashPassword,
}

#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// Address to listen on; port 0 picks a free port (printed at start).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub listen: String,
    /// The Bearer token the simulator accepts.
    #[arg(long, default_value = "sim-token")]
    pub token: String,
    /// Requests allowed in any rolling interval (HubSpot: 100 to 250 per 10 s).
    #[arg(long, default_value_t = 100)]
    pub requests_per_interval: u32,
    /// The rolling interval.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub interval: std::time::Duration,
    /// Requests allowed in total (the "day"); 0 for no limit.
    #[arg(long, default_value_t = 0)]
    pub daily_limit: u64,
    /// Latency added to every request.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub latency: std::time::Duration,
    /// Share of requests answered 503 before creating anything (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Share of requests answered 500 after creating the objects (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub fail_after_create_rate: f64,
    /// Share of requests that create the objects and never answer (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub hang_after_create_rate: f64,
    /// Share of requests that create the objects and then close the connection (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    pub close_after_create_rate: f64,
    /// Leave `objectWriteTraceId` out of results, as older HubSpot answers do.
    #[arg(long)]
    pub no_echo_trace_ids: bool,
}

/// Filters of failed (or unconfirmed) writes.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterArgs {
    /// Only this object type.
    #[arg(long)]
    pub object_type: Option<String>,
    /// Only this error category (e.g. VALIDATION_ERROR, INVALID_WRITE).
    #[arg(long)]
    pub category: Option<String>,
    /// Only writes that failed since then: a duration (`2h`) or a time (`2026-11-29T10:00:00Z`).
    #[arg(long, value_name = "DURATION|TIME")]
    pub since: Option<String>,
    /// At most this many.
    #[arg(long)]
    pub limit: Option<i64>,
}

/// Which writes `retry` and `discard` act on.
#[derive(Debug, Clone, clap::Args)]
pub struct SelectArgs {
    /// These writes (failed or unconfirmed ones).
    #[arg(value_name = "TRACE_ID")]
    pub trace_ids: Vec<String>,
    /// Every failed write matching the filters.
    #[arg(long, conflicts_with = "unconfirmed")]
    pub failed: bool,
    /// Every unconfirmed write matching the filters.
    #[arg(long)]
    pub unconfirmed: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only count what would change.
    #[arg(long)]
    pub dry_run: bool,
    /// JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

impl From<FilterArgs> for hubspot_outbox::operator::FilterArgs {
    fn from(a: FilterArgs) -> Self {
        Self {
            object_type: a.object_type,
            category: a.category,
            since: a.since,
            limit: a.limit,
        }
    }
}

impl From<SelectArgs> for hubspot_outbox::operator::SelectArgs {
    fn from(a: SelectArgs) -> Self {
        Self {
            trace_ids: a.trace_ids,
            failed: a.failed,
            unconfirmed: a.unconfirmed,
            filter: a.filter.into(),
            dry_run: a.dry_run,
            json: a.json,
        }
    }
}
