//! The room's current state (the `current_state` table and the membership it implies) made
//! to follow a state snapshot that state resolution produced. An event normally changes
//! current state by its own key alone; where the DAG forked, resolution may also change keys
//! the new event never touched, and readers of current state (`/state`, membership checks,
//! `/joined_members`, push) must see what resolution decided.

use crate::db;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use ruma::RoomId;
use sqlx::PgConnection;

/// Makes current state and membership agree with `snapshot` for every key where they differ.
/// Memberships that change are recorded at `position` (the stream position of the event that
/// brought the change), so `/sync` reports them.
pub(crate) async fn adopt_snapshot(
    conn: &mut PgConnection,
    room_id: &RoomId,
    snapshot: i64,
    position: i64,
) -> Result<()> {
    let current = db::state::current_state(&mut *conn, room_id.as_str()).await?;
    for entry in db::state::snapshot_state(&mut *conn, snapshot).await? {
        if current.iter().any(|now| now.state_key_nid == entry.state_key_nid && now.event_nid == entry.event_nid) {
            continue;
        }
        db::state::set_current_state(conn, room_id.as_str(), entry.state_key_nid, entry.event_nid).await?;
        if entry.event_type == "m.room.member" {
            let pdu = Pdu::from_stored(&entry.event_id, &entry.json)?;
            let membership = pdu.content_value()["membership"].as_str().unwrap_or("leave").to_owned();
            db::rooms::set_membership(conn, room_id.as_str(), &entry.state_key, &membership, entry.event_nid, position)
                .await?;
        }
    }
    Ok(())
}
