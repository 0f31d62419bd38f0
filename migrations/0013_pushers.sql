-- Pushers (client-server API "Push notifications"): where a device wants its user's
-- notifications pushed, and how far delivery to it has got.
--
-- A pusher belongs to the device whose session created it; deleting the device (logging out,
-- `DELETE /devices/...`, deactivation) deletes its pushers, as Synapse does.
CREATE TABLE pushers (
    pusher_id           BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id             TEXT NOT NULL,
    device_id           TEXT NOT NULL,
    app_id              TEXT NOT NULL,
    pushkey             TEXT NOT NULL,
    kind                TEXT NOT NULL,
    app_display_name    TEXT NOT NULL,
    device_display_name TEXT NOT NULL,
    profile_tag         TEXT,
    lang                TEXT NOT NULL,
    -- The client's `data` object as given (for http pushers: `url`, `format` and anything the
    -- gateway wants back).
    data                JSONB NOT NULL,
    -- When the pushkey was last set (ms); gateways get it as `pushkey_ts`.
    pushkey_ts          BIGINT NOT NULL,
    -- The stream position of the last notification handled (delivered, or skipped as not
    -- to be pushed). Only moves forward, and only after the gateway answered: a restart
    -- resumes from here, so nothing is lost and nothing already delivered is sent again.
    delivered_upto      BIGINT NOT NULL,
    -- Since when (ms) delivery has been failing; NULL while it works.
    failing_since       BIGINT,
    UNIQUE (user_id, app_id, pushkey),
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);

-- Setting a pusher without `append` removes other users' pushers with the same app id and
-- pushkey; a gateway's `rejected` list names pushkeys.
CREATE INDEX pushers_by_key ON pushers (app_id, pushkey);

-- Push delivery looks for new notifications by stream position across all users (what became
-- readable since it last looked); only notifying rows are ever pushed.
CREATE INDEX event_push_actions_to_push ON event_push_actions (stream_position) WHERE notify;
