-- Two fixes to what room readers and senders rely on.
--
-- 1. A send is a retransmission only when its transaction id *and* its path are the same (spec:
--    "Transaction identifiers"), and the send path names the room and the event type. Keyed on
--    the device and transaction id alone, the same id used in two rooms returned the first
--    room's event, or failed outright when both requests ran at once.

ALTER TABLE event_transactions
    ADD COLUMN room_id TEXT NOT NULL DEFAULT '',
    ADD COLUMN event_type TEXT NOT NULL DEFAULT '';

UPDATE event_transactions t SET room_id = e.room_id, event_type = e.event_type
FROM event_ids i JOIN events e ON e.event_nid = i.event_nid
WHERE i.event_id = t.event_id;

ALTER TABLE event_transactions
    ALTER COLUMN room_id DROP DEFAULT,
    ALTER COLUMN event_type DROP DEFAULT,
    DROP CONSTRAINT event_transactions_pkey,
    ADD PRIMARY KEY (user_id, device_id, room_id, event_type, txn_id);

-- 2. History visibility `shared` shows an event to a user who joined the room at any point
--    after it — also once they have left again. The stream position of the user's latest join
--    answers that without scanning the room.

ALTER TABLE room_memberships ADD COLUMN joined_position BIGINT;

UPDATE room_memberships m SET joined_position = j.position
FROM (
    SELECT e.room_id, k.state_key AS user_id, MAX(e.stream_position) AS position
    FROM events e JOIN state_keys k ON k.state_key_nid = e.state_key_nid
    WHERE k.event_type = 'm.room.member' AND e.stream_position IS NOT NULL
      AND e.json::jsonb -> 'content' ->> 'membership' = 'join'
    GROUP BY e.room_id, k.state_key
) j
WHERE j.room_id = m.room_id AND j.user_id = m.user_id;
