//! The pipeline with the network: keys come from the key ring; a PDU whose auth events this
//! server lacks has its auth chain fetched first; a PDU whose parents it lacks has the gap
//! filled from the server that sent it (`get_missing_events`, bounded) before it is placed,
//! and where that does not reach known events, the state before the missing parents is fetched
//! (`state_fetch`) and the PDU judged against it.

use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::accept::{
    Accepted, MissingPrevEvents, accept_with_known_parents, accept_with_parent_states, room_of,
};
use crate::federation::inbound::check::{CheckedPdu, parse_pdu, signing_keys_wanted, verify_pdu};
use crate::federation::inbound::state_fetch::{fetch_parent_states, fetch_unknown_auth_events};
use crate::rooms::pdu::Pdu;
use ruma::api::federation::event::get_missing_events::v1 as missing_events;
use ruma::{RoomVersionId, ServerName, UInt};
use serde_json::value::RawValue as RawJsonValue;

/// Events asked for to fill one gap: the spec's default. A longer gap is not filled (the
/// event is then refused; its sender's later events will bring us up to date).
const MAX_GAP: u32 = 10;

/// Format, signatures (keys through the key ring) and content hash of a PDU of `room_version`.
pub async fn check_pdu(ctx: FedCtx<'_>, room_version: &RoomVersionId, raw: &RawJsonValue) -> Result<CheckedPdu> {
    let object = parse_pdu(room_version, raw)?;
    let keys = ctx.key_ring.public_keys(&signing_keys_wanted(&object)).await;
    verify_pdu(room_version, object, &keys)
}

/// Places a checked PDU in its room (see [`accept_with_known_parents`]), first fetching from
/// `origin` the events between the room's tips and the PDU when its parents are unknown.
pub async fn accept_pdu(ctx: FedCtx<'_>, origin: &ServerName, pdu: CheckedPdu) -> Result<Accepted> {
    if let Err(error) = fetch_unknown_auth_events(ctx, origin, &pdu).await {
        // The auth check says what is missing; this is only why it could not be had.
        tracing::info!(%origin, event_id = %pdu.pdu.event_id, %error, "could not fetch unknown auth events");
    }
    match accept_with_known_parents(ctx.rooms, origin, &pdu).await? {
        Ok(accepted) => return Ok(accepted),
        Err(MissingPrevEvents(_)) => fill_gap(ctx, origin, &pdu).await?,
    }
    let missing = match accept_with_known_parents(ctx.rooms, origin, &pdu).await? {
        Ok(accepted) => return Ok(accepted),
        Err(MissingPrevEvents(missing)) => missing,
    };
    let states = fetch_parent_states(ctx, origin, &pdu, &missing).await.map_err(|error| {
        Error::not_found(format!(
            "{}: its prev events {missing:?} are unknown here and their state could not be fetched: {error}",
            pdu.pdu.event_id
        ))
    })?;
    match accept_with_parent_states(ctx.rooms, origin, &pdu, &states).await? {
        Ok(accepted) => Ok(accepted),
        Err(MissingPrevEvents(missing)) => Err(Error::not_found(format!(
            "{}: its prev events {missing:?} are unknown here and could not be fetched",
            pdu.pdu.event_id
        ))),
    }
}

/// Asks `origin` for the events between the room's forward extremities and `pdu`, and accepts
/// those it can, oldest first. The fetched events are checked like any other PDU.
async fn fill_gap(ctx: FedCtx<'_>, origin: &ServerName, pdu: &CheckedPdu) -> Result<()> {
    let room_id = room_of(pdu)?;
    let extremities = crate::db::events::forward_extremities(ctx.rooms.pool, room_id.as_str()).await?;
    let earliest = extremities.iter().filter_map(|tip| ruma::EventId::parse(&tip.event_id).ok()).collect();
    let mut request = missing_events::Request::new(room_id.clone(), earliest, vec![pdu.pdu.event_id.clone()]);
    request.limit = UInt::from(MAX_GAP);
    let response = match ctx.client.send(origin, request).await {
        Ok(response) => response,
        Err(error) => {
            tracing::info!(%origin, %room_id, %error, "could not fetch missing events");
            return Ok(());
        }
    };
    let mut fetched: Vec<CheckedPdu> = Vec::new();
    for raw in response.events.iter().take(MAX_GAP as usize) {
        match check_pdu(ctx, &pdu.room_version, raw).await {
            Ok(checked) if checked.pdu.room_id.as_ref() == Some(&room_id) => fetched.push(checked),
            Ok(_) => tracing::info!(%origin, "a missing event of another room was sent; ignored"),
            Err(error) => tracing::info!(%origin, %error, "a missing event failed its checks"),
        }
    }
    // Oldest first, so each finds its parents stored.
    fetched.sort_by_key(|checked| depth_of(&checked.pdu));
    for event in fetched {
        if let Err(error) = accept_with_known_parents(ctx.rooms, origin, &event).await {
            tracing::info!(%origin, event_id = %event.pdu.event_id, %error, "a missing event was refused");
        }
    }
    Ok(())
}

fn depth_of(pdu: &Pdu) -> u64 {
    u64::from(pdu.depth)
}
