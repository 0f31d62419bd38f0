//! Membership across servers, both directions (server-server API, "Joining rooms", "Leaving
//! rooms", "Inviting to a room", "Knocking upon a room"): served for users of other servers in
//! our rooms, and used for our users in rooms that live elsewhere.

pub mod accept;
pub mod keys;
pub mod stripped;
pub mod template;

pub use accept::{JoinedRoomState, send_membership};
pub use keys::KeySource;
pub use template::{MembershipTemplate, RemoteMembership, make_membership};
