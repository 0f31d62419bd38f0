//! PDUs as another server would build them for a room a receiving Hearth holds: signed with
//! that server's key, placed on the receiver's view of the room (so the tests need not run the
//! other side's room logic).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::TestServer;
use hearth::signing_key::SigningKey;
use hearth::testing::rooms::build::{EventTemplate, Placement, build_and_sign};
use hearth::testing::rooms::pdu::Pdu;
use hearth::testing::rooms::send::AuthState;
use ruma::{EventId, RoomId, RoomVersionId, ServerName, UserId};

/// The room's version on `receiver`.
pub async fn room_version(receiver: &TestServer, room: &RoomId) -> RoomVersionId {
    let version =
        hearth::testing::db::rooms::version(&receiver.state.pool, room.as_str()).await.unwrap().expect("known room");
    RoomVersionId::try_from(version.as_str()).unwrap()
}

/// `sender`'s event built and signed by `origin` with `key`, on top of `parent` (the room's
/// deepest tip on `receiver` when `None`), with the auth events the state after `parent` gives.
pub async fn build_remote_pdu(
    receiver: &TestServer,
    (origin, key): (&ServerName, &SigningKey),
    room: &RoomId,
    sender: &str,
    template: EventTemplate,
    parent: Option<&str>,
) -> Pdu {
    let pool = &receiver.state.pool;
    let rules = hearth::testing::rooms::rules_for(&room_version(receiver, room).await).unwrap();
    let (parent_id, state_after, depth) = match parent {
        Some(id) => {
            let known = hearth::testing::db::federation_inbound::known_events(pool, &[id.to_owned()]).await.unwrap();
            let known = known.first().expect("the parent is stored");
            (known.event_id.clone(), known.state_after.expect("the parent has state"), known.depth)
        }
        None => {
            let tips = hearth::testing::db::events::forward_extremities(pool, room.as_str()).await.unwrap();
            let tip = tips.first().expect("a tip");
            (tip.event_id.clone(), tip.state_after, tip.depth)
        }
    };
    let sender = UserId::parse(sender).unwrap();
    let mut conn = pool.acquire().await.unwrap();
    let auth = AuthState::load(&mut conn, state_after, &template, &sender, &rules).await.unwrap();
    let prev = vec![EventId::parse(&parent_id).unwrap()];
    let placement = Placement {
        room_id: Some(room),
        prev_events: &prev,
        auth_events: &auth.auth_event_ids,
        depth: depth as u64 + 1,
    };
    build_and_sign(&template, &sender, &placement, &rules, origin, key).unwrap()
}
