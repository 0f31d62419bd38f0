//! Federation: other servers' keys ([`key_ring`]), the outbound
//! client with the spec's server discovery ([`client`], [`discovery`]) and TLS ([`tls`]), the
//! inbound PDU pipeline ([`inbound`]) and server ACLs ([`acl`]), membership across servers
//! ([`membership`]) and joins with a partial state ([`partial_state`]), history from other servers ([`backfill`]), queries ([`query`]) and the
//! delivery of the outbound queue ([`sender`]; its rows are written by `crate::outbox::federation`
//! inside the domains' own transactions). Federation domain code takes a [`FedCtx`].

pub mod acl;
pub(crate) mod backfill;
pub mod client;
pub(crate) mod directory;
pub(crate) mod discovery;
pub mod inbound;
pub(crate) mod key_ring;
pub(crate) mod key_source;
pub mod membership;
pub mod partial_state;
pub(crate) mod query;
pub(crate) mod sender;
pub mod tls;
pub(crate) mod user_keys;

/// What federation domain code takes: room operations, the outbound client and the key ring.
#[derive(Clone, Copy)]
pub struct FedCtx<'a> {
    pub rooms: crate::rooms::RoomCtx<'a>,
    pub client: &'a client::FederationClient,
    pub key_ring: &'a key_ring::KeyRing,
    /// Rooms joined with a partial state: the resync task's handle.
    pub partial: &'a partial_state::PartialStateRooms,
}
