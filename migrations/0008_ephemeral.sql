-- Typing notifications and read receipts (issue 4). Both are delivered by /sync, so each
-- change carries a position of the global stream (DESIGN §3); both live here rather than in
-- memory because every Hearth process on the database must see the same state.

-- One row per (room, user) that has ever typed. A stop (explicit, or the expiry turned into a
-- stop by a sweeper) is a change like a start: it keeps its row with `typing = false` and its
-- own stream position, so a syncing client learns of it exactly once.
CREATE TABLE typing (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    typing          BOOLEAN NOT NULL,
    -- When a typing user stops typing unless they renew it (ms since the epoch).
    expires_ts      BIGINT NOT NULL,
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX typing_room_position ON typing (room_id, stream_position);
-- The sweeper looks only at users still typing.
CREATE INDEX typing_expiry ON typing (expires_ts) WHERE typing;

-- A user's current receipt of each type, per thread ('' = unthreaded).
CREATE TABLE receipts (
    room_id         TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    receipt_type    TEXT NOT NULL,
    thread_id       TEXT NOT NULL DEFAULT '',
    event_id        TEXT NOT NULL,
    -- Stream position of the receipted event: receipts never move backwards along it.
    event_position  BIGINT NOT NULL,
    ts              BIGINT NOT NULL,
    stream_position BIGINT NOT NULL,
    PRIMARY KEY (room_id, user_id, receipt_type, thread_id)
);
CREATE INDEX receipts_room_position ON receipts (room_id, stream_position);
