//! Federation: the server's signing key, the inbound PDU pipeline and server ACLs; the
//! outbound client and sender queue arrive with the rest of the federation work.

pub mod acl;
pub mod inbound;
pub mod keys;
pub mod membership;
