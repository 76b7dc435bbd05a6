//! `hubspot-outbox`: a durable write queue for HubSpot's CRM.
//!
//! The data flows one way: producers hand writes to the [`socket`] API or insert rows with
//! plain SQL; the [`store`] keeps them in a SQLite outbox; the [`dispatcher`] claims batches
//! per object type under the [`limiter`], the [`sender`] posts them to HubSpot, and the
//! [`reconciler`] turns each answer into an outcome per write.
//!
//! - [`cli`]: the command line.
//! - [`config`]: typed settings, validated once; the token never prints.
//! - [`app`]: wiring and shutdown order.
//! - [`model`]: the domain words (object type, trace id, state, write).
//! - [`mod@write`]: what a valid write is (pure validation).
//! - [`ingest`]: duplicates and conflicts of a group of requests (pure).
//! - [`committer`]: group commit of socket requests.
//! - [`intake`]: validation of rows inserted with SQL.
//! - [`lock`]: one daemon per database.
//! - [`socket`]: the HTTP API on the Unix socket, and its client.
//! - [`store`]: every SQL statement.
//! - [`enqueue`]: the `enqueue` command.
//! - [`ops`]: the operator commands (status, failed, show, retry, discard, purge, ...).
//! - [`dispatcher`]: the sending loop (claim, rate-limit, send, settle, pause).
//! - [`limiter`]: the burst rate limit, adapting to HubSpot's headers.
//! - [`metrics`]: counters for `GET /metrics`.
//! - [`notify`]: systemd readiness, stopping and watchdog notifications.
//! - [`sender`]: one batch, one HTTP call.
//! - [`simulator`]: a local stand-in for HubSpot's batch create (`simulate`).
//! - [`hubspot`]: HubSpot's wire shapes and what its answers mean (pure).
//! - [`reconciler`]: what an answer does to each write of a batch (pure).
//! - [`retry`]: the back-off schedule (pure).
//! - [`scheduler`]: which rows go next, in which batch, when (pure).

pub mod app;
pub mod cli;
pub mod committer;
pub mod config;
pub mod dispatcher;
pub mod enqueue;
pub mod hubspot;
pub mod ingest;
pub mod intake;
pub mod limiter;
pub mod lock;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod ops;
pub mod reconciler;
pub mod retry;
pub mod scheduler;
pub mod sender;
pub mod simulator;
pub mod socket;
pub mod store;
pub mod write;
