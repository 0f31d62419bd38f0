-- The outbound federation queue (DESIGN §4): every local event of a room with remote members
-- is queued for each of their servers in the event's own transaction, and leaves the queue
-- only once the destination acknowledged the transaction that carried it. So a restart, or a
-- destination down for hours, loses nothing.

-- How many joined members each server has in each room, kept by a trigger on
-- `room_memberships` (every writer of memberships, local or federated, goes through it). The
-- send path reads one room's few rows here instead of scanning its member list.
CREATE TABLE room_servers (
    room_id         TEXT NOT NULL,
    server_name     TEXT NOT NULL,
    joined_members  INTEGER NOT NULL,
    PRIMARY KEY (room_id, server_name)
);

-- A user id's server name: everything after the first ':' (localparts never hold one).
CREATE FUNCTION user_server_name(user_id TEXT) RETURNS TEXT
    LANGUAGE SQL IMMUTABLE STRICT PARALLEL SAFE
    RETURN substring(user_id FROM position(':' IN user_id) + 1);

CREATE FUNCTION room_servers_count(room TEXT, server TEXT, delta INTEGER) RETURNS VOID
    LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO room_servers (room_id, server_name, joined_members) VALUES (room, server, delta)
    ON CONFLICT (room_id, server_name)
        DO UPDATE SET joined_members = room_servers.joined_members + EXCLUDED.joined_members;
    DELETE FROM room_servers WHERE room_id = room AND server_name = server AND joined_members <= 0;
END $$;

CREATE FUNCTION room_servers_track() RETURNS TRIGGER
    LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('UPDATE', 'DELETE') AND OLD.membership = 'join' THEN
        PERFORM room_servers_count(OLD.room_id, user_server_name(OLD.user_id), -1);
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.membership = 'join' THEN
        PERFORM room_servers_count(NEW.room_id, user_server_name(NEW.user_id), 1);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER room_servers_track AFTER INSERT OR DELETE OR UPDATE OF membership ON room_memberships
    FOR EACH ROW EXECUTE FUNCTION room_servers_track();

INSERT INTO room_servers (room_id, server_name, joined_members)
SELECT room_id, user_server_name(user_id), COUNT(*) FROM room_memberships
WHERE membership = 'join' GROUP BY 1, 2;

-- One row per (destination, event) still to be acknowledged. `stream_position` orders a
-- destination's rows oldest first (a room's events are queued under the room's lock, so in
-- the room's order). `txn_id` is set when the row is put into a transaction and kept across
-- retries and restarts, so the destination can recognise a retransmission.
CREATE TABLE federation_queue (
    queue_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination     TEXT NOT NULL,
    event_nid       BIGINT NOT NULL REFERENCES events (event_nid),
    -- The event's stream position: the sender looks for newly queued rows by position, up to
    -- the readable bound, so a row committed out of order is never passed over.
    stream_position BIGINT NOT NULL,
    txn_id          TEXT
);
CREATE INDEX federation_queue_by_destination ON federation_queue (destination, stream_position, queue_id);
CREATE INDEX federation_queue_by_position ON federation_queue (stream_position);

-- How delivery to each destination goes (the operator's view, with the queue depth in
-- `federation_destination_status`). The backoff is kept here so a restart does not hammer a
-- destination that is down.
CREATE TABLE federation_destinations (
    destination         TEXT PRIMARY KEY,
    last_success_ts     BIGINT,
    -- Since when (ms) delivery has been failing, and how many attempts failed in a row.
    failing_since_ts    BIGINT,
    failures            INTEGER NOT NULL DEFAULT 0,
    last_error          TEXT,
    -- The current backoff interval, and when the next attempt is due (ms).
    backoff_ms          BIGINT NOT NULL DEFAULT 0,
    retry_at_ts         BIGINT
);

CREATE VIEW federation_destination_status AS
SELECT COALESCE(d.destination, q.destination) AS destination,
       COALESCE(q.depth, 0) AS depth,
       d.last_success_ts, d.failing_since_ts, d.failures, d.last_error, d.backoff_ms, d.retry_at_ts
FROM federation_destinations d
FULL JOIN (SELECT destination, COUNT(*) AS depth FROM federation_queue GROUP BY destination) q
    ON q.destination = d.destination;
