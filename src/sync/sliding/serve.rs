//! Answering one sliding sync request: resume the connection at its `pos`, build what is new
//! for it up to a readable stream position, and when nothing is, wait (never poll) for a
//! wake-up from the same notifier as `/sync`, until the client's `timeout`.

use crate::db;
use crate::db::sync::MembershipRow;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::sync::sliding::connection::{self, Connection, Sent, SentRoom};
use crate::sync::sliding::extensions::{self, ExtensionContext, ShownRooms};
use crate::sync::sliding::filters::FilterFacts;
use crate::sync::sliding::lists::{self, MemberRoom};
use crate::sync::sliding::room::{self, RoomConfig, RoomContext};
use crate::sync::sliding::unparsed::Unparsed;
use crate::sync::types::SyncWindow;
use crate::sync::wait::ChangeWatch;
use crate::users::Session;
use futures_util::{StreamExt, TryStreamExt};
use ruma::api::OutgoingResponseExt;
use ruma::api::client::sync::sync_events::v5::{self, response};
use ruma::api::error::ErrorKind;
use ruma::events::room::member::MembershipState;
use ruma::{OwnedRoomId, UInt};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;
use tokio::time::Instant;

/// Longest a request may wait, whatever the client asks (as `/sync`).
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Rooms built at once (each takes a database connection at a time).
const ROOMS_AT_ONCE: usize = 8;

/// Answers one sliding sync request of the session's device.
/// `more` holds what ruma's request type drops (see `unparsed`).
pub(crate) async fn serve(
    pool: &Store,
    streams: &Streams,
    session: &Session,
    request: &v5::Request,
    more: &Unparsed,
) -> Result<Value> {
    lists::validate(&request.lists)?;
    let conn_id = request.conn_id.as_deref().unwrap_or_default();
    let connection = connection::resume(pool, session, conn_id, request.pos.as_deref()).await?;
    crate::users::presence::on_sync(pool, streams, &session.user_id, &request.set_presence).await?;
    let user = &session.user_id;
    let deadline = Instant::now() + request.timeout.unwrap_or_default().min(MAX_TIMEOUT);
    let mut change = ChangeWatch::new(streams);
    loop {
        let sample = change.sample(pool, user).await?;
        let upto = sample.upto;
        if connection.since().is_some_and(|since| since > upto) {
            // Only another server's database could have issued it.
            return Err(Error::new(ErrorKind::UnknownPos, "This pos was not issued by this server"));
        }
        let permit = streams.sync_builds.acquire().await.map_err(|_| Error::internal("the server is stopping"))?;
        let look = Box::pin(look(pool, &connection, request, more, &sample.memberships, upto)).await?;
        drop(permit);
        if look.has_news || connection.since().is_none() || Instant::now() >= deadline {
            return finish(pool, &connection, request, look, upto).await;
        }
        if !change.wait_for_change(sample, deadline).await {
            return finish(pool, &connection, request, look, upto).await;
        }
    }
}

/// One look at the stream up to `upto`: the answer, what the connection will have been sent
/// with it, and whether it holds anything new.
struct Look {
    response: v5::Response,
    /// Rooms not joined, whose entries say the membership (`response::Room` has no field).
    memberships: BTreeMap<String, MembershipState>,
    /// Rooms whose timeline is sent longer than before (`unstable_expanded_timeline`).
    expanded: BTreeSet<String>,
    sent: Sent,
    has_news: bool,
}

async fn look(
    pool: &Store,
    connection: &Connection<'_>,
    request: &v5::Request,
    more: &Unparsed,
    memberships: &[MembershipRow],
    upto: i64,
) -> Result<Look> {
    let session = connection.session;
    let user = &session.user_id;
    let since = connection.since();
    let rooms = lists::member_rooms(pool, user, memberships, since, upto).await?;
    let facts = FilterFacts::read(pool, user, &rooms, &request.lists, more).await?;

    let mut response = v5::Response::new(String::new());
    let mut sent = connection.sent.clone();
    let mut has_news = false;
    let mut configs: BTreeMap<String, RoomConfig> = BTreeMap::new();
    let mut by_list: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, list) in &request.lists {
        let view = lists::view(list, more.filters(name), &rooms, &facts);
        has_news |= connection.sent.list_counts.get(name) != Some(&view.count);
        sent.list_counts.insert(name.clone(), view.count);
        let mut answer = response::List::default();
        answer.count = UInt::new(view.count).unwrap_or_default();
        response.lists.insert(name.clone(), answer);
        for room in view.in_range {
            configs
                .entry(room.room_id.clone())
                .or_default()
                .merge(list.room_details.timeline_limit, &list.room_details.required_state);
            by_list.entry(name.clone()).or_default().push(room.room_id.clone());
        }
    }
    sent.list_counts.retain(|name, _| request.lists.contains_key(name));
    // Subscriptions: rooms the user has a membership in (as lists may show them); others are
    // not theirs to see and are left out, as Synapse does. One also unsubscribed is not.
    let by_id: HashMap<&str, &MemberRoom> = rooms.iter().map(|room| (room.room_id.as_str(), room)).collect();
    let mut subscribed = Vec::new();
    for (room_id, subscription) in &request.room_subscriptions {
        if by_id.contains_key(room_id.as_str()) && !more.unsubscribes(room_id.as_str()) {
            configs
                .entry(room_id.to_string())
                .or_default()
                .merge(subscription.timeline_limit, &subscription.required_state);
            subscribed.push(room_id.to_string());
        }
    }

    // An unsubscribed room no list shows is forgotten by the connection: subscribing again
    // sends it whole, as a room new to the connection.
    sent.rooms.retain(|room_id, _| !more.unsubscribes(room_id) || configs.contains_key(room_id));

    // Rooms the connection has sent that saw no event (nor a receipt of the user's, which
    // changes their unread counts) since are skipped without building.
    let previously: Vec<String> = configs.keys().filter(|id| sent.rooms.contains_key(*id)).cloned().collect();
    let oldest = previously.iter().filter_map(|id| sent.rooms.get(id)).map(|room| room.upto).min().unwrap_or(upto);
    let latest: HashMap<String, i64> =
        db::sliding_sync::latest_positions(pool, &previously, user.as_str(), oldest, upto).await?.into_iter().collect();
    let ignored = crate::users::ignore::ignored_users(pool, user).await?;
    let joined: Vec<String> = configs.keys().cloned().collect();
    let read_positions = db::unread::read_positions_in(pool, &joined, user.as_str()).await?;
    let context = RoomContext {
        pool,
        user,
        device: &session.device_id,
        since,
        upto,
        ignored: &ignored,
        read_positions: &read_positions,
        direct: &facts.direct,
    };
    let new_to_connection: BTreeSet<String> =
        configs.keys().filter(|id| !connection.sent.rooms.contains_key(*id)).cloned().collect();
    let mut to_build = Vec::new();
    let mut expanded = BTreeSet::new();
    for (room_id, config) in &configs {
        let Some(room) = by_id.get(room_id.as_str()) else { continue };
        let previous = connection.sent.rooms.get(room_id).filter(|previous| previous.membership == room.membership);
        let expands = previous.is_some_and(|previous| timeline_expands(previous, config));
        let quiet = !expands
            && previous.is_some_and(|previous| {
                previous.required_state == config.required_state
                    && latest.get(room_id).is_none_or(|latest| *latest <= previous.upto)
            });
        // The client keeps the longer timeline it had, unless this one replaces it.
        let timeline_limit = match previous {
            Some(previous) if !expands => previous.timeline_limit.unwrap_or(config.timeline_limit),
            _ => config.timeline_limit,
        };
        let now_sent = SentRoom {
            upto: room::room_upto(&context, room),
            membership: room.membership.clone(),
            required_state: config.required_state.clone(),
            timeline_limit: Some(timeline_limit),
        };
        sent.rooms.insert(room_id.clone(), now_sent);
        if expands {
            expanded.insert(room_id.clone());
        }
        if !quiet {
            to_build.push(((*room).clone(), config.clone(), connection.sent.rooms.get(room_id).cloned(), expands));
        }
    }
    let built: Vec<Option<(String, response::Room)>> = futures_util::stream::iter(to_build)
        .map(|job| build_room(&context, job))
        .buffered(ROOMS_AT_ONCE)
        .try_collect()
        .await?;
    let mut room_memberships = BTreeMap::new();
    for (room_id, entry) in built.into_iter().flatten() {
        let Ok(id) = OwnedRoomId::try_from(room_id.as_str()) else { continue };
        // A gap: the client now has only this answer's events of the room's latest.
        if entry.limited
            && let (Some(sent_room), Some(config)) = (sent.rooms.get_mut(&room_id), configs.get(&room_id))
        {
            sent_room.timeline_limit = Some(config.timeline_limit);
        }
        if let Some(room) = by_id.get(room_id.as_str()).filter(|room| !room.is_joined()) {
            room_memberships.insert(room_id.clone(), room.membership.clone());
        }
        response.rooms.insert(id, entry);
    }
    has_news |= !response.rooms.is_empty();

    let extension_context =
        ExtensionContext { pool, user, device: &session.device_id, memberships, window: SyncWindow { since, upto } };
    let shown = ShownRooms { by_list: &by_list, subscribed: &subscribed, new_to_connection: &new_to_connection };
    let (extensions, extension_news) = extensions::build(&extension_context, &request.extensions, &shown).await?;
    response.extensions = extensions;
    has_news |= extension_news;
    expanded.retain(|room_id| response.rooms.keys().any(|id| id.as_str() == room_id));
    Ok(Look { response, memberships: room_memberships, expanded, sent, has_news })
}

/// Whether a room the connection has sent is now asked for with a longer timeline than the
/// client has without a gap: then its latest events are sent again, up to the new limit, so
/// an app opening a room (Element X subscribes with 20 where its list asks for 1) shows a
/// screenful at once. Synapse does the same and marks it `unstable_expanded_timeline`.
fn timeline_expands(previous: &SentRoom, config: &RoomConfig) -> bool {
    previous.timeline_limit.is_some_and(|limit| config.timeline_limit > limit)
}

/// A room to build, what asks for it, what the connection had of it, and whether its timeline
/// expands (owned: a stream of borrowed jobs trips the compiler's higher-ranked lifetime
/// checks on `Send`).
type RoomJob = (MemberRoom, RoomConfig, Option<SentRoom>, bool);

async fn build_room(context: &RoomContext<'_>, job: RoomJob) -> Result<Option<(String, response::Room)>> {
    let (room, config, previous, expands) = job;
    let entry = room::build(context, &room, &config, previous.as_ref(), expands).await?;
    Ok(entry.map(|entry| (room.room_id, entry)))
}

/// Records the answer as the connection's next position and renders it.
async fn finish(
    pool: &Store,
    connection: &Connection<'_>,
    request: &v5::Request,
    look: Look,
    upto: i64,
) -> Result<Value> {
    let Look { mut response, memberships, expanded, sent, .. } = look;
    response.pos = connection::advance(pool, connection, upto, &sent).await?;
    response.txn_id = request.txn_id.clone();
    // Rendered as ruma renders it for the wire, then given the fields ruma has no place for.
    let rendered =
        response.try_into_http_response::<Vec<u8>>().map_err(|e| Error::internal(format!("response: {e}")))?;
    let mut body: Value =
        serde_json::from_slice(rendered.body()).map_err(|e| Error::internal(format!("response: {e}")))?;
    // MSC4186: a room the user is not joined to says its membership (left, banned, invited).
    for (room_id, membership) in memberships {
        if let Some(room) = body.pointer_mut(&format!("/rooms/{}", pointer_escape(&room_id))) {
            room["membership"] = json!(membership);
        }
    }
    for room_id in expanded {
        if let Some(room) = body.pointer_mut(&format!("/rooms/{}", pointer_escape(&room_id))) {
            room["unstable_expanded_timeline"] = json!(true);
        }
    }
    Ok(body)
}

/// A room id as one JSON pointer segment.
fn pointer_escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}
