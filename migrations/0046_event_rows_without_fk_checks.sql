-- Storing events stops paying a foreign-key check per row of the DAG and state tables (issue 21).
--
-- PostgreSQL checks a foreign key one row at a time: a trigger per inserted row that looks the
-- referenced key up and locks it (FOR KEY SHARE). A new room's eight events write about 120
-- such rows (events, prev and auth edges, state snapshots and their entries, current state);
-- measured on a batch of 32 new DMs in one statement, the checks were 12 ms of its 26 ms (2 cores,
-- PostgreSQL 15, warm). No reader needs them: they guard against a writer that forgets a row,
-- and every writer of these tables already holds what they check —
--   * the numbers it writes come from `event_ids` and `state_keys` in the same transaction
--     (interned first, never deleted while a room exists), and snapshot ids from the sequence
--     whose snapshot it writes in the same statement or one before;
--   * it writes a room's events, edges, snapshots and current state together, under the room's
--     lock (`rooms::send::locks`), so none of them exists without the others;
--   * deletions (`db::room_purge`) remove a room's rows table by table in reference order, and
--     a history purge deletes only non-state events, which no snapshot, current state or auth
--     edge names.
-- `room_memberships` and `forward_extremities` keep theirs (a few rows per room).
ALTER TABLE events
    DROP CONSTRAINT IF EXISTS events_event_nid_fkey,
    DROP CONSTRAINT IF EXISTS events_state_key_nid_fkey;
ALTER TABLE event_edges
    DROP CONSTRAINT IF EXISTS event_edges_event_nid_fkey,
    DROP CONSTRAINT IF EXISTS event_edges_prev_event_nid_fkey;
ALTER TABLE event_auth_edges
    DROP CONSTRAINT IF EXISTS event_auth_edges_event_nid_fkey,
    DROP CONSTRAINT IF EXISTS event_auth_edges_auth_event_nid_fkey;
ALTER TABLE state_snapshots
    DROP CONSTRAINT IF EXISTS state_snapshots_parent_id_fkey;
ALTER TABLE state_snapshot_entries
    DROP CONSTRAINT IF EXISTS state_snapshot_entries_snapshot_id_fkey,
    DROP CONSTRAINT IF EXISTS state_snapshot_entries_state_key_nid_fkey,
    DROP CONSTRAINT IF EXISTS state_snapshot_entries_event_nid_fkey;
ALTER TABLE current_state
    DROP CONSTRAINT IF EXISTS current_state_state_key_nid_fkey,
    DROP CONSTRAINT IF EXISTS current_state_event_nid_fkey;
