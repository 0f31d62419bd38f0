//! Federation: today only the server's signing key; the outbound client, sender queue and
//! inbound PDU pipeline arrive with the federation work.

pub mod keys;
pub mod membership;
