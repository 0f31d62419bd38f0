//! State resolution (v2, v2.1 for room version 12, and v1 through `resolve_v1`) where a room's DAG has forked: the
//! state before an event whose `prev_events` disagree is the resolution of their states.
//! ruma's algorithm is synchronous, so everything it may look at is loaded first.

use crate::db;
use crate::error::{Error, Result};
use crate::rooms::pdu::Pdu;
use crate::rooms::resolve_v1::resolve_v1;
use crate::rooms::served;
use ruma::events::StateEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::utils::event_id_set::EventIdSet;
use ruma::state_res::{StateMap, resolve};
use ruma::{EventId, OwnedEventId, RoomId};
use sqlx::PgConnection;
use std::collections::{HashMap, HashSet};

/// Resolves the states of the given snapshots into a new full snapshot and returns its id.
pub(crate) async fn resolve_snapshots(
    conn: &mut PgConnection,
    room_id: &RoomId,
    rules: &RoomVersionRules,
    snapshots: &[i64],
) -> Result<i64> {
    // `None`: room version 1, resolved by `resolve_v1` (ruma implements only v2).
    let v2_rules = rules.state_res.v2_rules();

    let mut state_maps: Vec<StateMap<OwnedEventId>> = Vec::new();
    let mut state_event_ids: HashSet<String> = HashSet::new();
    for snapshot in snapshots {
        let mut map = StateMap::new();
        for entry in db::state::snapshot_state(&mut *conn, *snapshot).await? {
            let event_id = EventId::parse(&entry.event_id).map_err(|e| Error::internal(e.to_string()))?;
            map.insert((StateEventType::from(entry.event_type.as_str()), entry.state_key), event_id);
            state_event_ids.insert(entry.event_id);
        }
        state_maps.push(map);
    }

    // Every event resolution may consult: the state events and their whole auth chains.
    let seeds: Vec<String> = state_event_ids.into_iter().collect();
    let graph = db::state::auth_graph(&mut *conn, &seeds).await?;
    let auth_edges: HashMap<String, Vec<String>> = graph.into_iter().collect();
    let all_ids: Vec<String> = auth_edges.keys().cloned().collect();
    let mut loaded = Vec::new();
    for (event_nid, event_id, json) in db::state::event_json(&mut *conn, &all_ids).await? {
        loaded.push((event_nid, Pdu::from_stored(&event_id, &json)?));
    }
    // Resolution sees redacted events as redacted, like every other reader.
    let events: HashMap<OwnedEventId, Pdu> = served::apply(&mut *conn, &rules.redaction, loaded)
        .await?
        .into_iter()
        .map(|served| (served.pdu.event_id.clone(), served.pdu))
        .collect();

    let auth_chains: Vec<EventIdSet<OwnedEventId>> = state_maps
        .iter()
        .map(|map| {
            let mut chain = HashSet::new();
            for event_id in map.values() {
                collect_ancestors(event_id.as_str(), &auth_edges, &mut chain);
            }
            chain.into_iter().filter_map(|id| EventId::parse(id).ok()).collect()
        })
        .collect();

    let resolved = match v2_rules {
        Some(v2_rules) => resolve(
            &rules.authorization,
            v2_rules,
            state_maps.iter(),
            auth_chains,
            |id: &EventId| events.get(id).cloned(),
            |conflicted: &StateMap<Vec<OwnedEventId>>| Some(conflicted_subgraph(conflicted, &auth_edges)),
        )
        .map_err(|error| error.to_string()),
        None => resolve_v1(&rules.authorization, &state_maps, |id: &EventId| events.get(id).cloned()),
    }
    .map_err(|error| Error::internal(format!("state resolution in {room_id} failed: {error}")))?;

    let entries: Vec<(String, String, String)> = resolved
        .into_iter()
        .map(|((kind, state_key), event_id)| (kind.to_string(), state_key, event_id.to_string()))
        .collect();
    let ids = db::state::state_entry_ids(&mut *conn, &entries).await?;
    Ok(db::state::create_snapshot(conn, room_id.as_str(), None, &ids).await?)
}

/// Adds the auth ancestors of `event_id` (not the event itself) to `into`.
fn collect_ancestors<'a>(event_id: &str, edges: &'a HashMap<String, Vec<String>>, into: &mut HashSet<&'a str>) {
    let mut stack: Vec<&str> =
        edges.get(event_id).map(|auth| auth.iter().map(String::as_str).collect()).unwrap_or_default();
    while let Some(next) = stack.pop() {
        if let Some((key, auth)) = edges.get_key_value(next)
            && into.insert(key.as_str())
        {
            stack.extend(auth.iter().map(String::as_str));
        }
    }
}

/// State resolution v2.1's conflicted state subgraph: the events on some auth path from one
/// conflicted event to another (both ends included).
fn conflicted_subgraph(
    conflicted: &StateMap<Vec<OwnedEventId>>,
    edges: &HashMap<String, Vec<String>>,
) -> EventIdSet<OwnedEventId> {
    let conflicted_ids: HashSet<&str> = conflicted.values().flatten().map(|id| id.as_str()).collect();
    // Events below some conflicted event (its auth ancestors), plus the conflicted ones.
    let mut below: HashSet<&str> = HashSet::new();
    for id in &conflicted_ids {
        collect_ancestors(id, edges, &mut below);
    }
    below.extend(conflicted_ids.iter().copied());
    // Of those, the ones from which a conflicted event can be reached (itself included).
    let mut memo: HashMap<&str, bool> = HashMap::new();
    below
        .iter()
        .filter(|id| reaches_conflicted(id, edges, &conflicted_ids, &mut memo))
        .filter_map(|id| EventId::parse(*id).ok())
        .collect()
}

fn reaches_conflicted<'a>(
    id: &'a str,
    edges: &'a HashMap<String, Vec<String>>,
    conflicted: &HashSet<&str>,
    memo: &mut HashMap<&'a str, bool>,
) -> bool {
    if conflicted.contains(id) {
        return true;
    }
    if let Some(known) = memo.get(id) {
        return *known;
    }
    memo.insert(id, false); // the auth graph is acyclic; this only guards against bad data
    let result = edges
        .get(id)
        .is_some_and(|auth| auth.iter().any(|parent| reaches_conflicted(parent.as_str(), edges, conflicted, memo)));
    memo.insert(id, result);
    result
}
