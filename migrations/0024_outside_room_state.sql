-- The stripped state another server sent with an invitation (`invite_room_state`) or answered a
-- knock with (`knock_room_state`), for rooms this server is not in: all a local user can learn
-- of the room (its name, avatar, join rules...) until they join. One row per member event (an
-- outlier), as clients receive it in `/sync`'s `invite_state` / `knock_state`.
CREATE TABLE outside_room_state (
    event_nid BIGINT PRIMARY KEY REFERENCES events (event_nid) ON DELETE CASCADE,
    -- A JSON array of stripped state events: {type, state_key, content, sender}.
    stripped JSONB NOT NULL
);
