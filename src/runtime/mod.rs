//! What the daemon needs from the host while it runs, beside the write path:
//!
//! - [`lock`]: one daemon per database (an `flock` that dies with the process).
//! - [`systemd`]: readiness, stopping and watchdog notifications, and the loops'
//!   heartbeats the watchdog reads.
//! - [`watchdog`]: pings systemd only while the loops go round and the database answers.
//! - [`metrics`]: counters for `GET /metrics`.

pub mod disk;
pub mod lock;
pub mod metrics;
pub mod retention;
pub mod systemd;
pub mod watchdog;
