//! `/sync`: everything a client learns about its rooms and account between two positions of
//! the global stream (DESIGN §3). `build` turns a window of stream positions into the
//! response body; which window to serve, waiting for new data and the token format live
//! beside it.

pub mod build;
mod device_lists;
mod ephemeral;
pub mod initial_cache;
mod initial_reads;
mod lazy_members;
pub(crate) mod long_poll;
mod news;
mod news_batch;
mod partial_state;
mod presence;
pub mod response;
mod room;
pub(crate) mod sections;
pub(crate) mod serve;
mod shared_pages;
pub(crate) mod sliding;
mod state_redactions;
pub(crate) mod stream;
mod summary;
mod to_device;
mod transaction_ids;
pub mod types;
mod unread;
mod unread_cache;
pub(crate) mod wait;
