//! End-to-end encryption keys across servers (server-server API, "End-to-End Encryption"):
//! `/user/keys/query`, `/user/keys/claim` and `/user/devices/{userId}` answered for other
//! servers from the `e2ee` domain ([`serve`]); a local client's `/keys/query` and `/keys/claim`
//! fanned out to the servers of the remote users it names ([`fan_out`]); and the cached device
//! lists of remote users, kept current from EDUs ([`device_cache`]).

pub(crate) mod device_cache;
pub(crate) mod fan_out;
pub(crate) mod serve;

pub(crate) use fan_out::{claim, query};
