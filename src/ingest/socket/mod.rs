//! Front door 1: HTTP/1.1 + JSON over a Unix socket.
//!
//! - [`listener`]: binding the socket file (mode, stale files, removal on shutdown).
//! - [`server`]: the accept loop and the connection limits; [`conn`]: one connection's
//!   timeouts; [`budget`]: the memory request bodies may take.
//! - [`peer`]: who is connected, and who may act as an operator.
//! - [`body`]: parsing request bodies into validated writes.
//! - [`routes`]: the HTTP API, one file per resource, one error type.
//!
//! The client for the same socket (the `enqueue` command, tests, benches) lives with the
//! operator commands: `crate::operator::client`.

pub mod body;
pub mod budget;
pub mod conn;
pub mod listener;
pub mod peer;
pub mod routes;
pub mod server;
