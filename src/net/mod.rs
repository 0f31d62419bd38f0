//! Outbound network access that users can aim: one guarded HTTP client (DESIGN §4a), shared
//! by push delivery and, later, federation and URL previews.

mod client;
pub(crate) mod ranges;

pub(crate) use client::{OutboundClient, OutboundError};
