//! Stored sync filters.

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::users::Session;
use ruma::UserId;
use ruma::api::client::filter::{EventFormat, FilterDefinition};
use serde_json::Value;

fn check_owner(session: &Session, user_id: &UserId) -> Result<()> {
    if session.user_id != user_id {
        return Err(Error::forbidden("You cannot use another user's filters"));
    }
    Ok(())
}

/// Stores a filter and returns its id. Parsing into ruma's type has checked the schema but
/// for enums, which ruma keeps open (unknown strings parse as custom values) and the spec
/// closes.
pub(crate) async fn create(
    pool: &Store,
    session: &Session,
    user_id: &UserId,
    definition: &FilterDefinition,
) -> Result<String> {
    check_owner(session, user_id)?;
    if !matches!(definition.event_format, EventFormat::Client | EventFormat::Federation) {
        return Err(Error::bad_json("event_format must be \"client\" or \"federation\""));
    }
    let definition = serde_json::to_value(definition).map_err(|error| Error::internal(error.to_string()))?;
    for _ in 0..5 {
        if let Some(id) = db::filters::insert(pool, user_id.as_str(), &definition).await? {
            return Ok(id.to_string());
        }
    }
    Err(Error::internal("could not allocate a filter id"))
}

pub(crate) async fn get(pool: &Store, session: &Session, user_id: &UserId, filter_id: &str) -> Result<Value> {
    check_owner(session, user_id)?;
    let not_found = || Error::not_found("No such filter");
    let id: i64 = filter_id.parse().map_err(|_| not_found())?;
    db::filters::get(pool, user_id.as_str(), id).await?.ok_or_else(not_found)
}
