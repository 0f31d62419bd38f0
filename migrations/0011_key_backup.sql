-- Server-side key backups (client-server API, "Server-side key backups").
--
-- Versions are per-user increasing integers. A deleted version keeps its row, marked deleted,
-- so that its number is never handed out again and a repeated DELETE can succeed as the spec
-- asks; its keys are removed. `etag` counts changes to the version's keys: clients compare it
-- to notice that another client modified the backup.
CREATE TABLE key_backup_versions (
    user_id    TEXT NOT NULL,
    version    BIGINT NOT NULL,
    algorithm  TEXT NOT NULL,
    auth_data  JSONB NOT NULL,
    etag       BIGINT NOT NULL DEFAULT 0,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    PRIMARY KEY (user_id, version)
);

-- One backed-up megolm session key. The metadata the server compares ("is the new key
-- better?") sits in columns; `session_data` is the client's encrypted, opaque object as sent.
CREATE TABLE key_backup_sessions (
    user_id             TEXT NOT NULL,
    version             BIGINT NOT NULL,
    room_id             TEXT NOT NULL,
    session_id          TEXT NOT NULL,
    first_message_index BIGINT NOT NULL,
    forwarded_count     BIGINT NOT NULL,
    is_verified         BOOLEAN NOT NULL,
    session_data        JSONB NOT NULL,
    PRIMARY KEY (user_id, version, room_id, session_id),
    FOREIGN KEY (user_id, version) REFERENCES key_backup_versions (user_id, version) ON DELETE CASCADE
);
