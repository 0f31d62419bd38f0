-- Tips from members to creators (creators/tips.rs): a ledger recorded before the billing
-- webhook is called, so that a crash, a timeout or a client's retry never charges twice and
-- never loses an approved tip. The tip id is the webhook's idempotency key.
CREATE TABLE tips (
    tip_id      TEXT PRIMARY KEY,
    from_user   TEXT NOT NULL REFERENCES users (user_id),
    -- The client transaction that asked for the tip: a retransmission finds this row.
    device_id   TEXT NOT NULL,
    txn_id      TEXT NOT NULL,
    to_user     TEXT NOT NULL REFERENCES users (user_id),
    room_id     TEXT NOT NULL,
    -- NUMERIC keeps the scale as written ("5.00" stays "5.00") and sums exactly.
    amount      NUMERIC NOT NULL CHECK (amount > 0),
    currency    TEXT NOT NULL,
    message     TEXT,
    -- pending: the webhook is being (or was being, before a crash) asked; failed: it did not
    -- answer usefully and is asked again, with the same key, by a retry or at start-up;
    -- approved and declined are final.
    state       TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'declined', 'failed')),
    charge_id   TEXT,
    billing_url TEXT,
    -- The tip's event in the room, once appended (approved tips only).
    event_id    TEXT,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_ts  BIGINT NOT NULL,
    updated_ts  BIGINT NOT NULL,
    UNIQUE (from_user, device_id, txn_id)
);

-- A creator's received tips, newest first.
CREATE INDEX tips_received ON tips (to_user, created_ts DESC, tip_id) WHERE state = 'approved';
-- What start-up recovery looks for.
CREATE INDEX tips_unsettled ON tips (created_ts)
    WHERE state IN ('pending', 'failed') OR (state = 'approved' AND event_id IS NULL);
