-- Users who asked, deactivating their account, for their content to be erased (spec: "Account
-- deactivation", `erase`). Whoever was not in a room when such a user sent an event is served
-- it redacted. Few rows, probed beside every event read (see db::events::STORED_EVENT_COLUMNS).
CREATE TABLE erased_users (
    user_id   TEXT PRIMARY KEY,
    erased_ts BIGINT NOT NULL
);
