//! Appending a local event to a room whose lock the caller holds: choose its place in the
//! DAG, authorise it against the state before it, and store it with its state, edges and
//! stream position.

use crate::db;
use crate::db::events::Extremity;
use crate::error::{Error, Result};
use crate::rooms::build::{EventTemplate, Placement, build_and_sign};
use crate::rooms::current_state::adopt_snapshot;
use crate::rooms::pdu::Pdu;
use crate::rooms::send::auth_state::{AuthState, StateSlice};
use crate::rooms::send::locks::HeldRoomLock;
use crate::rooms::send::persist::{Checked, Stored, persist_checked};
use crate::rooms::send::redaction_auth;
use crate::rooms::{RoomCtx, rules_for};
use crate::streams::Reservation;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{EventId, OwnedEventId, RoomId, RoomVersionId, UserId};
use sqlx::PgConnection;

/// The spec allows at most this many `prev_events`.
const MAX_PREV_EVENTS: usize = 10;

/// A client transaction id, for idempotent sends.
#[derive(Clone, Copy)]
pub struct Transaction<'a> {
    pub device_id: &'a str,
    pub txn_id: &'a str,
}

/// What an append did.
#[derive(Clone, Debug)]
pub enum Appended {
    /// A new event, stored (committed with the caller's transaction).
    New { pdu: Box<Pdu>, stored: Stored },
    /// A retransmitted client send: the event its first attempt created stands.
    SentBefore(OwnedEventId),
}

impl Appended {
    pub fn event_id(&self) -> &EventId {
        match self {
            Appended::New { pdu, .. } => &pdu.event_id,
            Appended::SentBefore(event_id) => event_id,
        }
    }
}

/// Appends events to one room, one after another, inside one transaction that holds the
/// room's locks (a batch of sends, or a new room's events). What one append reads — the room
/// version, the forward extremities, the auth state — is carried to the next instead of read
/// again: nobody else can change them while the locks are held, and each append leaves them
/// as the next one needs them. An append that fails changes nothing carried, so the caller
/// may roll it back to a savepoint and go on with the next.
pub struct Appender<'a> {
    ctx: RoomCtx<'a>,
    room: &'a HeldRoomLock,
    /// Unknown until the first append reads it, unless a previous batch left it.
    tip: Option<Tip>,
    auth: StateSlice,
}

/// What an appender knew of its room when its transaction committed, kept for the room's
/// next batch: the room's tip (version, forward extremities, remote servers) and the auth
/// state slice it read. The next batch starts from them without reading anything: the
/// statement that stores its first event checks that the room's forward extremities are
/// still these, and stores nothing if not (the append then reads the tip and starts over).
/// When they are, nothing was appended to the room since — by this process or any other — so
/// the rest still holds too, redactions included (a redaction is an event, so it would have
/// moved them).
pub struct Carried {
    tip: Tip,
    auth: StateSlice,
}

/// The room as the next event will see it.
struct Tip {
    rules: RoomVersionRules,
    /// Deepest first.
    extremities: Vec<Extremity>,
    /// Whether another server has a member in the room. Only a join changes it, and every
    /// join is appended under the room's lock, which this batch holds; a local send cannot
    /// join a remote user.
    has_remote_servers: bool,
    /// The room's local joined or invited members as read with the tip, two at most (`None`
    /// once this appender changed a membership). Members change only by member events, which
    /// move the extremities, so this holds as long as the tip does.
    local_members: Option<Vec<String>>,
}

impl Tip {
    /// The forward extremities' numbers, sorted, as the storing statement checks them.
    fn extremity_nids(&self) -> Vec<i64> {
        let mut nids: Vec<i64> = self.extremities.iter().map(|extremity| extremity.event_nid).collect();
        nids.sort_unstable();
        nids
    }
}

/// How one attempt at an append ended.
enum Attempt {
    Done(Appended),
    /// Nothing stored: the carried tip was stale.
    TipMoved,
}

impl<'a> Appender<'a> {
    /// An appender for the room `room` locks; every append must use the transaction the lock
    /// was taken in.
    pub fn new(ctx: RoomCtx<'a>, room: &'a HeldRoomLock) -> Appender<'a> {
        Appender { ctx, room, tip: None, auth: StateSlice::default() }
    }

    /// As [`Appender::new`], starting from what the room's previous batch left (see [`Carried`]).
    pub fn resuming(ctx: RoomCtx<'a>, room: &'a HeldRoomLock, carried: Carried) -> Appender<'a> {
        Appender { ctx, room, tip: Some(carried.tip), auth: carried.auth }
    }

    /// Whether another server has a joined member in the room, as the appender knows it
    /// (`None` before any append got that far).
    pub fn room_has_remote_servers(&self) -> Option<bool> {
        self.tip.as_ref().map(|tip| tip.has_remote_servers)
    }

    /// Whether no local member but the sender could hear of any of these events (senders, one
    /// per event): a sender alone (as far as this server goes) in the room, with their own
    /// messages. Push evaluation then has nobody to read rules for. `false` when unknown.
    pub fn nobody_else_local<'s>(&self, mut senders: impl Iterator<Item = &'s UserId>) -> bool {
        match self.tip.as_ref().and_then(|tip| tip.local_members.as_deref()) {
            Some([]) => true,
            Some([member]) => senders.all(|sender| sender.as_str() == member),
            _ => false,
        }
    }

    /// What the next batch may start from, once this one's transaction has committed.
    pub fn carried(self) -> Option<Carried> {
        Some(Carried { tip: self.tip?, auth: self.auth })
    }

    pub async fn append(
        &mut self,
        tx: &mut PgConnection,
        reservation: &mut Reservation<'_>,
        sender: &UserId,
        template: EventTemplate,
        transaction: Option<Transaction<'_>>,
    ) -> Result<Appended> {
        let room_id = self.room.room_id();
        // Retransmissions are recognised by device and path; the path names the room and type.
        let event_type = template.kind.to_string();
        let txn_key = transaction.map(|txn| db::rooms::TxnKey {
            user_id: sender.as_str(),
            device_id: txn.device_id,
            room_id: room_id.as_str(),
            event_type: &event_type,
            txn_id: txn.txn_id,
        });
        // The refusal met on a carried tip, while the tip is read again to check it.
        let mut refused_on_carried: Option<Error> = None;
        loop {
            let read_now = self.tip.is_none();
            if read_now {
                // A retried request: the first attempt's event stands, nothing new is sent.
                let read =
                    db::events::room_tip(&mut *tx, room_id.as_str(), self.ctx.server_name.as_str(), txn_key).await;
                let loaded = match (read, refused_on_carried.take()) {
                    (Ok(loaded), _) => loaded,
                    // The refusal's checks ran a statement that failed: the transaction takes
                    // no more, and the refusal is the answer.
                    (Err(_), Some(refusal)) => return Err(refusal),
                    (Err(error), None) => return Err(error.into()),
                };
                if let Some(event_id) = loaded.transaction_event {
                    return sent_before(&event_id);
                }
                self.tip = Some(Tip::new(room_id, loaded)?);
                self.auth = StateSlice::default();
            }
            match self.attempt(tx, reservation, sender, &template, txn_key).await {
                Ok(Attempt::Done(appended)) => return Ok(appended),
                // Another writer appended to the room since the tip was carried: read it.
                Ok(Attempt::TipMoved) if !read_now => self.tip = None,
                Ok(Attempt::TipMoved) => {
                    return Err(Error::internal(format!("{room_id}: its tip moved under its lock")));
                }
                // Refused on a carried tip. Storing would have caught a stale tip, but the
                // checks before it refuse on the state they were given: a member who joined
                // since by another path (a join over federation, another process) is still
                // out in it. What is refused on the room as it is now stands; a
                // retransmission of a send that would fail now (its sender left since, say)
                // still answers with its first event, which the tip's read looks up.
                Err(refusal @ Error::Matrix { .. }) if !read_now => {
                    self.tip = None;
                    refused_on_carried = Some(refusal);
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// Builds, authorises and stores the event on the tip the appender holds.
    async fn attempt(
        &mut self,
        tx: &mut PgConnection,
        reservation: &mut Reservation<'_>,
        sender: &UserId,
        template: &EventTemplate,
        txn_key: Option<db::rooms::TxnKey<'_>>,
    ) -> Result<Attempt> {
        let room_id = self.room.room_id();
        let Some(tip) = &mut self.tip else { return Err(Error::internal("appending without the room's tip")) };
        let rules = &tip.rules;
        let prev = &tip.extremities[..tip.extremities.len().min(MAX_PREV_EVENTS)];
        if prev.is_empty() {
            return Err(Error::internal(format!("room {room_id} has no events")));
        }
        // Where the DAG has forked (only federation can fork it: local creation is serialised),
        // the state before the new event is the resolution of its parents' states.
        let mut parent_states: Vec<i64> = prev.iter().map(|extremity| extremity.state_after).collect();
        parent_states.sort_unstable();
        parent_states.dedup();
        let state_before = match parent_states.as_slice() {
            [single] => *single,
            _ => crate::rooms::resolve::resolve_snapshots(&mut *tx, room_id, rules, &parent_states).await?,
        };
        let depth = prev.iter().map(|extremity| extremity.depth).max().unwrap_or(0) as u64 + 1;

        let auth_state = AuthState::load_into(&mut *tx, &mut self.auth, state_before, template, sender, rules).await?;
        if let (Some(action), Some(target)) = (template.membership_action, &template.state_key) {
            action.check(auth_state.state_event("m.room.member", target))?;
        }
        let prev_events: Vec<OwnedEventId> = prev.iter().filter_map(|e| EventId::parse(&e.event_id).ok()).collect();
        let placement = Placement {
            room_id: Some(room_id),
            prev_events: &prev_events,
            auth_events: &auth_state.auth_event_ids,
            depth,
        };
        let pdu = build_and_sign(template, sender, &placement, rules, self.ctx.server_name, self.ctx.key)?;
        auth_state.authorize(&pdu, rules)?;
        // What the auth rules leave to the server: who may redact what, and the spec's checks on
        // relations sent by clients.
        if pdu.kind == TimelineEventType::RoomRedaction {
            redaction_auth::authorize(&mut *tx, room_id, &pdu, &auth_state, rules).await?;
        }
        crate::rooms::relations::check_new(&mut *tx, room_id, &pdu).await?;

        let prev_nids: Vec<i64> = prev.iter().map(|extremity| extremity.event_nid).collect();
        let extremity_nids = tip.extremity_nids();
        let position = reservation.next_ahead(&mut *tx).await?;
        let checked = persist_checked(
            &mut *tx,
            self.room,
            position,
            &pdu,
            (state_before, &prev_nids),
            Some(&extremity_nids),
            txn_key,
        )
        .await?;
        let stored = match checked {
            Checked::Stored(stored) => stored,
            Checked::TipMoved => {
                reservation.unused(position);
                return Ok(Attempt::TipMoved);
            }
            Checked::SentBefore(event_id) => {
                reservation.unused(position);
                return sent_before(&event_id).map(Attempt::Done);
            }
        };
        if parent_states.len() > 1 {
            // The event merges forked branches: resolution may have changed keys it does not
            // touch, and current state follows what it decided. (Branches beyond the spec's
            // limit of parents are merged by later events.)
            adopt_snapshot(&mut *tx, room_id, stored.state_after, stored.position).await?;
        }

        // Stored: the event replaces its parents as an extremity (those beyond the spec's
        // limit of parents stay), and is deeper than any of them.
        let unreferenced = tip.extremities.split_off(prev_nids.len());
        tip.extremities = vec![Extremity {
            event_nid: stored.event_nid,
            event_id: pdu.event_id.to_string(),
            depth: i64::try_from(depth).unwrap_or(i64::MAX),
            state_after: stored.state_after,
        }];
        tip.extremities.extend(unreferenced);
        if pdu.kind == TimelineEventType::RoomRedaction {
            // A redacted state event counts for the auth rules as what redaction leaves of it.
            self.auth = StateSlice::default();
        }
        if pdu.kind == TimelineEventType::RoomMember {
            tip.local_members = None;
        }
        Ok(Attempt::Done(Appended::New { pdu: Box::new(pdu), stored }))
    }
}

/// The event a retransmitted send's first attempt created.
fn sent_before(event_id: &str) -> Result<Appended> {
    let event_id = EventId::parse(event_id).map_err(|e| Error::internal(format!("stored event id: {e}")))?;
    Ok(Appended::SentBefore(event_id))
}

impl Tip {
    fn new(room_id: &RoomId, loaded: db::events::RoomTip) -> Result<Tip> {
        let version = loaded.version.ok_or_else(|| Error::not_found(format!("Unknown room {room_id}")))?;
        let version = RoomVersionId::try_from(version.as_str())
            .map_err(|e| Error::internal(format!("stored room version: {e}")))?;
        Ok(Tip {
            rules: rules_for(&version)?,
            extremities: loaded.extremities,
            has_remote_servers: loaded.has_remote_servers,
            local_members: Some(loaded.local_members),
        })
    }
}
