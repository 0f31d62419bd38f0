//! Relationships between events (`m.relates_to` with a `rel_type`): recording them when an
//! event is stored, the spec's checks on relations clients send, `/relations`, `/threads`,
//! and serving events to clients — redacted where redacted, with bundled aggregations
//! (`unsigned.m.relations`) for `m.replace`, `m.thread` and `m.reference`.

use crate::db;
use crate::db::events::StoredEvent;
use crate::error::{Error, Result};
use crate::rooms::pagination;
use crate::rooms::pdu::Pdu;
use crate::rooms::served::{self, Served};
use crate::rooms::visibility::Viewer;
use crate::store::Store;
use ruma::api::error::ErrorKind;
use ruma::events::TimelineEventType;
use ruma::{EventId, OwnedEventId, RoomId, UserId};
use serde_json::{Map, Value, json};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// How deep `recurse=true` follows children of children (the spec recommends at least 3).
pub(crate) const RECURSION_DEPTH: i32 = 3;
/// `/relations` and `/threads` page sizes: the default, and the most one page may hold.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;
/// Candidates read per parent when picking a bundled edit or latest thread event: the newest
/// visible one wins, and a few spares cover children the user may not see.
const CANDIDATES: i64 = 10;
/// At most this many references are bundled with one event.
const MAX_BUNDLED_REFERENCES: i64 = 1000;

/// An event's relationship to its parent, as its content states it.
#[derive(Clone, Debug)]
pub(crate) struct Relation {
    pub rel_type: String,
    pub parent: OwnedEventId,
    /// The key of an `m.annotation`.
    pub key: Option<String>,
}

/// The event's `m.relates_to`, if it has a well-formed one with a `rel_type` (replies, which
/// have none, are not relations here). Malformed relationships are ignored, as the spec says.
pub(crate) fn relation_of(pdu: &Pdu) -> Option<Relation> {
    let content = pdu.content_value();
    let relates_to = content.get("m.relates_to")?.as_object()?;
    // A relation type is an identifier (at most 255 bytes, as event types): a longer one is
    // malformed, and would not fit the index it is kept in.
    let rel_type = relates_to.get("rel_type")?.as_str().filter(|rel_type| rel_type.len() <= 255)?;
    let parent = EventId::parse(relates_to.get("event_id")?.as_str()?).ok()?;
    let key = relates_to.get("key").and_then(Value::as_str).map(str::to_owned);
    if rel_type == "m.annotation" && key.is_none() {
        return None;
    }
    Some(Relation { rel_type: rel_type.to_owned(), parent, key })
}

/// Records what an event being stored points at: the event it redacts, and its parent.
/// Called by `append::persist`, inside the event's transaction.
pub(crate) async fn record(conn: &mut PgConnection, room_id: &RoomId, pdu: &Pdu, event_nid: i64) -> Result<()> {
    if pdu.kind == TimelineEventType::RoomRedaction
        && let Some(target) = &pdu.redacts
        && let Some(&target_nid) = db::events::intern_event_ids(conn, &[target.to_string()]).await?.first()
    {
        db::relations::insert_redaction(conn, event_nid, room_id.as_str(), target_nid).await?;
    }
    if let Some(relation) = relation_of(pdu)
        && let Some(&parent_nid) = db::events::intern_event_ids(conn, &[relation.parent.to_string()]).await?.first()
    {
        let event_type = pdu.kind.to_string();
        db::relations::insert_relation(
            conn,
            &db::relations::NewRelation {
                event_nid,
                room_id: room_id.as_str(),
                parent_nid,
                rel_type: &relation.rel_type,
                event_type: &event_type,
                sender: pdu.sender.as_str(),
                aggregation_key: relation.key.as_deref(),
            },
        )
        .await?;
    }
    Ok(())
}

/// The spec's checks on a relation a local client sends (the auth rules know nothing of
/// relations): the parent, when known, must be in the same room; a thread cannot start from
/// an event that is itself a child (400 `M_UNKNOWN`, as the spec says); nobody annotates the
/// same event twice with the same key (400 `M_DUPLICATE_ANNOTATION`).
pub(crate) async fn check_new(conn: &mut PgConnection, room_id: &RoomId, pdu: &Pdu) -> Result<()> {
    let Some(relation) = relation_of(pdu) else { return Ok(()) };
    let parent = db::events::by_id(&mut *conn, relation.parent.as_str()).await?;
    if let Some(parent) = &parent
        && parent.room_id != room_id.as_str()
    {
        return Err(Error::unknown("The related event is in another room"));
    }
    match relation.rel_type.as_str() {
        "m.thread" => {
            if let Some(parent) = &parent
                && db::relations::relation_of(&mut *conn, parent.event_nid).await?.is_some()
            {
                return Err(Error::unknown("Cannot start a thread from an event that has a relation itself"));
            }
        }
        "m.annotation" => {
            let key = relation.key.as_deref().unwrap_or_default();
            let event_type = pdu.kind.to_string();
            if db::relations::annotation_exists(
                &mut *conn,
                relation.parent.as_str(),
                pdu.sender.as_str(),
                &event_type,
                key,
            )
            .await?
            {
                return Err(Error::new(
                    ErrorKind::DuplicateAnnotation,
                    "You already sent this annotation for this event",
                ));
            }
        }
        _ => {}
    }
    Ok(())
}

/// Serving events with their bundled aggregations (spec: "Aggregations of child events").
impl Viewer<'_> {
    /// Client-format events: redacted where a redaction applies, with bundled aggregations.
    pub(crate) async fn serve(&self, events: Vec<(StoredEvent, Pdu)>) -> Result<Vec<Value>> {
        let (served, mut bundles) = self.served_with_bundles(events).await?;
        Ok(served
            .iter()
            .map(|event| event.client_event_bundled(self.room_id, bundles.remove(&event.event_nid)))
            .collect())
    }

    /// The events as served (redacted where a redaction applies) and the bundled aggregations
    /// of those with children, by event number: what [`Viewer::serve`] writes out, for a
    /// caller that writes them its own way (a sync writes most events straight to text).
    pub(crate) async fn served_with_bundles(
        &self,
        events: Vec<(StoredEvent, Pdu)>,
    ) -> Result<(Vec<Served>, HashMap<i64, Map<String, Value>>)> {
        if events.is_empty() {
            return Ok((Vec::new(), HashMap::new()));
        }
        // Most events have neither relations nor redactions: only those that do go through the
        // redaction and aggregation queries (four more). A timeline page says which they are;
        // for other events one query finds out.
        let known: Option<HashSet<i64>> = events
            .iter()
            .map(|(stored, _)| stored.has_related.map(|related| related.then_some(stored.event_nid)))
            .collect::<Option<Vec<Option<i64>>>>()
            .map(|involved| involved.into_iter().flatten().collect());
        let events: Vec<(i64, Pdu)> = events.into_iter().map(|(stored, pdu)| (stored.event_nid, pdu)).collect();
        let nids: Vec<i64> = events.iter().map(|(nid, _)| *nid).collect();
        let involved: HashSet<i64> = match known {
            Some(involved) => involved,
            None => db::relations::with_children_or_redactions(self.pool, &nids).await?,
        };
        let involved_nids: Vec<i64> = nids.into_iter().filter(|nid| involved.contains(nid)).collect();
        let served = served::apply_among(self.pool, &self.rules().redaction, events, &involved_nids).await?;
        let related: Vec<Served> = served.iter().filter(|event| involved.contains(&event.event_nid)).cloned().collect();
        let bundles = self.aggregations(&related, true).await?;
        Ok((served, bundles))
    }

    /// Bundled aggregations, keyed by event number. State events get none (spec). With
    /// `threads`, thread summaries too — whose latest event carries its own bundle (edits and
    /// references; a thread event cannot be a thread root, so there is no deeper level).
    async fn aggregations(&self, events: &[Served], threads: bool) -> Result<HashMap<i64, Map<String, Value>>> {
        let mut bundles: HashMap<i64, Map<String, Value>> = HashMap::new();
        let parents: Vec<&Served> = events.iter().filter(|event| !event.pdu.is_state()).collect();
        if parents.is_empty() {
            return Ok(bundles);
        }
        let room = self.room_id.as_str();

        // m.replace: the newest valid edit. Not for a redacted original (spec), nor for an
        // edit (edits of edits are invalid).
        let editable: Vec<i64> = parents
            .iter()
            .filter(|event| event.redaction.is_none())
            .filter(|event| relation_of(&event.pdu).is_none_or(|relation| relation.rel_type != "m.replace"))
            .map(|event| event.event_nid)
            .collect();
        let edits = db::relations::latest_children(self.pool, room, &editable, "m.replace", CANDIDATES).await?;
        for (parent, mut candidates) in self.visible_by_parent(edits).await? {
            candidates.retain(|(_, edit)| is_valid_edit(edit));
            let newest = candidates
                .into_iter()
                .max_by(|(_, a), (_, b)| (a.origin_server_ts, &a.event_id).cmp(&(b.origin_server_ts, &b.event_id)));
            if let Some((_, edit)) = newest {
                bundles.entry(parent).or_default().insert("m.replace".into(), edit.to_client_event(self.room_id));
            }
        }

        // m.reference: the ids of the referring events, oldest first.
        let nids: Vec<i64> = parents.iter().map(|event| event.event_nid).collect();
        let references =
            db::relations::latest_children(self.pool, room, &nids, "m.reference", MAX_BUNDLED_REFERENCES).await?;
        for (parent, mut children) in self.visible_by_parent(references).await? {
            children.sort_by_key(|(stored, _)| stored.stream_position);
            let chunk: Vec<Value> = children.iter().map(|(_, pdu)| json!({ "event_id": pdu.event_id })).collect();
            if !chunk.is_empty() {
                bundles.entry(parent).or_default().insert("m.reference".into(), json!({ "chunk": chunk }));
            }
        }

        if threads {
            self.thread_aggregations(&parents, &mut bundles).await?;
        }
        Ok(bundles)
    }

    /// m.thread: the latest event the user may see, the number of replies (all replies the
    /// server has that are not redacted — the spec calls it approximate), and whether the
    /// user took part (sent the root or a reply).
    async fn thread_aggregations(
        &self,
        parents: &[&Served],
        bundles: &mut HashMap<i64, Map<String, Value>>,
    ) -> Result<()> {
        let room = self.room_id.as_str();
        let nids: Vec<i64> = parents.iter().map(|event| event.event_nid).collect();
        let summaries = db::relations::thread_summaries(self.pool, room, &nids, self.user.as_str()).await?;
        if summaries.is_empty() {
            return Ok(());
        }
        let roots: Vec<i64> = summaries.iter().map(|summary| summary.parent_nid).collect();
        let replies = db::relations::latest_children(self.pool, room, &roots, "m.thread", CANDIDATES).await?;
        let mut latest: HashMap<i64, (StoredEvent, Pdu)> = HashMap::new();
        for (parent, children) in self.visible_by_parent(replies).await? {
            if let Some(newest) = children.into_iter().max_by_key(|(stored, _)| stored.stream_position) {
                latest.insert(parent, newest);
            }
        }
        // The latest events are served in full, with their own (non-thread) aggregations.
        let latest_served: Vec<Served> = latest
            .values()
            .map(|(stored, pdu)| Served { event_nid: stored.event_nid, pdu: pdu.clone(), redaction: None })
            .collect();
        let mut latest_bundles = Box::pin(self.aggregations(&latest_served, false)).await?;
        let served_by_nid: HashMap<i64, &Served> = latest_served.iter().map(|event| (event.event_nid, event)).collect();
        for summary in summaries {
            let Some((stored, _)) = latest.get(&summary.parent_nid) else { continue };
            let Some(latest_event) = served_by_nid.get(&stored.event_nid) else { continue };
            let root_sender = parents
                .iter()
                .find(|event| event.event_nid == summary.parent_nid)
                .map(|event| event.pdu.sender.as_str());
            let participated = summary.user_replied || root_sender == Some(self.user.as_str());
            let latest_event =
                latest_event.client_event_bundled(self.room_id, latest_bundles.remove(&stored.event_nid));
            bundles.entry(summary.parent_nid).or_default().insert(
                "m.thread".into(),
                json!({ "latest_event": latest_event, "count": summary.count, "current_user_participated": participated }),
            );
        }
        Ok(())
    }

    /// Children (with their parent) filtered to those the user may see, grouped by parent.
    async fn visible_by_parent(
        &self,
        children: Vec<db::relations::Related>,
    ) -> Result<HashMap<i64, Vec<(StoredEvent, Pdu)>>> {
        let parent_of: HashMap<i64, i64> = children.iter().map(|row| (row.event.event_nid, row.target_nid)).collect();
        let visible = self.visible(children.into_iter().map(|row| row.event).collect()).await?;
        let mut grouped: HashMap<i64, Vec<(StoredEvent, Pdu)>> = HashMap::new();
        for (stored, pdu) in visible {
            if let Some(parent) = parent_of.get(&stored.event_nid) {
                grouped.entry(*parent).or_default().push((stored, pdu));
            }
        }
        Ok(grouped)
    }
}

/// An edit the server can vouch for: it has `m.new_content` (which the server cannot see
/// inside an encrypted edit, so those pass). Same sender, same type and no state key are
/// already guaranteed by the query.
fn is_valid_edit(edit: &Pdu) -> bool {
    edit.kind == TimelineEventType::RoomEncrypted || edit.content_value()["m.new_content"].is_object()
}

fn page_limit(limit: Option<usize>) -> usize {
    limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`.
pub(crate) struct RelationsQuery<'a> {
    pub room_id: &'a RoomId,
    pub event_id: &'a EventId,
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub limit: Option<usize>,
    pub backwards: bool,
    pub recurse: bool,
}

pub(crate) struct RelationsPage {
    pub chunk: Vec<Value>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub recursion_depth: Option<u32>,
}

/// The children of an event the user may see, newest first by default. Tokens are stream
/// positions, as `/messages` uses, so tokens from `/messages` and `/sync` work here too.
pub(crate) async fn relations(pool: &Store, user: &UserId, query: RelationsQuery<'_>) -> Result<RelationsPage> {
    let viewer = Viewer::with_access(pool, user, query.room_id).await?;
    let not_found = || Error::not_found("Event not found");
    let parent = db::events::by_id(pool, query.event_id.as_str())
        .await?
        .filter(|parent| parent.room_id == query.room_id.as_str())
        .ok_or_else(not_found)?;
    let parent_nid = parent.event_nid;
    if viewer.visible(vec![parent]).await?.is_empty() {
        return Err(not_found());
    }
    let from = match query.from {
        Some(token) => pagination::parse_token(token)?,
        None if query.backwards => db::events::max_stream_position(pool).await?,
        None => 0,
    };
    let to = query.to.map(pagination::parse_token).transpose()?;
    let limit = page_limit(query.limit);
    let children = db::relations::children(
        pool,
        &db::relations::ChildrenQuery {
            room_id: query.room_id.as_str(),
            parent_nid,
            rel_type: query.rel_type,
            event_type: query.event_type,
            max_depth: if query.recurse { RECURSION_DEPTH } else { 1 },
            from,
            to,
            backwards: query.backwards,
            limit: limit as i64,
        },
    )
    .await?;
    let next_batch = match children.last().and_then(|event| event.stream_position) {
        Some(position) if children.len() == limit => {
            Some(pagination::page_token(if query.backwards { position - 1 } else { position }))
        }
        _ => None,
    };
    let visible = viewer.visible(children).await?;
    Ok(RelationsPage {
        chunk: viewer.serve(visible).await?,
        next_batch,
        prev_batch: query.from.map(str::to_owned),
        recursion_depth: query.recurse.then_some(RECURSION_DEPTH as u32),
    })
}

/// `GET /rooms/{roomId}/threads`: thread roots the user may see, newest activity first. The
/// token `s{N}` continues with threads whose latest reply is at or before position N.
pub(crate) async fn threads(
    pool: &Store,
    user: &UserId,
    room_id: &RoomId,
    participated_only: bool,
    from: Option<&str>,
    limit: Option<usize>,
) -> Result<(Vec<Value>, Option<String>)> {
    let viewer = Viewer::with_access(pool, user, room_id).await?;
    let before = from.map(pagination::parse_token).transpose()?;
    let limit = page_limit(limit);
    let participant = participated_only.then_some(user.as_str());
    let roots = db::relations::thread_roots(pool, room_id.as_str(), before, participant, limit as i64).await?;
    let next_batch = match roots.last() {
        Some(last) if roots.len() == limit => Some(pagination::page_token(last.latest_position - 1)),
        _ => None,
    };
    let nids: Vec<i64> = roots.iter().map(|root| root.root_nid).collect();
    let mut events = db::events::by_nids(pool, &nids).await?;
    // Keep the order of latest activity.
    events.sort_by_key(|event| nids.iter().position(|nid| *nid == event.event_nid));
    let visible = viewer.visible(events).await?;
    Ok((viewer.serve(visible).await?, next_batch))
}
