//! The front doors: everything a write goes through before it is a durable, sendable row.
//!
//! - [`socket`]: HTTP/1.1 + JSON over a Unix socket (front door 1) and the operator
//!   endpoints served beside it.
//! - [`web`]: the operators' dashboard on TCP (`ui.listen`), behind a login.
//! - [`group`]: duplicates and trace-id conflicts within a group of requests (pure).
//! - [`committer`]: group commit of socket requests, acknowledged once fsync'd.
//! - [`intake`]: rows producers inserted with plain SQL (front door 2), validated in place.
//!
//! What a valid write is, is a rule the operator's `retry --edit` applies too, so it lives
//! in [`crate::model::validate`].

pub mod capacity;
pub mod committer;
pub mod group;
pub mod intake;
pub mod socket;
pub mod web;
