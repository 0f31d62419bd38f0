//! `event_push_actions` (migration 0012): what each local user's push rules decided for each
//! new event that notifies or highlights them, and what the evaluation reads to decide it.

use serde_json::Value;
use sqlx::{FromRow, PgConnection, PgExecutor};

/// A just-stored event, as the push rules see it.
#[derive(Clone, Debug, FromRow)]
pub struct NewEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub sender: String,
    pub event_type: String,
    pub origin_server_ts: i64,
    pub stream_position: i64,
    pub json: String,
}

/// A local user who may be notified of a room's events: a joined member, or an invitee (whose
/// own invite may notify them).
#[derive(Debug, FromRow)]
pub struct Recipient {
    pub user_id: String,
    pub membership: String,
    /// Their member event (its display name is theirs in the room).
    pub member_event_nid: i64,
    /// Where their latest join is in the stream: earlier events are not theirs to hear of.
    pub joined_position: i64,
    /// The stream position of their latest push rule change; `None`: never changed.
    pub rules_version: Option<i64>,
    /// Of the senders asked about, those the user ignores (`m.ignored_user_list`).
    pub ignored_senders: Vec<String>,
}

/// What push evaluation reads of a room (of many rooms in one statement): its local recipients, the JSON of
/// its current create and power levels events, and its joined member count.
#[derive(Debug, Default)]
pub struct PushContext {
    pub recipients: Vec<Recipient>,
    pub create_json: Option<String>,
    pub power_levels_json: Option<String>,
    pub joined_members: i64,
}

/// One row of [`push_contexts`]: a recipient's columns (all `None` on the one row of a room
/// without local recipients); the room's create and power levels events on its first row
/// only, its member count on every row.
#[derive(FromRow)]
struct PushContextRow {
    room_id: String,
    create_json: Option<String>,
    power_levels_json: Option<String>,
    joined_members: i64,
    user_id: Option<String>,
    membership: Option<String>,
    member_event_nid: Option<i64>,
    joined_position: Option<i64>,
    rules_version: Option<i64>,
    ignored_senders: Option<Vec<String>>,
}

/// For each of `room_ids` (in that order, one statement for all): its local joined and
/// invited users (`local_suffix` is `:server_name`), with which of `senders` each ignores,
/// beside the room's create and power levels events and its joined member count (see
/// [`PushContext`]). Current state is probed key by key, as
/// `db::state::current_state_for_keys` does.
pub async fn push_contexts(
    db: impl PgExecutor<'_>,
    room_ids: &[&str],
    local_suffix: &str,
    senders: &[String],
) -> sqlx::Result<Vec<PushContext>> {
    let rows: Vec<PushContextRow> = sqlx::query_as(
        "WITH room AS MATERIALIZED (
             SELECT r.room_id,
                    (SELECT e.json FROM events e WHERE e.event_nid =
                        (SELECT cs.event_nid FROM current_state cs WHERE cs.room_id = r.room_id AND cs.state_key_nid =
                            (SELECT k.state_key_nid FROM state_keys k
                             WHERE k.event_type = 'm.room.create' AND k.state_key = ''))) AS create_json,
                    (SELECT e.json FROM events e WHERE e.event_nid =
                        (SELECT cs.event_nid FROM current_state cs WHERE cs.room_id = r.room_id AND cs.state_key_nid =
                            (SELECT k.state_key_nid FROM state_keys k
                             WHERE k.event_type = 'm.room.power_levels' AND k.state_key = ''))) AS power_levels_json,
                    (SELECT COUNT(*) FROM room_memberships j
                     WHERE j.room_id = r.room_id AND j.membership = 'join') AS joined_members
             FROM unnest($1::text[]) AS r (room_id)
         )
         -- The room's events once per room, not once per member: a big room's power levels
         -- (tens of KB where they list many users) times its thousand members was megabytes
         -- for every message.
         SELECT room.room_id,
                CASE WHEN m.member_index IS NULL OR m.member_index = 1 THEN room.create_json END AS create_json,
                CASE WHEN m.member_index IS NULL OR m.member_index = 1 THEN room.power_levels_json END
                  AS power_levels_json,
                room.joined_members,
                m.user_id, m.membership, m.member_event_nid, m.joined_position, m.rules_version, m.ignored_senders
         FROM room
         -- Lateral and kept apart (`OFFSET 0`: not pulled up into a join), so that each room's
         -- members are found through the room's index. As a join, the statement's generic plan
         -- (which cannot see how few rooms the array holds) scanned every membership of the
         -- server once per commit: 10 ms a send at 4,000 memberships.
         LEFT JOIN LATERAL (
             SELECT row_number() OVER () AS member_index, m.user_id, m.membership, m.event_nid AS member_event_nid,
                    COALESCE(m.joined_position, m.stream_position) AS joined_position,
                    (SELECT a.stream_position FROM account_data a
                     WHERE a.user_id = m.user_id AND a.room_id = '' AND a.data_type = 'm.push_rules') AS rules_version,
                    ARRAY(SELECT s FROM account_data a, unnest($3::text[]) s
                          WHERE a.user_id = m.user_id AND a.room_id = '' AND a.data_type = 'm.ignored_user_list'
                            AND a.content -> 'ignored_users' ? s) AS ignored_senders
             FROM room_memberships m
             WHERE m.room_id = room.room_id AND m.membership IN ('join', 'invite') AND right(m.user_id, length($2)) = $2
             OFFSET 0
         ) m ON TRUE",
    )
    .bind(room_ids)
    .bind(local_suffix)
    .bind(senders)
    .fetch_all(db)
    .await?;
    let mut contexts: Vec<PushContext> = room_ids.iter().map(|_| PushContext::default()).collect();
    let index: std::collections::HashMap<&str, usize> =
        room_ids.iter().enumerate().map(|(index, room_id)| (*room_id, index)).collect();
    for row in rows {
        let Some(context) = index.get(row.room_id.as_str()).and_then(|index| contexts.get_mut(*index)) else {
            continue;
        };
        if row.create_json.is_some() {
            context.create_json = row.create_json;
        }
        if row.power_levels_json.is_some() {
            context.power_levels_json = row.power_levels_json;
        }
        context.joined_members = row.joined_members;
        if let (Some(user_id), Some(membership), Some(member_event_nid), Some(joined_position)) =
            (row.user_id, row.membership, row.member_event_nid, row.joined_position)
        {
            context.recipients.push(Recipient {
                user_id,
                membership,
                member_event_nid,
                joined_position,
                rules_version: row.rules_version,
                ignored_senders: row.ignored_senders.unwrap_or_default(),
            });
        }
    }
    Ok(contexts)
}

/// The `displayname` of each of the given member events (`None` where it has none).
pub async fn display_names(db: impl PgExecutor<'_>, member_nids: &[i64]) -> sqlx::Result<Vec<(i64, Option<String>)>> {
    sqlx::query_as(
        "SELECT e.event_nid, e.json::jsonb -> 'content' ->> 'displayname'
         FROM events e WHERE e.event_nid = ANY($1)",
    )
    .bind(member_nids)
    .fetch_all(db)
    .await
}

/// One row of `event_push_actions`.
#[derive(Clone, Debug)]
pub struct PushAction {
    pub user_id: String,
    pub room_id: String,
    pub event_nid: i64,
    pub event_id: String,
    pub stream_position: i64,
    pub sender: String,
    pub thread_id: String,
    pub notify: bool,
    pub highlight: bool,
    pub actions: Value,
    pub ts: i64,
}

/// Writes the rows in one statement.
pub async fn insert(conn: &mut PgConnection, rows: &[PushAction]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&PushAction) -> &str| rows.iter().map(f).collect::<Vec<&str>>();
    let users = column(|r| &r.user_id);
    let rooms = column(|r| &r.room_id);
    let event_ids = column(|r| &r.event_id);
    let senders = column(|r| &r.sender);
    let threads = column(|r| &r.thread_id);
    let nids: Vec<i64> = rows.iter().map(|r| r.event_nid).collect();
    let positions: Vec<i64> = rows.iter().map(|r| r.stream_position).collect();
    let notify: Vec<bool> = rows.iter().map(|r| r.notify).collect();
    let highlight: Vec<bool> = rows.iter().map(|r| r.highlight).collect();
    let actions: Vec<&Value> = rows.iter().map(|r| &r.actions).collect();
    let ts: Vec<i64> = rows.iter().map(|r| r.ts).collect();
    sqlx::query(
        "INSERT INTO event_push_actions
             (user_id, room_id, event_nid, event_id, stream_position, sender, thread_id, notify, highlight, actions, ts)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::text[], $7::text[],
                              $8::boolean[], $9::boolean[], $10::jsonb[], $11::bigint[])",
    )
    .bind(&users)
    .bind(&rooms)
    .bind(&nids)
    .bind(&event_ids)
    .bind(&positions)
    .bind(&senders)
    .bind(&threads)
    .bind(&notify)
    .bind(&highlight)
    .bind(&actions)
    .bind(&ts)
    .execute(conn)
    .await?;
    Ok(())
}

/// A row as the unread counts of `/sync` need it.
#[derive(Clone, Debug, FromRow)]
pub struct UnreadRow {
    pub stream_position: i64,
    pub thread_id: String,
    pub sender: String,
    pub notify: bool,
    pub highlight: bool,
}

/// One of the user's push action rows, with its room (what the reads of several rooms at once
/// return: an initial sync's, a woken sync's window news).
#[derive(Clone, Debug, FromRow)]
pub(crate) struct RoomUnreadRow {
    pub room_id: String,
    #[sqlx(flatten)]
    pub row: UnreadRow,
}

/// The user's newest (at most `limit`) rows in the room with `after < position <= upto`.
pub async fn unread_between(
    db: impl PgExecutor<'_>,
    user_id: &str,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> sqlx::Result<Vec<UnreadRow>> {
    sqlx::query_as(
        "SELECT stream_position, thread_id, sender, notify, highlight FROM event_push_actions
         WHERE user_id = $1 AND room_id = $2 AND stream_position > $3 AND stream_position <= $4
         ORDER BY stream_position DESC LIMIT $5",
    )
    .bind(user_id)
    .bind(room_id)
    .bind(after)
    .bind(upto)
    .bind(limit)
    .fetch_all(db)
    .await
}

/// A row as `GET /notifications` shows it.
#[derive(Debug, FromRow)]
pub struct NotificationRow {
    pub room_id: String,
    pub event_nid: i64,
    pub event_id: String,
    pub stream_position: i64,
    pub thread_id: String,
    pub actions: Value,
    pub ts: i64,
}

/// The user's rows below `before` (all when `None`), newest first; with `only_highlight`, only
/// those that highlight.
pub async fn page(
    db: impl PgExecutor<'_>,
    user_id: &str,
    before: Option<i64>,
    only_highlight: bool,
    limit: i64,
) -> sqlx::Result<Vec<NotificationRow>> {
    sqlx::query_as(
        "SELECT room_id, event_nid, event_id, stream_position, thread_id, actions, ts FROM event_push_actions
         WHERE user_id = $1 AND stream_position < $2 AND (highlight OR NOT $3)
         ORDER BY stream_position DESC LIMIT $4",
    )
    .bind(user_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(only_highlight)
    .bind(limit)
    .fetch_all(db)
    .await
}
