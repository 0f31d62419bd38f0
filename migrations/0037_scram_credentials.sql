-- SCRAM credentials (RFC 5802, RFC 7677) for SASL logins, one row per user and mechanism
-- (`SCRAM-SHA-1`, `SCRAM-SHA-256`). SCRAM needs keys derived from the password itself, which
-- an argon2 hash cannot give, so they are derived whenever the password is known: when it is
-- set, and for accounts older than this table, at their first PLAIN login over TLS.
--
-- `password_hash` is the argon2 hash of the password the keys were derived from: keys whose
-- hash differs from the account's current one are stale (the password changed, by whatever
-- path) and are never used; a deactivated account (no hash) has none that match.
CREATE TABLE scram_credentials (
    user_id       TEXT NOT NULL REFERENCES users (user_id) ON DELETE CASCADE,
    mechanism     TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    salt          BYTEA NOT NULL,
    iterations    INTEGER NOT NULL,
    stored_key    BYTEA NOT NULL,
    server_key    BYTEA NOT NULL,
    PRIMARY KEY (user_id, mechanism)
);
