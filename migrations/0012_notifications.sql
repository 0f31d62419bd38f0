-- Push rules and the notifications they produce (spec: "Push Notifications").

-- A user's push rules, as far as they differ from the server-default rules. Only differences
-- are stored: the defaults come from the server at every read, so a default rule that a later
-- spec version adds (or changes) reaches every existing user, with the user's own changes kept.
--   * A rule of the user's own: `priority` orders it among the user's rules of its kind (0 is
--     the most important; the user's rules always come before the defaults of their kind),
--     `rule` holds it whole as the client API shows it (rule_id, enabled, actions, conditions
--     or pattern); `enabled` and `actions` are NULL.
--   * A change to a server-default rule (an id starting with '.'): `enabled` and/or `actions`,
--     NULL where the default stands; `priority` and `rule` are NULL.
-- Changes reach the user's devices as the `m.push_rules` account data, whose row there takes a
-- stream position at every change (its content is rendered from this table when read).
CREATE TABLE push_rules (
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    kind        TEXT NOT NULL,
    rule_id     TEXT NOT NULL,
    priority    INTEGER,
    rule        JSONB,
    enabled     BOOLEAN,
    actions     JSONB,
    PRIMARY KEY (user_id, kind, rule_id)
);

-- What each local user's push rules decided for each new event that notifies or highlights
-- them, written in the same transaction as the event (so none is lost on a crash). Read by
-- /sync's unread counts, GET /notifications, and the pushers.
CREATE TABLE event_push_actions (
    user_id          TEXT NOT NULL,
    room_id          TEXT NOT NULL,
    event_nid        BIGINT NOT NULL REFERENCES events (event_nid),
    event_id         TEXT NOT NULL,
    -- The event's position in the global stream (unique per event).
    stream_position  BIGINT NOT NULL,
    sender           TEXT NOT NULL,
    -- The event's thread root (an `m.thread` relation), or 'main' for the main timeline
    -- (thread roots included), as in threaded read receipts.
    thread_id        TEXT NOT NULL,
    -- The actions contain `notify` / the `highlight` tweak.
    notify           BOOLEAN NOT NULL,
    highlight        BOOLEAN NOT NULL,
    -- The matching rule's actions, tweaks included (JSON array as in the push rule).
    actions          JSONB NOT NULL,
    -- The event's origin_server_ts (GET /notifications' `ts`).
    ts               BIGINT NOT NULL,
    -- Per user, by stream position: GET /notifications pages and pushers' cursors.
    PRIMARY KEY (user_id, stream_position)
);
-- A user's rows in one room after a read position: the unread counts of /sync.
CREATE INDEX event_push_actions_room ON event_push_actions (user_id, room_id, stream_position);
