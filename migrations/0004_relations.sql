-- Redactions and event relationships (`m.relates_to`), recorded when an event is stored.
--
-- Both tables are derived from the immutable event JSON: the original of a redacted event stays
-- in `events.json` (admins may need it) and readers compute the redacted form on the way out.
-- Targets and parents are interned ids, so a redaction or relation may point at an event this
-- server does not have yet (federation); readers join with `events` and check the room.

CREATE TABLE redactions (
    -- The m.room.redaction event.
    redaction_nid   BIGINT PRIMARY KEY REFERENCES events (event_nid),
    room_id         TEXT NOT NULL,
    -- The event it redacts.
    redacts_nid     BIGINT NOT NULL REFERENCES event_ids (event_nid)
);
CREATE INDEX redactions_redacts ON redactions (redacts_nid);

CREATE TABLE event_relations (
    -- The child: an event's content has one `m.relates_to`, so one row per event.
    event_nid       BIGINT PRIMARY KEY REFERENCES events (event_nid),
    room_id         TEXT NOT NULL,
    parent_nid      BIGINT NOT NULL REFERENCES event_ids (event_nid),
    rel_type        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    sender          TEXT NOT NULL,
    -- `m.annotation` only: the annotation's key (e.g. the reaction emoji).
    aggregation_key TEXT
);
CREATE INDEX event_relations_parent ON event_relations (parent_nid, rel_type, event_type);
-- Listing a room's threads.
CREATE INDEX event_relations_room_type ON event_relations (room_id, rel_type, parent_nid);

-- `timestamp_to_event`.
CREATE INDEX events_room_origin_ts ON events (room_id, origin_server_ts);
