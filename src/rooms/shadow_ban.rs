//! Shadow-banned users (admin API, `shadow_ban`): what they send to rooms is answered as if it
//! had been sent, with an event id, and goes nowhere — so that a spammer does not learn that
//! their messages are dropped and move on to a new account.

use crate::db;
use crate::error::Result;
use crate::users::tokens;
use ruma::{OwnedEventId, UserId};
use sqlx::PgPool;

/// `Some(made-up event id)` when `sender` is shadow-banned: the caller answers with it and
/// sends nothing.
pub async fn fake_event_id(pool: &PgPool, sender: &UserId) -> Result<Option<OwnedEventId>> {
    if !db::admin_users::is_shadow_banned(pool, sender.as_str()).await? {
        return Ok(None);
    }
    // The shape of a reference-hash event id (room v4 on): `$` and 43 URL-safe characters.
    let event_id = OwnedEventId::try_from(format!("${}", tokens::random_alphanumeric(43)))
        .map_err(|error| crate::error::Error::internal(format!("made-up event id: {error}")))?;
    Ok(Some(event_id))
}
