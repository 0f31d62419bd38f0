-- The send path's hot rows stop bloating (issue 23).
--
-- forward_extremities: a linear room replaces its one tip on every event. As a DELETE plus an
-- INSERT keyed by (room_id, event_nid) that left a dead row and a dead index entry per send;
-- between autovacuum rounds (a minute apart) a table of five live rows grew to 56 heap pages
-- and a 285-page index, and every send's two reads of it became sequential scans of all 56
-- pages (half of the send's buffer hits, measured with pg_stat_statements and EXPLAIN). The
-- appender now moves the replaced tip to the new event with an UPDATE; with no index on
-- event_nid that update is HOT (the new version stays on the same page, no index entry, the
-- old one pruned in place), and the free space the fill factor leaves keeps it on the page.
-- Uniqueness of (room_id, event_nid) is kept by the writers: every write of a room's tips is
-- made under the room's lock, and a new event's number is new.
ALTER TABLE forward_extremities DROP CONSTRAINT forward_extremities_pkey;
CREATE INDEX forward_extremities_room ON forward_extremities (room_id);
ALTER TABLE forward_extremities SET (fillfactor = 50);

-- events_room_ts (0019) repeats events_room_origin_ts (0004) column for column: every event
-- insert paid for the same B-tree twice.
DROP INDEX events_room_ts;
