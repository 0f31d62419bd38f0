//! Outbound network access that users can aim: one guarded HTTP client (DESIGN §4a), shared
//! by push delivery and, later, federation and URL previews.

mod client;
pub mod ranges;

pub use client::{OutboundClient, OutboundError};
