//! Membership across servers, both directions (server-server API, "Joining rooms", "Leaving
//! rooms", "Inviting to a room", "Knocking upon a room"): served for users of other servers in
//! our rooms (`template`: `make_*`; `accept`: `send_*`), and used for our users joining rooms
//! that live elsewhere (`join`, checking the resident server's answer in `remote_state` and
//! storing the room in `joined_room`); invitations from other servers and leaving rooms this
//! server is not in (`outside`).

pub mod accept;
pub mod invite;
pub mod join;
mod joined_room;
pub mod keys;
pub mod knock;
pub mod outside;
pub mod remote_state;
mod resident;
pub mod stripped;
pub mod template;

pub use accept::{JoinedRoomState, send_join, send_membership};
pub use invite::invite;
pub use join::{join, join_remote};
pub use keys::KeySource;
pub use knock::knock;
pub use outside::{leave, receive_invite};
pub use template::{MembershipTemplate, RemoteMembership, make_membership};
