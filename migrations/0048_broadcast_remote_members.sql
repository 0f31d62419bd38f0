-- Broadcast lists take users of other servers who share a room with the creator (#21), and
-- those have no row in `users`. Local members are checked when added (an active account that
-- subscribed or shares a room) and again at delivery; accounts are deactivated, never deleted,
-- so the cascade this key gave never ran.
ALTER TABLE broadcast_list_members DROP CONSTRAINT broadcast_list_members_user_id_fkey;
