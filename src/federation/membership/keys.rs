//! Where membership code gets the public keys that verify an event: see
//! [`crate::federation::key_source`] (the inbound pipeline uses the same source, so it lives
//! beside both).

pub use crate::federation::key_source::{KeySource, WantedKeys};
