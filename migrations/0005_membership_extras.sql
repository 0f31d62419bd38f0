-- Forgetting a room a user has left, and reports of abusive content for server admins.

ALTER TABLE room_memberships ADD COLUMN forgotten BOOLEAN NOT NULL DEFAULT FALSE;

CREATE TABLE reports (
    report_id       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reporter        TEXT NOT NULL,
    -- What is reported: an event (room_id + event_id), a room (room_id), or a user.
    room_id         TEXT,
    event_id        TEXT,
    reported_user   TEXT,
    reason          TEXT,
    score           INTEGER,
    created_ts      BIGINT NOT NULL
);
CREATE INDEX reports_created ON reports (created_ts);
