-- `POST /_synapse/admin/v1/purge_history/{roomId}` runs in the background; its progress is kept
-- here so that any process can answer `GET /v1/purge_history_status/{purgeId}`.
CREATE TABLE history_purges (
    purge_id      TEXT PRIMARY KEY,
    room_id       TEXT NOT NULL,
    requested_by  TEXT NOT NULL,
    -- 'active', 'complete' or 'failed' (Synapse's names).
    status        TEXT NOT NULL,
    error         TEXT,
    created_ts    BIGINT NOT NULL
);

-- `POST /_synapse/admin/v1/users/{userId}/login`: an admin acting as a user gets a session on a
-- device the user never sees (Synapse's token has no device at all; Hearth's sessions always
-- have one, so it is hidden from every device listing), with an optional expiry.
ALTER TABLE devices ADD COLUMN hidden BOOLEAN NOT NULL DEFAULT FALSE;
ALTER TABLE access_tokens ADD COLUMN valid_until_ms BIGINT;

-- Media an admin protected (`/_synapse/admin/v1/media/protect/{mediaId}`): quarantining it, alone
-- or with a room's or a user's media, leaves it as it is.
ALTER TABLE media ADD COLUMN safe_from_quarantine BOOLEAN NOT NULL DEFAULT FALSE;
