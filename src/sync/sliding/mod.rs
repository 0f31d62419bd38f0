//! Sliding sync (MSC4186, "simplified sliding sync"), as Synapse serves it: the client names
//! lists of rooms (sorted by recency, filtered, windowed by ranges) and rooms it subscribes
//! to, and gets only those rooms' news, with extensions for the per-user streams.
//!
//! It shares everything with `/sync`: the stream positions, the notifier that wakes waiting
//! requests, and the room windows (`sync::room`), so the same exactly-once invariant holds —
//! a connection is sent each room's events once, from the position it last had the room at.

pub(crate) mod connection;
mod extensions;
mod filters;
mod lists;
mod required_state;
mod room;
pub(crate) mod serve;
pub(crate) mod unparsed;
