-- Servers' ed25519 verify keys (federation keys, spec "Retrieving server keys"), ours among them.
--
-- One row per (server, key id). `response` is the signed key object the key came in, exactly
-- as the server (or a notary) served it, so that Hearth can answer notary queries with the
-- origin's own signatures; `valid_until_ts` is that object's, `expired_ts` is set for a key
-- served under `old_verify_keys` (or, for our own keys, when we stopped using it).
CREATE TABLE server_keys (
    server_name TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key TEXT NOT NULL,
    valid_until_ts BIGINT NOT NULL,
    expired_ts BIGINT,
    response TEXT,
    fetched_ts BIGINT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
