//! The server as a whole: event reports, registration tokens, federation destinations and
//! media per user.

use crate::admin::users::{Page, Paging};
use crate::db;
use crate::error::{Error, Result};
use crate::federation::sender::FederationSender;
use crate::media::MediaRepo;
use crate::store::Store;
use crate::users::accounts;
use ruma::{ServerName, UserId};

pub(crate) use crate::db::admin_server::{DestinationRoom, DestinationStatus, EventReport, UploaderStats};
pub(crate) use crate::db::media::Media;
pub(crate) use crate::db::registration::RegistrationToken;

/// `GET /v1/event_reports`: newest first unless `oldest_first`.
pub(crate) async fn event_reports(
    pool: &Store,
    reporter: Option<&str>,
    room_id: Option<&str>,
    newest_first: bool,
    paging: Paging,
) -> Result<Page<EventReport>> {
    let items =
        db::admin_server::event_reports(pool, reporter, room_id, newest_first, paging.from, paging.limit).await?;
    let total = db::admin_server::count_event_reports(pool, reporter, room_id).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

fn report_id(id: &str) -> Result<i64> {
    id.parse::<i64>().ok().filter(|id| *id >= 0).ok_or_else(|| {
        Error::invalid_param("The report_id parameter must be a string representing a positive integer.")
    })
}

/// `GET /v1/event_reports/{reportId}`.
pub(crate) async fn event_report(pool: &Store, id: &str) -> Result<EventReport> {
    db::admin_server::event_report(pool, report_id(id)?)
        .await?
        .ok_or_else(|| Error::not_found("Event report not found"))
}

/// `DELETE /v1/event_reports/{reportId}`.
pub(crate) async fn delete_event_report(pool: &Store, id: &str) -> Result<()> {
    if !db::admin_server::delete_event_report(pool, report_id(id)?).await? {
        return Err(Error::not_found("Event report not found"));
    }
    Ok(())
}

/// `GET /v1/registration_tokens`: all, or only the valid (`Some(true)`) or invalid ones.
pub(crate) async fn registration_tokens(
    pool: &Store,
    valid: Option<bool>,
    now_ms: i64,
) -> Result<Vec<RegistrationToken>> {
    let tokens = db::registration::list_tokens(pool).await?;
    Ok(tokens.into_iter().filter(|token| valid.is_none_or(|valid| token_is_valid(token, now_ms) == valid)).collect())
}

fn token_is_valid(token: &RegistrationToken, now_ms: i64) -> bool {
    token.uses_allowed.is_none_or(|allowed| token.completed < allowed) && token.expiry_ts.is_none_or(|ts| ts > now_ms)
}

/// `GET /v1/registration_tokens/{token}`.
pub(crate) async fn registration_token(pool: &Store, token: &str) -> Result<RegistrationToken> {
    db::registration::get_token(pool, token)
        .await?
        .ok_or_else(|| Error::not_found(format!("No such registration token: {token}")))
}

/// `POST /v1/registration_tokens/new`: the token given, or one of `length` random characters.
pub(crate) async fn create_registration_token(
    pool: &Store,
    token: Option<&str>,
    length: Option<i64>,
    uses_allowed: Option<i64>,
    expiry_ts: Option<i64>,
    now_ms: i64,
) -> Result<RegistrationToken> {
    let generated;
    let token = match (token, length) {
        (Some(token), _) => token,
        (None, length) => {
            let length = length.unwrap_or(16);
            let length = usize::try_from(length)
                .ok()
                .filter(|length| (1..=64).contains(length))
                .ok_or_else(|| Error::invalid_param("length must be an integer between 1 and 64"))?;
            generated = crate::users::tokens::random_alphanumeric(length);
            &generated
        }
    };
    let uses_allowed = uses(uses_allowed)?;
    check_expiry(expiry_ts, now_ms)?;
    let token = accounts::create_registration_token(pool, Some(token), uses_allowed, expiry_ts).await?;
    registration_token(pool, &token).await
}

fn uses(uses_allowed: Option<i64>) -> Result<Option<i32>> {
    uses_allowed
        .map(|uses| i32::try_from(uses).ok().filter(|uses| *uses >= 0))
        .map(|uses| uses.ok_or_else(|| Error::invalid_param("uses_allowed must be a non-negative integer or null")))
        .transpose()
}

fn check_expiry(expiry_ts: Option<i64>, now_ms: i64) -> Result<()> {
    if expiry_ts.is_some_and(|ts| ts < now_ms) {
        return Err(Error::invalid_param("expiry_time must not be in the past"));
    }
    Ok(())
}

/// `PUT /v1/registration_tokens/{token}`: `Some(None)` removes a limit.
pub(crate) async fn update_registration_token(
    pool: &Store,
    token: &str,
    uses_allowed: Option<Option<i64>>,
    expiry_ts: Option<Option<i64>>,
    now_ms: i64,
) -> Result<RegistrationToken> {
    let uses_allowed = uses_allowed.map(uses).transpose()?;
    check_expiry(expiry_ts.flatten(), now_ms)?;
    if !db::registration::update_token(pool, token, uses_allowed, expiry_ts).await? {
        return Err(Error::not_found(format!("No such registration token: {token}")));
    }
    registration_token(pool, token).await
}

/// `DELETE /v1/registration_tokens/{token}`.
pub(crate) async fn delete_registration_token(pool: &Store, token: &str) -> Result<()> {
    if !db::registration::delete_token(pool, token).await? {
        return Err(Error::not_found(format!("No such registration token: {token}")));
    }
    Ok(())
}

/// `GET /v1/federation/destinations`.
pub(crate) async fn destinations(
    pool: &Store,
    contains: Option<&str>,
    paging: Paging,
) -> Result<Page<DestinationStatus>> {
    let items = db::admin_server::destinations(pool, contains, paging.from, paging.limit).await?;
    let total = db::admin_server::count_destinations(pool, contains).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `GET /v1/federation/destinations/{destination}`.
pub(crate) async fn destination(pool: &Store, destination: &str) -> Result<DestinationStatus> {
    let found = db::admin_server::destinations(pool, Some(destination), 0, i64::MAX).await?;
    found
        .into_iter()
        .find(|status| status.destination == destination)
        .ok_or_else(|| Error::not_found("Unknown destination"))
}

/// `GET /v1/federation/destinations/{destination}/rooms`: the rooms the destination shares
/// with this server; an unknown destination is not found, as in Synapse.
pub(crate) async fn destination_rooms(
    pool: &Store,
    server_name: &ServerName,
    destination: &str,
    descending: bool,
    paging: Paging,
) -> Result<Page<DestinationRoom>> {
    let total = db::admin_server::count_destination_rooms(pool, destination).await?;
    if total == 0 {
        // A destination with no rooms is still known if it has a status (a queue or history).
        self::destination(pool, destination).await?;
    }
    let items = db::admin_server::destination_rooms(
        pool,
        destination,
        server_name.as_str(),
        descending,
        paging.from,
        paging.limit,
    )
    .await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `POST /v1/federation/destinations/{destination}/reset_connection`: the destination's backoff
/// is forgotten and this process's sender, if it is waiting it out, tries again at once.
pub(crate) async fn reset_destination(
    pool: &Store,
    sender: &FederationSender,
    server_name: &ServerName,
    destination: &str,
) -> Result<()> {
    if destination == server_name.as_str() {
        return Err(Error::invalid_param("Cannot reset connection to this server"));
    }
    if !db::admin_server::reset_backoff(pool, destination).await? {
        return Err(Error::not_found("Unknown destination"));
    }
    sender.backoffs_reset();
    Ok(())
}

/// `GET /v1/users/{userId}/media`: newest first.
pub(crate) async fn media_of(pool: &Store, user_id: &UserId, paging: Paging) -> Result<Page<Media>> {
    crate::admin::users::get(pool, user_id).await?;
    let items = db::admin_server::media_of(pool, user_id.as_str(), paging.from, paging.limit).await?;
    let total = db::admin_server::count_media_of(pool, user_id.as_str()).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `DELETE /v1/users/{userId}/media`: deletes a page of the user's uploads (newest first),
/// bytes and thumbnails with them; returns the deleted media ids.
pub(crate) async fn delete_media_of(
    pool: &Store,
    media: &MediaRepo,
    server_name: &ServerName,
    user_id: &UserId,
    paging: Paging,
) -> Result<Vec<String>> {
    let page = media_of(pool, user_id, paging).await?;
    let mut deleted = Vec::new();
    for item in page.items.into_iter().filter(|item| item.origin == server_name.as_str()) {
        if media.delete(pool, server_name, &item.media_id).await? {
            deleted.push(item.media_id);
        }
    }
    Ok(deleted)
}

/// `GET /v1/statistics/users/media`: local uploaders, largest total first.
pub(crate) async fn media_statistics(
    pool: &Store,
    server_name: &ServerName,
    paging: Paging,
) -> Result<Page<UploaderStats>> {
    let items = db::admin_server::media_statistics(pool, server_name.as_str(), paging.from, paging.limit).await?;
    let total = db::admin_server::count_uploaders(pool, server_name.as_str()).await?;
    let next = paging.next(items.len(), total);
    Ok(Page { items, total, next })
}

/// `POST /v1/media/quarantine|unquarantine/{serverName}/{mediaId}`: quarantined media is
/// served to nobody.
pub(crate) async fn set_quarantined(
    pool: &Store,
    media: &MediaRepo,
    origin: &ServerName,
    media_id: &str,
    quarantined: bool,
) -> Result<()> {
    if !media.set_quarantined(pool, origin, media_id, quarantined).await? {
        return Err(Error::not_found("Unknown media"));
    }
    Ok(())
}

/// `POST /v1/media/protect|unprotect/{mediaId}`: this server's media, kept out of (or put back
/// within reach of) every quarantine.
pub(crate) async fn set_protected(
    pool: &Store,
    server_name: &ServerName,
    media_id: &str,
    protected: bool,
) -> Result<()> {
    if !db::media::set_protected(pool, server_name.as_str(), media_id, protected).await? {
        return Err(Error::not_found("Unknown media"));
    }
    Ok(())
}

/// `POST /v1/user/{userId}/media/quarantine`: the number of media newly quarantined.
pub(crate) async fn quarantine_uploads_of(pool: &Store, user_id: &UserId) -> Result<u64> {
    Ok(db::media::quarantine_uploads_of(pool, user_id.as_str()).await?)
}

/// `POST /v1/room/{roomId}/media/quarantine`: the media the room's events name, local or
/// remote; the number newly quarantined.
pub(crate) async fn quarantine_named_in_room(pool: &Store, room_id: &ruma::RoomId) -> Result<u64> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    Ok(db::media::quarantine_named_in_room(pool, room_id.as_str()).await?)
}

/// `GET /v1/room/{roomId}/media`: the `mxc://` URIs the room's events name, this server's and
/// other servers'.
pub(crate) struct RoomMedia {
    pub local: Vec<String>,
    pub remote: Vec<String>,
}

pub(crate) async fn media_named_in_room(
    pool: &Store,
    server_name: &ServerName,
    room_id: &ruma::RoomId,
) -> Result<RoomMedia> {
    if db::rooms::version(pool, room_id.as_str()).await?.is_none() {
        return Err(Error::not_found("Room not found"));
    }
    let (local, remote) = db::media::named_in_room(pool, room_id.as_str())
        .await?
        .into_iter()
        .partition::<Vec<_>, _>(|(origin, _)| origin == server_name.as_str());
    let uris =
        |named: Vec<(String, String)>| named.into_iter().map(|(origin, id)| format!("mxc://{origin}/{id}")).collect();
    Ok(RoomMedia { local: uris(local), remote: uris(remote) })
}

/// `DELETE /v1/media/{serverName}/{mediaId}`: this server's media only.
pub(crate) async fn delete_media(
    pool: &Store,
    media: &MediaRepo,
    server_name: &ServerName,
    origin: &ServerName,
    media_id: &str,
) -> Result<()> {
    if origin != server_name {
        return Err(Error::invalid_param("Can only delete local media"));
    }
    if !media.delete(pool, server_name, media_id).await? {
        return Err(Error::not_found("Unknown media"));
    }
    Ok(())
}

/// `POST /v1/media/delete?before_ts=…&size_gt=…`: this server's media created before
/// `before_ts` (ms) and larger than `size_gt` bytes; returns the deleted ids.
pub(crate) async fn delete_media_before(
    pool: &Store,
    media: &MediaRepo,
    server_name: &ServerName,
    before_ts: i64,
    size_gt: i64,
) -> Result<Vec<String>> {
    if before_ts < 0 || size_gt < 0 {
        return Err(Error::invalid_param("before_ts and size_gt must be positive integers"));
    }
    let mut deleted = Vec::new();
    for media_id in db::admin_server::local_media_before(pool, server_name.as_str(), before_ts, size_gt).await? {
        if media.delete(pool, server_name, &media_id).await? {
            deleted.push(media_id);
        }
    }
    Ok(deleted)
}
