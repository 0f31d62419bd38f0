-- When each room joined with a partial state got its full state (federation/partial_state/):
-- the stream position of the transaction that put it in place. A /sync that does not lazy-load
-- members leaves a partial room out (its member list is incomplete, as Synapse does), so the
-- first such sync whose window holds this position shows the room whole, as newly joined.
-- A room joined partially again later moves its row to the later completion.
CREATE TABLE partial_state_completed (
    room_id          TEXT PRIMARY KEY,
    stream_position  BIGINT NOT NULL
);
