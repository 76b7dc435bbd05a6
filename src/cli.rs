//! The command line.

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
}
