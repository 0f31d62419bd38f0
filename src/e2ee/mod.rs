//! End-to-end encryption support (spec: "End-to-End Encryption"): the server stores and hands
//! out the keys clients publish, checks the signatures it can check, tells clients whose keys
//! changed, and keeps their encrypted key backups. It never sees plaintext.

pub mod backup;
pub mod cross_signing;
pub mod device_keys;
pub mod device_lists;
pub mod one_time_keys;
pub mod signatures;
