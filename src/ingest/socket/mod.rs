//! Front door 1: HTTP/1.1 + JSON over a Unix socket.
//!
//! - [`listener`]: binding the socket file (mode, stale files, removal on shutdown).
//! - [`body`]: parsing request bodies into validated writes.
//! - [`routes`]: the HTTP API, one file per resource, one error type.
//!
//! The client for the same socket (the `enqueue` command, tests, benches) lives with the
//! operator commands: `crate::operator::client`.

pub mod body;
pub mod listener;
pub mod peer;
pub mod routes;
