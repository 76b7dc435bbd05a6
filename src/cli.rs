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
    /// Run a local stand-in for HubSpot's batch create, to try the daemon without an
    /// account (point `hubspot.base_url` at it and use its token).
    Simulate(SimulateArgs),
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
