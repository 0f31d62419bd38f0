//! `PUT /send/{txnId}`: a transaction of PDUs and EDUs from another server. Processed once
//! per origin and transaction id (a retry gets the first answer); each PDU goes through the
//! pipeline on its own, rooms' PDUs in the order sent, and the answer says per PDU what became
//! of it. To-device EDUs (which carry the room keys of encrypted events) go before the
//! PDUs, the other EDUs after them (`edus::sort_edus`).

use crate::db;
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use crate::federation::inbound::{accept_pdu, check_pdu, edus};
use crate::time::now_ms;
use ruma::api::federation::transactions::edu::Edu;
use ruma::serde::Raw;
use ruma::{OwnedEventId, OwnedRoomId, RoomVersionId, ServerName};
use serde::Deserialize;
use serde_json::value::RawValue as RawJsonValue;
use std::collections::BTreeMap;

/// The spec's limits on one transaction.
const MAX_PDUS: usize = 50;
const MAX_EDUS: usize = 100;

/// What became of each PDU: `Ok` when accepted (soft-failed included), the reason otherwise.
pub type PduResults = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

/// A received transaction, as the edge parsed it.
pub struct IncomingTransaction<'a> {
    /// The server that signed the request.
    pub origin: &'a ServerName,
    pub txn_id: &'a str,
    /// The `origin` the body names, which must be the signer.
    pub claimed_origin: &'a ServerName,
    pub pdus: &'a [Box<RawJsonValue>],
    pub edus: &'a [Raw<Edu>],
}

pub async fn receive(ctx: FedCtx<'_>, txn: IncomingTransaction<'_>) -> Result<PduResults> {
    if txn.claimed_origin != txn.origin {
        return Err(Error::forbidden(format!(
            "The transaction names {} as its origin but was signed by {}",
            txn.claimed_origin, txn.origin
        )));
    }
    if txn.pdus.len() > MAX_PDUS || txn.edus.len() > MAX_EDUS {
        return Err(Error::bad_json(format!("A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")));
    }
    let pool = ctx.rooms.pool;
    if let Some(answer) = db::federation_inbound::txn_response(pool, txn.origin.as_str(), txn.txn_id).await? {
        return serde_json::from_str(&answer).map_err(|e| Error::internal(format!("stored transaction answer: {e}")));
    }
    let edus = edus::sort_edus(txn.origin, txn.edus);
    // A to-device message stored before an event reaches a sync no later than the event does:
    // the room key of an encrypted message sent alongside it is there when the client sees
    // the message (a client that saw the message first would show it undecryptable).
    edus::receive_edus(ctx, txn.origin, edus.before_pdus).await?;
    let mut results = PduResults::new();
    // Rooms are independent; within one, PDUs are placed in the order sent (a later one may
    // name an earlier one as its parent).
    for raw in txn.pdus {
        if let Some((event_id, outcome)) = receive_pdu(ctx, txn.origin, raw).await? {
            results.insert(event_id, outcome.map_err(|error| error.to_string()));
        }
    }
    // After the PDUs: a receipt may name an event that came in the same transaction.
    edus::receive_edus(ctx, txn.origin, edus.after_pdus).await?;
    let answer = serde_json::to_string(&results).map_err(|e| Error::internal(e.to_string()))?;
    db::federation_inbound::record_txn(pool, txn.origin.as_str(), txn.txn_id, &answer, now_ms()).await?;
    Ok(results)
}

/// One PDU of a transaction: `None` when it cannot even be named (no room, or a room of a
/// version this server does not know, so no event id can be computed); the spec has such PDUs
/// dropped. Failures of the PDU are its outcome; only infrastructure failures are errors.
async fn receive_pdu(
    ctx: FedCtx<'_>,
    origin: &ServerName,
    raw: &RawJsonValue,
) -> Result<Option<(OwnedEventId, Result<()>)>> {
    #[derive(Deserialize)]
    struct RoomOf {
        room_id: OwnedRoomId,
    }
    let Ok(RoomOf { room_id }) = serde_json::from_str::<RoomOf>(raw.get()) else { return Ok(None) };
    let Some(version) = db::rooms::version(ctx.rooms.pool, room_id.as_str()).await? else {
        return Ok(None);
    };
    let Ok(version) = RoomVersionId::try_from(version.as_str()) else { return Ok(None) };
    let checked = match check_pdu(ctx, &version, raw).await {
        Ok(checked) => checked,
        Err(error) => {
            // Named where its id can still be computed (a bad signature, say), so the sender
            // learns which PDU failed.
            let event_id = crate::federation::inbound::check::event_id_of_raw(&version, raw);
            return Ok(event_id.map(|event_id| (event_id, Err(error))));
        }
    };
    let event_id = checked.pdu.event_id.clone();
    let outcome = match accept_pdu(ctx, origin, checked).await {
        Ok(_) => Ok(()),
        Err(Error::Internal(error)) => return Err(Error::Internal(error)),
        Err(error) => Err(error),
    };
    Ok(Some((event_id, outcome)))
}
