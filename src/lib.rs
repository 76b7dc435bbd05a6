//! `hubspot-outbox`: a durable write queue for HubSpot's CRM.
//!
//! The modules, in the order a write travels through them:
//!
//! - [`ingest`]: the front doors. A write comes in over the Unix socket
//!   (`ingest::socket`), is validated (`model::validate`) and group-committed
//!   (`ingest::committer`); or a producer inserts a row with plain SQL and the intake
//!   validates it in place (`ingest::intake`).
//! - [`store`]: the outbox (SQLite or PostgreSQL); every SQL statement lives here.
//! - [`dispatch`]: the loop that claims due rows per object type (`dispatch::scheduler`),
//!   waits for the rate limit (`dispatch::limiter`), sends each batch
//!   (`dispatch::sender`), and settles its rows from what the reconciler decides
//!   (`dispatch::settle`, `dispatch::reconciler`).
//! - [`hubspot`]: HubSpot's wire shapes and what its answers mean (pure, self-contained).
//! - [`operator`]: the commands and endpoints that look at and change the outbox, and the
//!   `enqueue` client.
//! - [`ui`]: the operators' dashboard pages, rendered (served on the socket under `/ui/`).
//!
//! Around them:
//!
//! - [`model`]: the words every stage shares (write, row, state, plan, policy).
//! - [`config`]: typed settings, validated once; the token never prints.
//! - [`runtime`]: one daemon per database, systemd notifications and watchdog, metrics.
//! - [`app`]: wiring and shutdown order.
//! - [`simulator`]: a local stand-in for HubSpot (`simulate`), for users and tests.
//!
//! The command line (`cli`) belongs to the binary alone. README's "Code map" walks one
//! write through these folders file by file.

pub mod app;
pub mod config;
pub mod dispatch;
pub mod hubspot;
pub mod ingest;
pub mod model;
pub mod operator;
pub mod runtime;
pub mod simulator;
pub mod store;
pub mod ui;
