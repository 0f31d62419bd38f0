//! Push: pushers and the delivery of notifications to push gateways.

pub mod gateway;
pub mod pushers;
pub mod sender;
