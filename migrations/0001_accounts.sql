-- Accounts, sessions and per-user data.
--
-- One global sequence orders everything a client syncs (DESIGN §3); per-user data that sync
-- will deliver (account data today) takes its position from it.
CREATE SEQUENCE stream_positions AS BIGINT;

CREATE TABLE users (
    user_id         TEXT PRIMARY KEY,
    password_hash   TEXT,
    is_admin        BOOLEAN NOT NULL DEFAULT FALSE,
    is_guest        BOOLEAN NOT NULL DEFAULT FALSE,
    deactivated     BOOLEAN NOT NULL DEFAULT FALSE,
    created_ts      BIGINT NOT NULL,
    -- Profile fields (displayname, avatar_url and extended fields) as one JSON object.
    profile         JSONB NOT NULL DEFAULT '{}'::jsonb
);

CREATE TABLE devices (
    user_id         TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    device_id       TEXT NOT NULL,
    display_name    TEXT,
    created_ts      BIGINT NOT NULL,
    last_seen_ts    BIGINT,
    last_seen_ip    TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (user_id, device_id)
);

-- Tokens are stored only as SHA-256 digests: a database leak does not leak sessions.
CREATE TABLE access_tokens (
    token_hash      BYTEA PRIMARY KEY,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX access_tokens_device ON access_tokens (user_id, device_id);

-- room_id '' is global account data.
CREATE TABLE account_data (
    user_id         TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    room_id         TEXT NOT NULL DEFAULT '',
    data_type       TEXT NOT NULL,
    content         JSONB NOT NULL,
    stream_position BIGINT NOT NULL DEFAULT nextval('stream_positions'),
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX account_data_stream ON account_data (user_id, stream_position);

CREATE TABLE filters (
    user_id         TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    filter_id       BIGINT NOT NULL,
    definition      JSONB NOT NULL,
    PRIMARY KEY (user_id, filter_id)
);

-- User-interactive authentication sessions live in the database so that any Hearth process
-- can continue a session another one started.
CREATE TABLE uia_sessions (
    session_id      TEXT PRIMARY KEY,
    -- Which operation the session authorises (e.g. 'register', 'delete_devices'); a session
    -- cannot be replayed against another operation.
    operation       TEXT NOT NULL,
    user_id         TEXT,
    completed       TEXT[] NOT NULL DEFAULT '{}',
    registration_token TEXT,
    -- What the client asked for in earlier requests of the session (never a clear-text
    -- password), so a final request that carries only `auth` still completes it.
    params          JSONB,
    created_ts      BIGINT NOT NULL
);

CREATE TABLE registration_tokens (
    token           TEXT PRIMARY KEY,
    uses_allowed    INTEGER,
    completed       INTEGER NOT NULL DEFAULT 0,
    expiry_ts       BIGINT,
    created_ts      BIGINT NOT NULL
);

-- Nonces for Synapse-compatible shared-secret registration: single use, short-lived.
CREATE TABLE registration_nonces (
    nonce           TEXT PRIMARY KEY,
    created_ts      BIGINT NOT NULL
);
