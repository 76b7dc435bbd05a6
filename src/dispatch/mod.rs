//! Dispatch: from due rows to HubSpot and back, in the order a batch travels.
//!
//! - [`dispatcher`]: the loop and its one-step tick (which type, permit, claim, launch).
//! - [`scheduler`]: which rows go next, in which batch, when (pure).
//! - [`limiter`]: the rolling-window rate limit, adapting to HubSpot's headers.
//! - [`sender`]: one batch, one HTTP call, behind the [`sender::BatchSender`] seam.
//! - [`settle`]: a sent batch's answer reconciled and its rows settled.
//! - [`reconciler`]: what an answer does to each write (pure).
//! - [`pauses`]: pauses taken and lifted (429, daily limit, 401, 403, unreachable).
//! - [`breaker`]: when HubSpot is unreachable, single probes instead of batches (pure).
//! - [`recovery`]: rows a crash left in flight, settled at start.
//! - [`fleet`]: what daemons sharing one outbox (PostgreSQL) learn from each other.
//! - [`shared`]: the state the loop and its sending tasks share.
//! - [`trace`]: the trace property per object type: checked, created, or done without.
//! - [`clock`]: time behind a seam, so tests move it by hand.

pub mod breaker;
pub mod clock;
pub mod dispatcher;
pub mod fleet;
pub mod limiter;
pub mod pauses;
pub mod reconciler;
pub mod recovery;
pub mod scheduler;
pub mod sender;
pub mod settle;
pub mod shared;
pub mod trace;

#[cfg(test)]
mod tests;

pub use dispatcher::{Dispatcher, Tick};
