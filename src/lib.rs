//! `hubspot-outbox`: a durable write queue for HubSpot's CRM.
//!
//! The data flows one way: producers hand writes to the [`socket`] API or insert rows with
//! plain SQL; the [`store`] keeps them in a SQLite outbox; a dispatcher (next) sends them.
//!
//! - [`cli`]: the command line.
//! - [`config`]: typed settings, validated once; the token never prints.
//! - [`app`]: wiring and shutdown order.
//! - [`model`]: the domain words (object type, trace id, state, write).
//! - [`write`]: what a valid write is (pure validation).
//! - [`ingest`]: duplicates and conflicts of a group of requests (pure).
//! - [`committer`]: group commit of socket requests.
//! - [`intake`]: validation of rows inserted with SQL.
//! - [`lock`]: one daemon per database.
//! - [`socket`]: the HTTP API on the Unix socket, and its client.
//! - [`store`]: every SQL statement.
//! - [`enqueue`]: the `enqueue` command.
//! - [`hubspot`]: HubSpot's wire shapes and what its answers mean (pure; the sender that
//!   uses them is not written yet).
//! - [`reconciler`]: what an answer does to each write of a batch (pure; applying it to
//!   the store is not written yet).
//! - [`retry`]: the back-off schedule (pure).

pub mod app;
pub mod cli;
pub mod committer;
pub mod config;
pub mod enqueue;
pub mod hubspot;
pub mod ingest;
pub mod intake;
pub mod lock;
pub mod model;
pub mod reconciler;
pub mod retry;
pub mod socket;
pub mod store;
pub mod write;
