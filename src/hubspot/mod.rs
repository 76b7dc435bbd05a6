//! Talking to HubSpot's batch-create endpoint.
//!
//! - [`wire`]: the request and response shapes.
//! - [`classify`]: what an answer means (pure).

pub mod classify;
pub mod wire;
