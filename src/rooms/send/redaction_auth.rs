//! The checks the authorisation rules leave to the server for a local `m.room.redaction`.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::send::AuthState;
use ruma::events::room::power_levels::UserPowerLevel;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::events::{RoomCreateEvent, RoomPowerLevelsEvent, RoomPowerLevelsIntField};
use ruma::{Int, RoomId, UserId};
use sqlx::PgConnection;

/// The checks the room version's authorisation rules leave to the server for a local
/// `m.room.redaction` (since room version 3 they only check the power to send one): the
/// target must be an event of this room, and redacting someone else's event needs the room's
/// `redact` power level.
pub(super) async fn authorize(
    conn: &mut PgConnection,
    room_id: &RoomId,
    redaction: &Pdu,
    auth: &AuthState,
    rules: &RoomVersionRules,
) -> Result<()> {
    let Some(target_id) = &redaction.redacts else {
        return Err(Error::bad_json("An m.room.redaction event must name the event it redacts in `redacts`"));
    };
    let not_found = || Error::not_found(format!("Event {target_id} not found in this room"));
    let target = db::events::by_id(&mut *conn, target_id.as_str())
        .await?
        .filter(|target| target.room_id == room_id.as_str())
        .ok_or_else(not_found)?;
    let target = Pdu::from_stored(&target.event_id, &target.json)?;
    if target.sender == redaction.sender {
        return Ok(());
    }
    let (sender_level, redact_level) = redact_power(auth, &redaction.sender, rules)?;
    if sender_level >= redact_level {
        Ok(())
    } else {
        Err(Error::forbidden("You do not have the power level to redact other users' events"))
    }
}

/// The sender's power level and the room's `redact` level, from the state before the event.
fn redact_power(auth: &AuthState, sender: &UserId, rules: &RoomVersionRules) -> Result<(UserPowerLevel, Int)> {
    let authorization = &rules.authorization;
    let create = auth.state_event("m.room.create", "").ok_or_else(|| Error::internal("room without create event"))?;
    let creators = RoomCreateEvent::new(create.clone())
        .creators(authorization)
        .map_err(|e| Error::internal(format!("create event: {e}")))?;
    let power_levels = auth.state_event("m.room.power_levels", "").map(|pdu| RoomPowerLevelsEvent::new(pdu.clone()));
    let invalid = |e: String| Error::internal(format!("power levels: {e}"));
    // Room version 12: creators outrank every power level.
    if authorization.explicitly_privilege_room_creators && creators.contains(sender) {
        let redact = match &power_levels {
            Some(levels) => {
                levels.get_as_int_or_default(RoomPowerLevelsIntField::Redact, authorization).map_err(invalid)?
            }
            None => RoomPowerLevelsIntField::Redact.default_value(),
        };
        return Ok((UserPowerLevel::Infinite, redact));
    }
    match &power_levels {
        Some(levels) => Ok((
            UserPowerLevel::Int(levels.user_power_level(sender, authorization).map_err(invalid)?),
            levels.get_as_int_or_default(RoomPowerLevelsIntField::Redact, authorization).map_err(invalid)?,
        )),
        // Without power levels the creator has 100 and everyone else the default (spec).
        None => {
            let level = if creators.contains(sender) { Int::from(100u8) } else { Int::from(0u8) };
            Ok((UserPowerLevel::Int(level), RoomPowerLevelsIntField::Redact.default_value()))
        }
    }
}
