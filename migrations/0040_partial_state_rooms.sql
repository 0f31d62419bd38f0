-- Rooms joined with a partial state ("faster joins", federation/partial_state/): the resident
-- server left most member events out of its send_join answer. The row lives from the join's
-- commit until the background resync has fetched the full state at the join and replaced the
-- partial one, in one transaction; a process that dies in between finds the row at start-up.
CREATE TABLE partial_state_rooms (
    room_id          TEXT PRIMARY KEY,
    -- Our join: the full state is fetched at it.
    join_event_id    TEXT NOT NULL,
    -- The servers the resident named as in the room (send_join's servers_in_room), the
    -- resident first: they hear of our events until the membership is known, and are asked
    -- for the state.
    servers_in_room  TEXT[] NOT NULL,
    joined_ts        BIGINT NOT NULL
);
