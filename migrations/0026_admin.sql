-- The admin API (issue #19): account flags operators set, per-user rate-limit overrides, and
-- rooms the server refuses to take part in.

-- `shadow_banned`: kept for the admin API's answers and listings (Synapse's flag).
-- `locked`: every token of the account answers M_USER_LOCKED until an admin unlocks it.
-- `user_type`: Synapse's `bot` / `support` / NULL, shown to and set by admins.
ALTER TABLE users
    ADD COLUMN shadow_banned BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN locked        BOOLEAN NOT NULL DEFAULT FALSE,
    ADD COLUMN user_type     TEXT;

-- Admins list users by name (the primary key) and by creation time.
CREATE INDEX users_created ON users (created_ts);

-- Per-user rate limits set by admins (0 and 0 means "not limited").
CREATE TABLE ratelimit_overrides (
    user_id             TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    messages_per_second INTEGER NOT NULL CHECK (messages_per_second >= 0),
    burst_count         INTEGER NOT NULL CHECK (burst_count >= 0)
);

-- Rooms local users may not join (the room need not be known here yet).
CREATE TABLE blocked_rooms (
    room_id     TEXT PRIMARY KEY,
    blocked_by  TEXT NOT NULL,
    blocked_ts  BIGINT NOT NULL
);

-- `DELETE /_synapse/admin/v2/rooms/{roomId}` runs in the background; its progress and outcome
-- are kept here so that any process can answer the status endpoints.
CREATE TABLE room_deletions (
    delete_id     TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    -- 'scheduled', 'active', 'complete' or 'failed' (Synapse's names).
    status        TEXT NOT NULL,
    error         TEXT,
    -- Synapse's `shutdown_room` object: kicked users, moved aliases, the replacement room.
    outcome       JSONB,
    created_ts    BIGINT NOT NULL
);
CREATE INDEX room_deletions_room ON room_deletions (room_id, created_ts);
