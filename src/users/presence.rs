//! Presence (`PUT/GET /presence/{userId}/status` and `/sync?set_presence=`): a user's
//! online / unavailable / offline state, status message and last activity, visible to the
//! users who share a room with them.

use crate::db;
use crate::db::presence::{PresenceRow, StatusMsg};
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::Session;
use quick_cache::sync::Cache;
use ruma::presence::PresenceState;
use ruma::{OwnedUserId, UserId};
use serde_json::{Map, Value, json};

/// Activity this recent counts as `currently_active`.
const CURRENTLY_ACTIVE_MS: i64 = 5 * 60 * 1000;
/// Activity from syncs is recorded at most this often, so a busy client does not write per
/// request.
const ACTIVITY_GRANULARITY_MS: i64 = 60 * 1000;
const MAX_STATUS_MSG_BYTES: usize = 1024;

fn state_name(state: &PresenceState) -> Result<&'static str> {
    match state {
        PresenceState::Online => Ok("online"),
        PresenceState::Unavailable => Ok("unavailable"),
        PresenceState::Offline => Ok("offline"),
        other => Err(Error::invalid_param(format!("Unknown presence state {:?}", other.as_str()))),
    }
}

/// What others see of a user's presence.
pub(crate) struct PresenceView {
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<i64>,
    pub currently_active: Option<bool>,
}

impl PresenceView {
    fn of(row: Option<PresenceRow>, now: i64) -> PresenceView {
        match row {
            // Never set: offline, with nothing known about activity.
            None => PresenceView {
                presence: "offline".to_owned(),
                status_msg: None,
                last_active_ago: None,
                currently_active: None,
            },
            Some(row) => {
                let ago = (now - row.last_active_ts).max(0);
                PresenceView {
                    currently_active: Some(row.state == "online" && ago < CURRENTLY_ACTIVE_MS),
                    presence: row.state,
                    status_msg: row.status_msg,
                    last_active_ago: Some(ago),
                }
            }
        }
    }

    /// The `content` of an `m.presence` event.
    pub(crate) fn content(&self) -> Value {
        let mut content = Map::new();
        content.insert("presence".to_owned(), json!(self.presence));
        if let Some(ago) = self.last_active_ago {
            content.insert("last_active_ago".to_owned(), json!(ago));
        }
        if let Some(active) = self.currently_active {
            content.insert("currently_active".to_owned(), json!(active));
        }
        if let Some(message) = &self.status_msg {
            content.insert("status_msg".to_owned(), json!(message));
        }
        Value::Object(content)
    }
}

/// The `content` of an `m.presence` event for a stored row, as of `now`.
pub(crate) fn content_of(row: PresenceRow, now: i64) -> Value {
    PresenceView::of(Some(row), now).content()
}

/// The presence changes `user` may see in `(since, upto]` (everyone's current presence up to
/// `upto` without `since`), without the users they ignore: for live readers other than `/sync`
/// (the XMPP edge).
pub(crate) async fn visible_changes(
    pool: &Store,
    user: &UserId,
    since: Option<i64>,
    upto: i64,
) -> Result<Vec<PresenceRow>> {
    let mut rows = db::presence::visible_changes(pool, user.as_str(), since, upto).await?;
    if !rows.is_empty() {
        let ignored = crate::users::ignore::ignored_users(pool, user).await?;
        rows.retain(|row| !ignored.contains(&row.user_id));
    }
    Ok(rows)
}

pub(crate) async fn set(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    user_id: &UserId,
    state: &PresenceState,
    status_msg: Option<&str>,
) -> Result<()> {
    if session.user_id != user_id {
        return Err(Error::forbidden("You cannot set the presence of another user"));
    }
    let state = state_name(state)?;
    if status_msg.is_some_and(|message| message.len() > MAX_STATUS_MSG_BYTES) {
        return Err(Error::invalid_param(format!("status_msg is longer than {MAX_STATUS_MSG_BYTES} bytes")));
    }
    write(pool, streams, user_id, state, StatusMsg::Set(status_msg)).await
}

async fn write(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    state: &str,
    status_msg: StatusMsg<'_>,
) -> Result<()> {
    let now = now_ms();
    store(pool, streams, user_id, state, status_msg, now, Origin::Local).await?;
    pool.cache::<RecentPresence>().0.insert(user_id.to_owned(), (state.to_owned(), now));
    Ok(())
}

/// Whose presence a change is: a local user's goes on to the servers sharing a room with
/// them; a remote user's came from their server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Origin {
    Local,
    Remote,
}

async fn store(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    state: &str,
    status_msg: StatusMsg<'_>,
    last_active_ts: i64,
    origin: Origin,
) -> Result<()> {
    // Presence is delivered by /sync, so a change takes a stream position like an event.
    let mut reservation = streams.reserve();
    let mut tx = pool.begin().await?;
    let position = reservation.next(&mut tx).await?;
    db::presence::put(&mut *tx, user_id.as_str(), state, status_msg, last_active_ts, position).await?;
    if origin == Origin::Local {
        // The status message as stored (a sync's change keeps the one set before).
        let stored = db::presence::get(&mut *tx, user_id.as_str()).await?;
        let change = crate::outbox::federation::PresenceChange {
            user_id,
            state: PresenceState::from(state),
            status_msg: stored.and_then(|row| row.status_msg),
            currently_active: state == "online",
        };
        crate::outbox::federation::presence(&mut tx, change, position).await?;
    }
    // Presence is seen by the user and whoever shares a room with them.
    let mut audience = db::rooms::joined_rooms(&mut *tx, user_id.as_str()).await?;
    audience.push(user_id.to_string());
    tx.commit().await?;
    reservation.committed_for(audience).await?;
    Ok(())
}

/// A remote user's presence, as their server pushed it (`m.presence`): kept and synced like a
/// local user's, for those who share a room with them.
pub(crate) async fn receive_remote(
    pool: &Store,
    streams: &Streams,
    user_id: &UserId,
    state: &PresenceState,
    status_msg: Option<&str>,
    last_active_ago: u64,
) -> Result<()> {
    let state = state_name(state)?;
    let status_msg = status_msg.map(|message| crate::users::presence::truncate(message, MAX_STATUS_MSG_BYTES));
    let last_active_ts = now_ms().saturating_sub(i64::try_from(last_active_ago).unwrap_or(i64::MAX));
    store(pool, streams, user_id, state, StatusMsg::Set(status_msg), last_active_ts, Origin::Remote).await
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

pub(crate) async fn get(pool: &Store, session: &Session, user_id: &UserId) -> Result<PresenceView> {
    // The spec's 403: presence is shown only to users who share a room (Synapse does the
    // same, and answers it for unknown users too, so existence does not leak).
    if session.user_id != user_id
        && !db::presence::share_a_room(pool, session.user_id.as_str(), user_id.as_str()).await?
    {
        return Err(Error::forbidden("You are not allowed to see their presence"));
    }
    Ok(PresenceView::of(db::presence::get(pool, user_id.as_str()).await?, now_ms()))
}

/// `/sync?set_presence=`: `offline` leaves presence alone; `online` (the default) and
/// `unavailable` set it. Writes only what changed, so a client that syncs in a loop does not
/// take a stream position (and wake everyone who can see it) per request.
pub(crate) async fn on_sync(pool: &Store, streams: &Streams, user_id: &UserId, state: &PresenceState) -> Result<()> {
    let wanted = match state {
        PresenceState::Offline => return Ok(()),
        other => state_name(other)?,
    };
    let now = now_ms();
    let recent = pool.cache::<RecentPresence>();
    let key = user_id.to_owned();
    if recent.0.get(&key).is_some_and(|(state, active_ts)| state == wanted && now - active_ts < ACTIVITY_GRANULARITY_MS)
    {
        return Ok(());
    }
    let current = db::presence::get(pool, user_id.as_str()).await?;
    match current {
        Some(row) if row.state == wanted => {
            let idle = now - row.last_active_ts;
            if wanted == "online" && idle >= CURRENTLY_ACTIVE_MS {
                // `currently_active` turns true again: others should see that.
                write(pool, streams, user_id, wanted, StatusMsg::Keep).await
            } else if idle >= ACTIVITY_GRANULARITY_MS {
                db::presence::touch(pool, user_id.as_str(), now).await?;
                recent.0.insert(key, (wanted.to_owned(), now));
                Ok(())
            } else {
                recent.0.insert(key, (wanted.to_owned(), row.last_active_ts));
                Ok(())
            }
        }
        // A new state keeps the status message the user set (as on Synapse, syncs never change
        // it), as stored when the write lands: a PUT since the read above is not undone.
        _ => write(pool, streams, user_id, wanted, StatusMsg::Keep).await,
    }
}

/// Per user, the state this process last wrote or found and the activity time recorded with
/// it, kept in the store. A sync whose presence matches it, within the granularity, needs neither
/// read nor write — every long-poll look used to read the row. Another process's change is
/// seen once the granularity has passed (at most a minute), as the next touch reads the row.
struct RecentPresence(Cache<OwnedUserId, (String, i64)>);

impl Default for RecentPresence {
    fn default() -> RecentPresence {
        RecentPresence(Cache::new(100_000))
    }
}
