-- Each Hearth process keeps the access tokens it resolved lately (users::token_cache). What a
-- token resolves to changes with these rows; every change notifies `hearth_auth` with the
-- owner's user id, at commit, so that every process drops the owner's cached tokens — whatever
-- path made the change (a request, the admin API, the account tools run with no server).
-- Payloads that repeat within a transaction are delivered once.

CREATE FUNCTION hearth_notify_token_owner() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('hearth_auth', OLD.user_id);
    ELSE
        PERFORM pg_notify('hearth_auth', NEW.user_id);
    END IF;
    RETURN NULL;
END;
$$;

-- Logouts, device deletions (through the cascade), tokens replaced at login.
CREATE TRIGGER access_tokens_notify_owner AFTER DELETE OR UPDATE ON access_tokens
    FOR EACH ROW EXECUTE FUNCTION hearth_notify_token_owner();

-- The account's flags a request is judged by.
CREATE TRIGGER users_notify_token_owner
    AFTER UPDATE OF is_admin, is_guest, deactivated, locked, shadow_banned ON users
    FOR EACH ROW WHEN (
        OLD.is_admin IS DISTINCT FROM NEW.is_admin OR OLD.is_guest IS DISTINCT FROM NEW.is_guest
        OR OLD.deactivated IS DISTINCT FROM NEW.deactivated OR OLD.locked IS DISTINCT FROM NEW.locked
        OR OLD.shadow_banned IS DISTINCT FROM NEW.shadow_banned
    )
    EXECUTE FUNCTION hearth_notify_token_owner();

-- An admin's message rate limit for the user, read with the token.
CREATE TRIGGER ratelimit_overrides_notify_token_owner AFTER INSERT OR UPDATE OR DELETE ON ratelimit_overrides
    FOR EACH ROW EXECUTE FUNCTION hearth_notify_token_owner();
