//! Redactions: sending them (who may redact what), and serving redacted events.
//!
//! The original JSON of a redacted event stays stored, unchanged (admins may need it); every
//! read computes the redacted form with the room version's redaction algorithm (ruma) and
//! adds the redaction under `unsigned.redacted_because`. A redacted state event stays in the
//! room's state, with only the keys the algorithm keeps (spec: "Redactions").

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::RoomCtx;
use crate::rooms::append::{AuthState, Transaction, append};
use crate::rooms::build::EventTemplate;
use crate::rooms::pdu::Pdu;
use ruma::canonical_json::redact;
use ruma::events::room::power_levels::UserPowerLevel;
use ruma::room_version_rules::{RedactionRules, RoomVersionRules};
use ruma::state_res::events::{RoomCreateEvent, RoomPowerLevelsEvent, RoomPowerLevelsIntField};
use ruma::{EventId, Int, OwnedEventId, RoomId, UserId};
use serde_json::{Value, json};
use sqlx::{PgConnection, PgExecutor};
use std::collections::HashMap;

/// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`: sends an `m.room.redaction`. Whether the
/// sender may redact the event is checked when the event is appended (see [`authorize`]), so
/// a redaction sent through `/send` is held to the same rules.
pub async fn redact_event(
    ctx: RoomCtx<'_>,
    room_id: &RoomId,
    sender: &UserId,
    event_id: &EventId,
    reason: Option<&str>,
    transaction: Transaction<'_>,
) -> Result<OwnedEventId> {
    // Room version 11 moved `redacts` into the content; for earlier versions the builder
    // copies it to the top level as well.
    let mut content = json!({ "redacts": event_id });
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    append(ctx, room_id, sender, EventTemplate::message("m.room.redaction", content), Some(transaction)).await
}

/// The checks the room version's authorisation rules leave to the server for a local
/// `m.room.redaction` (since room version 3 they only check the power to send one): the
/// target must be an event of this room, and redacting someone else's event needs the room's
/// `redact` power level.
pub async fn authorize(
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

/// An event as clients and the authorisation rules see it: redacted if a redaction applies.
#[derive(Clone, Debug)]
pub struct Served {
    pub event_nid: i64,
    /// The redacted form when `redaction` is set, else the event as stored.
    pub pdu: Pdu,
    pub redaction: Option<Pdu>,
}

impl Served {
    /// The client-format event, with `unsigned.redacted_because` when redacted.
    pub fn client_event(&self, room_id: &RoomId) -> Value {
        let mut event = self.pdu.to_client_event(room_id);
        if let Some(redaction) = &self.redaction {
            event["unsigned"]["redacted_because"] = redaction.to_client_event(room_id);
        }
        event
    }
}

/// Applies the redactions that exist for `events` (event number and parsed event).
pub async fn apply(db: impl PgExecutor<'_>, rules: &RedactionRules, events: Vec<(i64, Pdu)>) -> Result<Vec<Served>> {
    let nids: Vec<i64> = events.iter().map(|(nid, _)| *nid).collect();
    apply_among(db, rules, events, &nids).await
}

/// Like [`apply`] when only `candidates` (event numbers) can have a redaction.
pub async fn apply_among(
    db: impl PgExecutor<'_>,
    rules: &RedactionRules,
    events: Vec<(i64, Pdu)>,
    candidates: &[i64],
) -> Result<Vec<Served>> {
    let mut redactions = HashMap::new();
    for row in db::relations::redactions_of(db, candidates).await? {
        redactions.insert(row.target_nid, Pdu::from_stored(&row.event.event_id, &row.event.json)?);
    }
    events.into_iter().map(|(event_nid, pdu)| serve(rules, event_nid, pdu, redactions.remove(&event_nid))).collect()
}

/// An event as served, given the redaction that applies to it (if any).
pub fn serve(rules: &RedactionRules, event_nid: i64, pdu: Pdu, redaction: Option<Pdu>) -> Result<Served> {
    match redaction {
        Some(redaction) => Ok(Served { event_nid, pdu: redacted(&pdu, rules)?, redaction: Some(redaction) }),
        None => Ok(Served { event_nid, pdu, redaction: None }),
    }
}

/// Parses state entries and applies their redactions.
pub async fn apply_to_state(
    db: impl PgExecutor<'_>,
    rules: &RedactionRules,
    entries: &[db::state::StateEntry],
) -> Result<Vec<Served>> {
    let events = entries
        .iter()
        .map(|entry| Ok((entry.event_nid, Pdu::from_stored(&entry.event_id, &entry.json)?)))
        .collect::<Result<Vec<_>>>()?;
    // Where the state was read with its redaction flags, only flagged events are looked up.
    let candidates: Vec<i64> =
        entries.iter().filter(|entry| entry.has_redaction != Some(false)).map(|entry| entry.event_nid).collect();
    apply_among(db, rules, events, &candidates).await
}

/// The event as the redaction algorithm of its room version leaves it.
pub fn redacted(pdu: &Pdu, rules: &RedactionRules) -> Result<Pdu> {
    let object = redact(pdu.json.clone(), rules, None)
        .map_err(|e| Error::internal(format!("redacting {}: {e}", pdu.event_id)))?;
    Pdu::from_canonical(pdu.event_id.clone(), object)
}
