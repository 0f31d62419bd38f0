-- Stream positions of events backfilled from other servers (history from before this server
-- joined a room). They count down from -1, so every backfilled event sits below every event
-- this server received live: `/sync` (which reads positions above its token) never sees them
-- as new, while `/messages` pages backwards through them in the order they were placed — the
-- newest of a backfilled batch nearest to zero, each later (older) batch further down.
CREATE SEQUENCE backfill_positions INCREMENT BY -1 MAXVALUE -1 START WITH -1;
