-- Inbound federation (issue #16): transactions a remote server sent us, remembered with the
-- answer we gave, so a retried `PUT /send/{txnId}` is processed once (spec: the transaction id
-- is unique per origin).
CREATE TABLE federation_inbound_txns (
    origin          TEXT NOT NULL,
    txn_id          TEXT NOT NULL,
    response        TEXT NOT NULL,
    received_ts     BIGINT NOT NULL,
    PRIMARY KEY (origin, txn_id)
);

-- Serving `/timestamp_to_event` and `/backfill`: the events of a room by time and by depth.
CREATE INDEX events_room_ts ON events (room_id, origin_server_ts);
