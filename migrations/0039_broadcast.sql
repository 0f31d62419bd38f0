-- Broadcast lists (creators/broadcast/): creators message the members who opted in, in bulk.

-- A member's opt-in to a creator's broadcasts. Sharing a room with the creator is the other
-- way to be reachable; nobody else can be put on a list.
CREATE TABLE creator_subscriptions (
    creator     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    subscriber  TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    since_ts    BIGINT NOT NULL,
    PRIMARY KEY (creator, subscriber)
);

CREATE TABLE broadcast_lists (
    list_id     TEXT PRIMARY KEY,
    creator     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    created_ts  BIGINT NOT NULL,
    UNIQUE (creator, name)
);

CREATE TABLE broadcast_list_members (
    list_id     TEXT NOT NULL REFERENCES broadcast_lists (list_id) ON DELETE CASCADE,
    user_id     TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    added_ts    BIGINT NOT NULL,
    PRIMARY KEY (list_id, user_id)
);

-- One message to one list: the recipients are copied at send time, so later edits (or the
-- list's deletion) change nothing of a broadcast under way.
CREATE TABLE broadcasts (
    broadcast_id TEXT PRIMARY KEY,
    creator      TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    -- The client transaction that asked for it: a retransmission finds this row.
    device_id    TEXT NOT NULL,
    txn_id       TEXT NOT NULL,
    list_id      TEXT NOT NULL,
    content      JSONB NOT NULL,
    -- running until no recipient is pending; resumed at start-up while running.
    state        TEXT NOT NULL CHECK (state IN ('running', 'done')),
    total        INTEGER NOT NULL,
    created_ts   BIGINT NOT NULL,
    finished_ts  BIGINT,
    UNIQUE (creator, device_id, txn_id)
);
CREATE INDEX broadcasts_running ON broadcasts (created_ts) WHERE state = 'running';

-- Each recipient's delivery. Delivery appends with a transaction id per broadcast (the room
-- is part of the key), so an append repeated after a crash returns the first event instead of
-- sending again; `room_id` is recorded as soon as a new DM exists, so a resumed delivery uses
-- it instead of creating another (and a DM made just before a crash, recorded nowhere yet, is
-- found as the room of just the creator and the recipient).
CREATE TABLE broadcast_recipients (
    broadcast_id TEXT NOT NULL REFERENCES broadcasts (broadcast_id) ON DELETE CASCADE,
    user_id      TEXT NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'skipped', 'failed')),
    room_id      TEXT,
    event_id     TEXT,
    PRIMARY KEY (broadcast_id, user_id)
);
CREATE INDEX broadcast_recipients_pending ON broadcast_recipients (broadcast_id, user_id) WHERE state = 'pending';

-- Tips (0031): an approved tip whose event cannot be posted (the member left the room, say)
-- was retried at every start-up forever. Posting is now tried a bounded number of times; then
-- the tip is given up on (still approved and charged, so still in the creator's ledger and
-- totals), with the last refusal kept for the operator.
ALTER TABLE tips
    ADD COLUMN post_attempts INTEGER NOT NULL DEFAULT 0,
    ADD COLUMN post_error TEXT,
    ADD COLUMN post_given_up BOOLEAN NOT NULL DEFAULT FALSE;
DROP INDEX tips_unsettled;
CREATE INDEX tips_unsettled ON tips (created_ts)
    WHERE state IN ('pending', 'failed') OR (state = 'approved' AND event_id IS NULL AND NOT post_given_up);
