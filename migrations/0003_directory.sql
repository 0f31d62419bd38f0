-- Room aliases and the room directory.
--
-- An alias maps `#localpart:server` to a room. Only aliases on this server are stored here
-- (other servers' aliases are resolved over federation); the primary key is what makes two
-- concurrent creations of one alias impossible. The creator is kept because Synapse lets the
-- creator of an alias delete it even without power in the room.
CREATE TABLE room_aliases (
    room_alias      TEXT PRIMARY KEY,
    room_id         TEXT NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    creator         TEXT NOT NULL,
    created_ts      BIGINT NOT NULL
);
CREATE INDEX room_aliases_room ON room_aliases (room_id);

-- Publication in the public room directory is `rooms.published` (0002); the directory
-- listing starts from the few published rooms.
CREATE INDEX rooms_published ON rooms (room_id) WHERE published;
