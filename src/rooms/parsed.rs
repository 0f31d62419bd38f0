//! Events parsed once per process. A message that wakes a thousand long-polls is served to each
//! of them: every one used to parse the same stored JSON into a [`Pdu`] (twice, in `/sync`) —
//! a tree of a few hundred allocations each time. An event's JSON never changes once stored
//! (redactions are applied when serving, `rooms::served`), so the parsed form is an immutable
//! fact of its event number (`cache`), and a clone of it shares the JSON tree.

use crate::cache::FactCache;
use crate::db::events::StoredEvent;
use crate::db::state::StateEntry;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;

/// Events kept at most: a burst's page and the states its syncs serve, many times over.
const CAPACITY: usize = 20_000;

/// Parsed events by event number.
pub(crate) struct ParsedEvents(FactCache<i64, Pdu>);

impl Default for ParsedEvents {
    fn default() -> Self {
        ParsedEvents(FactCache::new(CAPACITY))
    }
}

/// The event as stored, parsed.
pub(crate) fn pdu_of(pool: &Store, event: &StoredEvent) -> Result<Pdu> {
    parsed(pool, event.event_nid, &event.event_id, &event.json)
}

/// A state entry's event, parsed.
pub(crate) fn pdu_of_state(pool: &Store, entry: &StateEntry) -> Result<Pdu> {
    parsed(pool, entry.event_nid, &entry.event_id, &entry.json)
}

fn parsed(pool: &Store, event_nid: i64, event_id: &str, json: &str) -> Result<Pdu> {
    let cache = pool.cache::<ParsedEvents>();
    // The id is compared too: a number names one event forever, but a wrong pairing must
    // never serve another event's content.
    if let Some(pdu) = cache.0.get(&event_nid).filter(|pdu| pdu.event_id.as_str() == event_id) {
        return Ok(pdu);
    }
    let pdu = Pdu::from_stored(event_id, json)?;
    cache.0.insert(event_nid, pdu.clone());
    Ok(pdu)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        Store::new(sqlx::postgres::PgPoolOptions::new().connect_lazy("postgres://localhost/unused").expect("lazy pool"))
    }

    fn stored(event_nid: i64, event_id: &str, body: &str) -> StoredEvent {
        let json = serde_json::json!({
            "room_id": "!room:example.org",
            "sender": "@alice:example.org",
            "origin_server_ts": 1,
            "type": "m.room.message",
            "content": {"msgtype": "m.text", "body": body},
            "prev_events": [],
            "auth_events": [],
            "depth": 3,
        });
        StoredEvent {
            event_nid,
            event_id: event_id.to_owned(),
            room_id: "!room:example.org".to_owned(),
            stream_position: Some(event_nid),
            depth: 3,
            state_before: Some(1),
            json: json.to_string(),
            has_related: None,
            sender_erased: false,
        }
    }

    #[tokio::test]
    async fn an_event_is_served_as_parsed_and_only_for_its_own_id() {
        let pool = store();
        let first = stored(7, "$first", "hello");
        let parsed = pdu_of(&pool, &first).expect("parses");
        let again = pdu_of(&pool, &first).expect("from the cache");
        assert_eq!(again.canonical_text(), parsed.canonical_text());
        assert_eq!(again.content_value()["body"], "hello");
        // A number paired with another id (never in a consistent database) is parsed anew.
        let other = stored(7, "$other", "another");
        let other = pdu_of(&pool, &other).expect("parses");
        assert_eq!(other.event_id.as_str(), "$other");
        assert_eq!(other.content_value()["body"], "another");
    }
}
