-- Processes that write to the global stream (DESIGN §3).
--
-- Positions come from one sequence and can commit out of order. A writer that has
-- positions in flight publishes `blocking_from` (no higher than its lowest in-flight
-- position) *before* it takes a position, and clears it after its commits. Readers hand
-- out only positions below every live writer's `blocking_from`, so a client never skips a
-- position that is still to commit. A writer holds a session advisory lock on its id for
-- as long as it lives; rows whose lock is free belong to dead processes and are removed.
CREATE TABLE stream_writers (
    writer_id       INTEGER GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    blocking_from   BIGINT,
    started_ts      BIGINT NOT NULL
);
