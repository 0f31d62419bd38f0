-- Other servers' users' device lists, cached (issue #18): fetched whole through
-- `GET /_matrix/federation/v1/user/devices/{userId}` the first time a local user needs a remote
-- user's keys while they share a room, then kept current from `m.device_list_update` and
-- `m.signing_key_update` EDUs. A gap in the EDUs' `stream_id`/`prev_id` chain means an update
-- was missed: the list is fetched whole again (a resync).
CREATE TABLE remote_device_lists (
    user_id     TEXT PRIMARY KEY,
    -- The remote server's stream id up to which this copy is current.
    stream_id   BIGINT NOT NULL,
    -- The devices with their keys and the cross-signing keys, as JSON (see
    -- `db::remote_device_lists::CachedDevices`).
    devices     TEXT NOT NULL,
    -- How many times the list was fetched whole (an operator's view of how often EDUs fell short).
    resyncs     INTEGER NOT NULL DEFAULT 0,
    updated_ts  BIGINT NOT NULL
);
