//! HubSpot's side of the wire, self-contained (it imports nothing else of the crate):
//!
//! - [`wire`]: the request and response shapes, and the rate-limit headers.
//! - [`classify`]: what an answer means (pure).
//! - [`properties`]: the properties API for the trace property: answers, group, body.

pub mod classify;
pub mod properties;
pub mod wire;
