//! Membership across servers, both directions (server-server API, "Joining rooms", "Leaving
//! rooms", "Inviting to a room", "Knocking upon a room"): served for users of other servers in
//! our rooms, and used for our users in rooms that live elsewhere.

pub mod template;

pub use template::{MembershipTemplate, RemoteMembership, make_membership};
