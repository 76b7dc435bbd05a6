//! HubSpot's side of the wire, self-contained (it imports nothing else of the crate):
//!
//! - [`wire`]: the request and response shapes, and the rate-limit headers.
//! - [`classify`]: what an answer means (pure).

pub mod classify;
pub mod wire;
