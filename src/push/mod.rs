//! Push: pushers and the delivery of notifications to push gateways.

mod delivery;
pub mod gateway;
pub mod pushers;
pub mod sender;
