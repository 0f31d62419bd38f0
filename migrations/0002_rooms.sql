-- Rooms as federation-ready event DAGs (DESIGN §2).
--
-- Every event is stored once as its exact canonical JSON (immutable) with queryable columns
-- beside it. Event ids and (type, state_key) pairs are interned to integers. State is kept as
-- snapshots: a delta over a parent snapshot, with a bounded chain, so the state before and
-- after any event is a query rather than a replay. Current state and membership are tables.

CREATE TABLE rooms (
    room_id         TEXT PRIMARY KEY,
    room_version    TEXT NOT NULL,
    creator         TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    -- Listed in the public room directory.
    published       BOOLEAN NOT NULL DEFAULT FALSE
);

-- Interned event ids. A row may exist for an event Hearth does not have yet (a prev_event
-- it has only heard of), which is what lets edges point at it.
CREATE TABLE event_ids (
    event_nid       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id        TEXT NOT NULL UNIQUE
);

CREATE TABLE state_keys (
    state_key_nid   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_type      TEXT NOT NULL,
    state_key       TEXT NOT NULL,
    UNIQUE (event_type, state_key)
);

CREATE TABLE events (
    event_nid        BIGINT PRIMARY KEY REFERENCES event_ids (event_nid),
    room_id          TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    state_key_nid    BIGINT REFERENCES state_keys (state_key_nid),
    sender           TEXT NOT NULL,
    origin_server_ts BIGINT NOT NULL,
    depth            BIGINT NOT NULL,
    -- Position in the global stream; NULL for outliers (events outside the room's timeline).
    stream_position  BIGINT UNIQUE,
    outlier          BOOLEAN NOT NULL DEFAULT FALSE,
    -- Why the event failed authorisation; NULL when it passed.
    rejection        TEXT,
    soft_failed      BOOLEAN NOT NULL DEFAULT FALSE,
    -- State snapshots before and after the event (non-outliers).
    state_before     BIGINT,
    state_after      BIGINT,
    json             TEXT NOT NULL
);
CREATE INDEX events_room_stream ON events (room_id, stream_position);
CREATE INDEX events_room_topological ON events (room_id, depth, stream_position);

CREATE TABLE event_edges (
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    prev_event_nid  BIGINT NOT NULL REFERENCES event_ids (event_nid),
    PRIMARY KEY (event_nid, prev_event_nid)
);
CREATE INDEX event_edges_prev ON event_edges (prev_event_nid);

CREATE TABLE event_auth_edges (
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    auth_event_nid  BIGINT NOT NULL REFERENCES event_ids (event_nid),
    PRIMARY KEY (event_nid, auth_event_nid)
);

-- The room's current DAG tips: the next local event's prev_events.
CREATE TABLE forward_extremities (
    room_id         TEXT NOT NULL,
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_id, event_nid)
);

CREATE TABLE state_snapshots (
    snapshot_id     BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    room_id         TEXT NOT NULL,
    parent_id       BIGINT REFERENCES state_snapshots (snapshot_id),
    -- Number of deltas from here to a snapshot without parent; bounded so reads stay cheap.
    chain_length    INTEGER NOT NULL
);

CREATE TABLE state_snapshot_entries (
    snapshot_id     BIGINT NOT NULL REFERENCES state_snapshots (snapshot_id),
    state_key_nid   BIGINT NOT NULL REFERENCES state_keys (state_key_nid),
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (snapshot_id, state_key_nid)
);

CREATE TABLE current_state (
    room_id         TEXT NOT NULL,
    state_key_nid   BIGINT NOT NULL REFERENCES state_keys (state_key_nid),
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    PRIMARY KEY (room_id, state_key_nid)
);

CREATE TABLE room_memberships (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    membership      TEXT NOT NULL,
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX room_memberships_user ON room_memberships (user_id, membership);

-- Idempotent sends: one event per (device, transaction id).
CREATE TABLE event_transactions (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);
