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
