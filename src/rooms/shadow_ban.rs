//! Shadow-banned users (admin API, `shadow_ban`): what they send to rooms is answered as if it
//! had been sent, with an event id, and goes nowhere — so that a spammer does not learn that
//! their messages are dropped and move on to a new account. As with Synapse this covers
//! messages and state events (not their own membership), invitations, typing notifications
//! and public read receipts; what only they see (private receipts, read markers) still works.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use crate::users::{Session, tokens};
use ruma::{OwnedEventId, UserId};

/// Whether what `user` sends to others is to be dropped while answered as done.
pub(crate) async fn is_shadow_banned(pool: &Store, user: &UserId) -> Result<bool> {
    Ok(db::admin_users::is_shadow_banned(pool, user.as_str()).await?)
}

/// `Some(made-up event id)` when the session's user is shadow-banned (as read with its token):
/// the caller answers with it and sends nothing.
pub(crate) fn fake_event_id(session: &Session) -> Result<Option<OwnedEventId>> {
    if !session.shadow_banned {
        return Ok(None);
    }
    // The shape of a reference-hash event id (room v4 on): `$` and 43 URL-safe characters.
    let event_id = OwnedEventId::try_from(format!("${}", tokens::random_alphanumeric(43)))
        .map_err(|error| crate::error::Error::internal(format!("made-up event id: {error}")))?;
    Ok(Some(event_id))
}
