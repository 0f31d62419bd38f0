-- What a completed user-interactive-auth session achieved, for operations a client may retry
-- after losing the answer (registration: the account it created). A retry presenting the
-- session gets that outcome again instead of an error (Synapse keeps the same).
ALTER TABLE uia_sessions ADD COLUMN outcome TEXT;
