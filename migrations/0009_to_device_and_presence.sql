-- To-device messages (DESIGN §3): a queue per recipient device. A send takes one stream
-- position; its rows stay until the device syncs with a `since` at or past that position
-- (the client then has them). Deleting a device deletes its queue.
CREATE TABLE to_device_messages (
    message_id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    sender          TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    content         JSONB NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX to_device_messages_queue ON to_device_messages (user_id, device_id, stream_position);

-- Idempotent sends: a (sender device, transaction id) queues messages once.
CREATE TABLE to_device_transactions (
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    created_ts      BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Presence: the latest state a user set, at the stream position of its last visible change.
-- `last_active_ts` may move without a new position (activity alone wakes nobody).
CREATE TABLE presence (
    user_id         TEXT PRIMARY KEY,
    state           TEXT NOT NULL,
    status_msg      TEXT,
    last_active_ts  BIGINT NOT NULL,
    stream_position BIGINT NOT NULL
);
CREATE INDEX presence_position ON presence (stream_position);
