//! Events parsed once per process. A message that wakes a thousand long-polls is served to each
//! of them: every one used to parse the same stored JSON into a [`Pdu`] (twice, in `/sync`) —
//! a tree of a few hundred allocations each time. An event's JSON never changes once stored
//! (redactions are applied when serving, `rooms::served`), so the parsed form is an immutable
//! fact of its event number, kept within a memory bound, and a clone of it is shared, not copied.

use crate::db::events::StoredEvent;
use crate::db::state::StateEntry;
use crate::error::Result;
use crate::rooms::pdu::Pdu;
use crate::store::Store;

/// Memory the parsed events may take, estimated (see [`BytesOfParse`]): a burst's page and the
/// states its syncs serve many times over, while a room of 64 KB events cannot make it large.
const CAPACITY_BYTES: u64 = 32 * 1024 * 1024;
/// Typical events are a few hundred bytes.
const ESTIMATED_EVENTS: usize = 20_000;

/// A parsed event's memory, estimated from its JSON text: the text itself, the fields parsed out
/// of it (the content copied) and, once something asked for it, the JSON tree (about twice the
/// text): an upper bound.
#[derive(Clone, Copy, Default)]
struct BytesOfParse;

impl quick_cache::Weighter<i64, Pdu> for BytesOfParse {
    fn weight(&self, _: &i64, pdu: &Pdu) -> u64 {
        (pdu.canonical_text().len() as u64).saturating_mul(4).saturating_add(256)
    }
}

/// Parsed events by event number (immutable facts, like `cache::FactCache`'s, but bounded by
/// their size rather than their number).
pub(crate) struct ParsedEvents(quick_cache::sync::Cache<i64, Pdu, BytesOfParse>);

impl Default for ParsedEvents {
    fn default() -> Self {
        ParsedEvents(quick_cache::sync::Cache::with_weighter(ESTIMATED_EVENTS, CAPACITY_BYTES, BytesOfParse))
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
        // The same parse, shared, not a copy of its text and fields for every reader.
        assert!(std::ptr::eq(again.canonical_text(), parsed.canonical_text()), "the event was copied");
        // A number paired with another id (never in a consistent database) is parsed anew.
        let other = stored(7, "$other", "another");
        let other = pdu_of(&pool, &other).expect("parses");
        assert_eq!(other.event_id.as_str(), "$other");
        assert_eq!(other.content_value()["body"], "another");
    }

    #[tokio::test]
    async fn large_events_are_kept_within_the_memory_bound() {
        let pool = store();
        let body = "x".repeat(60_000);
        for nid in 0..300 {
            pdu_of(&pool, &stored(nid, &format!("$big{nid}"), &body)).expect("parses");
        }
        let cache = pool.cache::<ParsedEvents>();
        // 300 events of 60 KB would be about 72 MB by the estimate.
        assert!(cache.0.weight() <= CAPACITY_BYTES, "{} bytes kept", cache.0.weight());
        assert!(cache.0.len() < 300, "all {} large events kept", cache.0.len());
    }
}
