//! End-to-end encryption support: what the server stores and relays for clients' keys.

pub mod backup;
