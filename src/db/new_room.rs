//! Writing a new room's first events in one round trip: the events a room creation makes
//! (create, members, power levels, rules, invites, and a first message) form one chain whose
//! ids, states and memberships are all known before anything is written, so their rows, edges,
//! state snapshots, current state and memberships go in together instead of event by event —
//! and the chains of several rooms made in one transaction go in the same statement.

use crate::db::events::NewEvent;
use crate::db::rooms::TxnKey;
use sqlx::PgConnection;

/// One event of the chain, in order (the create event first): its row as every writer of
/// events stores it, and its id, interned in the same statement.
pub(crate) struct ChainEvent<'a> {
    pub event_id: &'a str,
    pub event: NewEvent<'a>,
}

/// A state snapshot with an id allocated beforehand ([`allocate_snapshot_ids`]): a delta of
/// `entries` over `parent`, or the whole state when `parent` is `None`.
pub(crate) struct ChainSnapshot<'a> {
    pub snapshot_id: i64,
    pub parent_id: Option<i64>,
    pub chain_length: i32,
    /// `(state_key_nid, event_id)`.
    pub entries: Vec<(i64, &'a str)>,
}

/// A member's membership once the whole chain is applied.
pub(crate) struct ChainMembership<'a> {
    pub user_id: &'a str,
    pub membership: &'a str,
    pub event_id: &'a str,
    pub stream_position: i64,
    /// The position of the user's latest join in the chain.
    pub joined_position: Option<i64>,
}

/// Everything one room's chain writes.
pub(crate) struct NewRoomChain<'a> {
    pub room_id: &'a str,
    pub events: Vec<ChainEvent<'a>>,
    /// `(event_id, prev_event_id)`.
    pub prev_edges: Vec<(&'a str, &'a str)>,
    /// `(event_id, auth_event_id)`: every auth event is in the chain.
    pub auth_edges: Vec<(&'a str, &'a str)>,
    pub snapshots: Vec<ChainSnapshot<'a>>,
    /// `(state_key_nid, event_id)` after the last event.
    pub current_state: Vec<(i64, &'a str)>,
    pub memberships: Vec<ChainMembership<'a>>,
    /// The last event: the room's only forward extremity.
    pub extremity: &'a str,
    /// A client transaction id of one event of the chain, and that event's id.
    pub transaction: Option<(TxnKey<'a>, &'a str)>,
}

/// Interns `(type, state_key)` pairs (distinct) and returns their numbers in order.
pub(crate) async fn intern_state_keys(conn: &mut PgConnection, keys: &[(String, String)]) -> sqlx::Result<Vec<i64>> {
    let types: Vec<&str> = keys.iter().map(|(kind, _)| kind.as_str()).collect();
    let state_keys: Vec<&str> = keys.iter().map(|(_, state_key)| state_key.as_str()).collect();
    // The second half reads the statement's snapshot, so it finds what existed before and the
    // first half returns what the statement added.
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "WITH wanted AS (SELECT * FROM unnest($1::text[], $2::text[]) AS w (event_type, state_key)),
         inserted AS (
             INSERT INTO state_keys (event_type, state_key) SELECT event_type, state_key FROM wanted
             ON CONFLICT (event_type, state_key) DO NOTHING
             RETURNING state_key_nid, event_type, state_key
         )
         SELECT state_key_nid, event_type, state_key FROM inserted
         UNION ALL
         SELECT k.state_key_nid, k.event_type, k.state_key FROM wanted w
         JOIN state_keys k ON k.event_type = w.event_type AND k.state_key = w.state_key",
    )
    .bind(&types)
    .bind(&state_keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut nids = Vec::with_capacity(keys.len());
    for (kind, state_key) in keys {
        let found = rows.iter().find(|(_, t, k)| t == kind && k == state_key).map(|(nid, _, _)| *nid);
        // A key another transaction added while this statement waited on it is in neither half.
        let nid = match found {
            Some(nid) => nid,
            None => crate::db::state::intern_state_key(&mut *conn, kind, state_key).await?,
        };
        nids.push(nid);
    }
    Ok(nids)
}

/// `count` state snapshot ids, ascending, for snapshots written with [`insert_chain`].
pub(crate) async fn allocate_snapshot_ids(conn: &mut PgConnection, count: i64) -> sqlx::Result<Vec<i64>> {
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('state_snapshots', 'snapshot_id')) FROM generate_series(1, $1)",
    )
    .bind(count)
    .fetch_all(conn)
    .await?;
    ids.sort_unstable();
    Ok(ids)
}

/// Writes the chains of several new rooms in one statement; returns each event's
/// `(event_id, event_nid)` and how many auth edges were stored (all of the chains'
/// `auth_edges`, or an auth event was missing).
pub(crate) async fn insert_chains(
    conn: &mut PgConnection,
    chains: &[NewRoomChain<'_>],
) -> sqlx::Result<(Vec<(String, i64)>, i64)> {
    let events: Vec<&ChainEvent<'_>> = chains.iter().flat_map(|chain| &chain.events).collect();
    let column = |f: fn(&NewEvent<'_>) -> i64| events.iter().map(|row| f(&row.event)).collect::<Vec<i64>>();
    let ids: Vec<&str> = events.iter().map(|row| row.event_id).collect();
    let rooms: Vec<&str> = events.iter().map(|row| row.event.room_id).collect();
    let types: Vec<&str> = events.iter().map(|row| row.event.event_type).collect();
    let key_nids: Vec<Option<i64>> = events.iter().map(|row| row.event.state_key_nid).collect();
    let senders: Vec<&str> = events.iter().map(|row| row.event.sender).collect();
    let json: Vec<&str> = events.iter().map(|row| row.event.json).collect();
    let prev_edges: Vec<&(&str, &str)> = chains.iter().flat_map(|chain| &chain.prev_edges).collect();
    let auth_edges: Vec<&(&str, &str)> = chains.iter().flat_map(|chain| &chain.auth_edges).collect();
    let snapshots: Vec<(&str, &ChainSnapshot<'_>)> =
        chains.iter().flat_map(|chain| chain.snapshots.iter().map(move |snapshot| (chain.room_id, snapshot))).collect();
    let entries: Vec<(i64, i64, &str)> = snapshots
        .iter()
        .flat_map(|(_, snapshot)| snapshot.entries.iter().map(|(key, event)| (snapshot.snapshot_id, *key, *event)))
        .collect();
    let current: Vec<(&str, i64, &str)> = chains
        .iter()
        .flat_map(|chain| chain.current_state.iter().map(move |(key, event)| (chain.room_id, *key, *event)))
        .collect();
    let members: Vec<(&str, &ChainMembership<'_>)> =
        chains.iter().flat_map(|chain| chain.memberships.iter().map(move |member| (chain.room_id, member))).collect();
    let transactions: Vec<(&TxnKey<'_>, &str)> =
        chains.iter().filter_map(|chain| chain.transaction.as_ref().map(|(key, event_id)| (key, *event_id))).collect();
    let txn =
        |f: for<'k> fn(&'k TxnKey<'k>) -> &'k str| transactions.iter().map(|(key, _)| f(key)).collect::<Vec<&str>>();
    // Foreign keys are checked at the end of the statement, when every row exists; the
    // sub-statements see each other's rows only through `ids`, which every row joins.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "WITH ids AS (
             INSERT INTO event_ids (event_id) SELECT unnest($1::text[])
             ON CONFLICT (event_id) DO UPDATE SET event_id = EXCLUDED.event_id
             RETURNING event_nid, event_id
         ), event AS (
             INSERT INTO events (event_nid, room_id, event_type, state_key_nid, sender, origin_server_ts, depth,
                                 stream_position, state_before, state_after, json)
             SELECT ids.event_nid, e.room_id, e.event_type, e.state_key_nid, e.sender, e.ts, e.depth, e.position,
                    e.state_before, e.state_after, e.json
             FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bigint[], $7::bigint[],
                         $8::bigint[], $9::bigint[], $10::bigint[], $11::text[])
                  AS e (event_id, room_id, event_type, state_key_nid, sender, ts, depth, position, state_before,
                        state_after, json)
             JOIN ids ON ids.event_id = e.event_id
         ), prev AS (
             INSERT INTO event_edges (event_nid, prev_event_nid)
             SELECT c.event_nid, p.event_nid FROM unnest($12::text[], $13::text[]) AS x (child, parent)
             JOIN ids c ON c.event_id = x.child JOIN ids p ON p.event_id = x.parent
         ), auth AS (
             INSERT INTO event_auth_edges (event_nid, auth_event_nid)
             SELECT c.event_nid, a.event_nid FROM unnest($14::text[], $15::text[]) AS x (child, auth)
             JOIN ids c ON c.event_id = x.child JOIN ids a ON a.event_id = x.auth
             RETURNING 1
         ), snapshot AS (
             INSERT INTO state_snapshots (snapshot_id, room_id, parent_id, chain_length) OVERRIDING SYSTEM VALUE
             SELECT s.id, s.room_id, s.parent, s.length
             FROM unnest($16::bigint[], $17::text[], $18::bigint[], $19::int[]) AS s (id, room_id, parent, length)
         ), entry AS (
             INSERT INTO state_snapshot_entries (snapshot_id, state_key_nid, event_nid)
             SELECT x.snapshot_id, x.state_key_nid, ids.event_nid
             FROM unnest($20::bigint[], $21::bigint[], $22::text[]) AS x (snapshot_id, state_key_nid, event_id)
             JOIN ids ON ids.event_id = x.event_id
         ), current AS (
             INSERT INTO current_state (room_id, state_key_nid, event_nid)
             SELECT x.room_id, x.state_key_nid, ids.event_nid
             FROM unnest($23::text[], $24::bigint[], $25::text[]) AS x (room_id, state_key_nid, event_id)
             JOIN ids ON ids.event_id = x.event_id
         ), member AS (
             INSERT INTO room_memberships (room_id, user_id, membership, event_nid, stream_position, joined_position)
             SELECT x.room_id, x.user_id, x.membership, ids.event_nid, x.position, x.joined
             FROM unnest($26::text[], $27::text[], $28::text[], $29::text[], $30::bigint[], $31::bigint[])
                  AS x (room_id, user_id, membership, event_id, position, joined)
             JOIN ids ON ids.event_id = x.event_id
         ), extremity AS (
             INSERT INTO forward_extremities (room_id, event_nid)
             SELECT x.room_id, ids.event_nid FROM unnest($32::text[], $33::text[]) AS x (room_id, event_id)
             JOIN ids ON ids.event_id = x.event_id
         ), txn AS (
             INSERT INTO event_transactions (user_id, device_id, room_id, event_type, txn_id, event_id)
             SELECT * FROM unnest($34::text[], $35::text[], $36::text[], $37::text[], $38::text[], $39::text[])
         )
         SELECT event_id, event_nid, (SELECT count(*) FROM auth) FROM ids",
    )
    .bind(&ids)
    .bind(&rooms)
    .bind(&types)
    .bind(&key_nids)
    .bind(&senders)
    .bind(column(|event| event.origin_server_ts))
    .bind(column(|event| event.depth))
    .bind(column(|event| event.stream_position))
    .bind(column(|event| event.state_before))
    .bind(column(|event| event.state_after))
    .bind(&json)
    .bind(prev_edges.iter().map(|(child, _)| *child).collect::<Vec<&str>>())
    .bind(prev_edges.iter().map(|(_, parent)| *parent).collect::<Vec<&str>>())
    .bind(auth_edges.iter().map(|(child, _)| *child).collect::<Vec<&str>>())
    .bind(auth_edges.iter().map(|(_, auth)| *auth).collect::<Vec<&str>>())
    .bind(snapshots.iter().map(|(_, snapshot)| snapshot.snapshot_id).collect::<Vec<i64>>())
    .bind(snapshots.iter().map(|(room, _)| *room).collect::<Vec<&str>>())
    .bind(snapshots.iter().map(|(_, snapshot)| snapshot.parent_id).collect::<Vec<Option<i64>>>())
    .bind(snapshots.iter().map(|(_, snapshot)| snapshot.chain_length).collect::<Vec<i32>>())
    .bind(entries.iter().map(|(snapshot, _, _)| *snapshot).collect::<Vec<i64>>())
    .bind(entries.iter().map(|(_, key, _)| *key).collect::<Vec<i64>>())
    .bind(entries.iter().map(|(_, _, event)| *event).collect::<Vec<&str>>())
    .bind(current.iter().map(|(room, _, _)| *room).collect::<Vec<&str>>())
    .bind(current.iter().map(|(_, key, _)| *key).collect::<Vec<i64>>())
    .bind(current.iter().map(|(_, _, event)| *event).collect::<Vec<&str>>())
    .bind(members.iter().map(|(room, _)| *room).collect::<Vec<&str>>())
    .bind(members.iter().map(|(_, member)| member.user_id).collect::<Vec<&str>>())
    .bind(members.iter().map(|(_, member)| member.membership).collect::<Vec<&str>>())
    .bind(members.iter().map(|(_, member)| member.event_id).collect::<Vec<&str>>())
    .bind(members.iter().map(|(_, member)| member.stream_position).collect::<Vec<i64>>())
    .bind(members.iter().map(|(_, member)| member.joined_position).collect::<Vec<Option<i64>>>())
    .bind(chains.iter().map(|chain| chain.room_id).collect::<Vec<&str>>())
    .bind(chains.iter().map(|chain| chain.extremity).collect::<Vec<&str>>())
    .bind(txn(|key| key.user_id))
    .bind(txn(|key| key.device_id))
    .bind(txn(|key| key.room_id))
    .bind(txn(|key| key.event_type))
    .bind(txn(|key| key.txn_id))
    .bind(transactions.iter().map(|(_, event_id)| *event_id).collect::<Vec<&str>>())
    .fetch_all(conn)
    .await?;
    let auth_stored = rows.first().map_or(0, |(_, _, auth)| *auth);
    Ok((rows.into_iter().map(|(event_id, nid, _)| (event_id, nid)).collect(), auth_stored))
}
