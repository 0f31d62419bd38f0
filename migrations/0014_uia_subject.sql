-- What exactly the request that opened a user-interactive-auth session asked for (which
-- devices to delete, which keys to upload, whether to erase...). A later request presenting
-- the session must ask the same, or it is refused: a session the user completed for one
-- request must not authorise another (Synapse compares the same).
ALTER TABLE uia_sessions ADD COLUMN subject JSONB NOT NULL DEFAULT 'null';
