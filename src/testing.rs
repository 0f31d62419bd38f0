//! What the integration tests, benches and the bench binary reach inside the crate. The
//! domain modules are `pub(crate)` (so `unreachable_pub` can hold the line between the
//! crate's API and its insides); this one door names what those outside callers use. It is
//! not an API: nothing here is stable.

pub mod creators {
    pub use crate::creators::{billing, flag, tips};
}
pub mod db {
    pub use crate::db::{
        broadcast, embedded, ensure_database, events, federation_inbound, federation_queue, open_pool, push_actions,
        rooms, state, users, with_synchronous_commit,
    };
}
pub mod federation {
    pub use crate::federation::{acl, client, inbound, membership, partial_state, tls};
}
pub mod http {
    pub use crate::http::{route_table, ruma, serve};
}
pub mod media {
    pub use crate::media::{animated, orphans};
}
pub mod push {
    pub use crate::push::record_notifications;
}
pub mod rooms {
    pub use crate::rooms::{build, create, filter, membership, pdu, rules_for, send, verify};
}
pub mod sync {
    pub use crate::sync::{build, initial_cache, response, types};
}
pub mod time {
    pub use crate::time::now_ms;
}
pub mod users {
    pub use crate::users::{Session, accounts};
}
pub mod xmpp {
    pub use crate::xmpp::{Mode, serve};
}
