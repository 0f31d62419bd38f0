-- Sliding sync (MSC4186) connections: what each `pos` token a client was given stands for.
--
-- A row is one answer given on a connection (`conn_id` of a device): the stream position it
-- covered everything up to, and what the connection had been sent of each room by then (as
-- JSON: the domain's `sync::sliding::connection::Sent`). Rows are immutable; answering from
-- one adds the next and drops those before it, so a client may retry its latest `pos` after a
-- lost response but never go further back. Kept in the database, a restart of the server
-- changes nothing for a client; a `pos` whose row is gone answers M_UNKNOWN_POS and the
-- client starts the connection over.
CREATE TABLE sliding_sync_positions (
    pos_id          BIGSERIAL PRIMARY KEY,
    user_id         TEXT NOT NULL,
    device_id       TEXT NOT NULL,
    conn_id         TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    sent            JSONB NOT NULL,
    created_ts      BIGINT NOT NULL,
    FOREIGN KEY (user_id, device_id) REFERENCES devices (user_id, device_id) ON DELETE CASCADE
);
CREATE INDEX sliding_sync_positions_connection ON sliding_sync_positions (user_id, device_id, conn_id, pos_id);
