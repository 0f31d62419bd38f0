-- EDUs (typing, receipts, presence, device-list and signing-key updates, to-device messages)
-- ride in the same outbound transactions as PDUs (DESIGN §4), so they are queued durably the
-- same way: one row per (destination, EDU), written in the transaction of the change it
-- announces, at that change's stream position (the sender finds new work by position), and
-- deleted once the destination acknowledged the transaction that carried it.
CREATE TABLE federation_edu_queue (
    queue_id        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    destination     TEXT NOT NULL,
    stream_position BIGINT NOT NULL,
    -- The EDU as sent: `{"edu_type": ..., "content": ...}`.
    edu             TEXT NOT NULL,
    -- Set when the row is put into a transaction, shared with the PDU rows of that transaction.
    txn_id          TEXT
);
CREATE INDEX federation_edu_queue_by_destination ON federation_edu_queue (destination, stream_position, queue_id);
CREATE INDEX federation_edu_queue_by_position ON federation_edu_queue (stream_position);

-- The queue depth an operator sees counts EDUs too.
CREATE OR REPLACE VIEW federation_destination_status AS
SELECT COALESCE(d.destination, q.destination) AS destination,
       COALESCE(q.depth, 0) AS depth,
       d.last_success_ts, d.failing_since_ts, d.failures, d.last_error, d.backoff_ms, d.retry_at_ts
FROM federation_destinations d
FULL JOIN (
    SELECT destination, COUNT(*) AS depth
    FROM (SELECT destination FROM federation_queue UNION ALL SELECT destination FROM federation_edu_queue) queued
    GROUP BY destination
) q ON q.destination = d.destination;
