//! Pushers: where a user's devices want notifications pushed (`GET /pushers`,
//! `POST /pushers/set`). Delivery is in [`super::sender`].

use crate::db;
use crate::error::{Error, Result};
use crate::store::Store;
use crate::streams::Streams;
use crate::time::now_ms;
use crate::users::Session;
use ruma::UserId;
use ruma::api::client::push::set_pusher::v3::{PusherAction, PusherPostData};
use ruma::api::client::push::{Pusher, PusherKind};
use ruma::push::HttpPusherData;
use serde_json::{Value, json};

/// The only path a push gateway's URL may have (spec: `data.url`; Synapse checks it too).
pub(crate) const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Spec limits on the identifiers.
const MAX_APP_ID_CHARS: usize = 64;
const MAX_PUSHKEY_BYTES: usize = 512;

/// Every pusher of the user, whichever device set it.
pub(crate) async fn list(pool: &Store, user_id: &UserId) -> Result<Vec<Pusher>> {
    db::pushers::list(pool, user_id.as_str()).await?.into_iter().map(to_ruma).collect()
}

fn to_ruma(row: db::pushers::Pusher) -> Result<Pusher> {
    let mut pusher = json!({
        "pushkey": row.pushkey,
        "app_id": row.app_id,
        "kind": row.kind,
        "app_display_name": row.app_display_name,
        "device_display_name": row.device_display_name,
        "lang": row.lang,
        "data": row.data,
    });
    if let Some(tag) = row.profile_tag {
        pusher["profile_tag"] = Value::String(tag);
    }
    serde_json::from_value(pusher).map_err(|error| Error::internal(format!("stored pusher is invalid: {error}")))
}

/// Creates, updates or deletes one of the session user's pushers. A new pusher belongs to
/// the session's device and is sent notifications from now on.
pub(crate) async fn set(pool: &Store, streams: &Streams, session: &Session, action: PusherAction) -> Result<()> {
    let user_id = session.user_id.as_str();
    let post = match action {
        PusherAction::Delete(ids) => {
            db::pushers::delete(pool, user_id, &ids.app_id, &ids.pushkey).await?;
            return Ok(());
        }
        PusherAction::Post(post) => post,
        _ => return Err(Error::invalid_param("Unknown pusher action")),
    };
    let PusherPostData { pusher, append, .. } = post;
    check_ids(&pusher.ids.app_id, &pusher.ids.pushkey)?;
    let data = match &pusher.kind {
        PusherKind::Http(data) => check_http(data)?,
        // Hearth sends no email, and (as Synapse answers when the address is not one of the
        // user's) knows no address to send it to.
        PusherKind::Email(_) => {
            return Err(Error::threepid_not_found("Email pushers need an email address bound to the account"));
        }
        _ => return Err(Error::invalid_param("`kind` must be \"http\" or \"email\", or null to delete")),
    };
    let start_after = streams.current_position(pool).await?;
    let new = db::pushers::NewPusher {
        user_id,
        device_id: session.device_id.as_str(),
        app_id: &pusher.ids.app_id,
        pushkey: &pusher.ids.pushkey,
        kind: "http",
        app_display_name: &pusher.app_display_name,
        device_display_name: &pusher.device_display_name,
        profile_tag: pusher.profile_tag.as_deref(),
        lang: &pusher.lang,
        data: &data,
        now_ms: now_ms(),
    };
    let mut tx = pool.begin().await?;
    // Without `append`, a pushkey belongs to one user: a device that changed hands stops
    // receiving the previous user's notifications.
    if !append {
        db::pushers::delete_for_other_users(&mut *tx, new.app_id, new.pushkey, user_id).await?;
    }
    db::pushers::upsert(&mut *tx, &new, start_after).await?;
    tx.commit().await?;
    Ok(())
}

fn check_ids(app_id: &str, pushkey: &str) -> Result<()> {
    if app_id.is_empty() || app_id.chars().count() > MAX_APP_ID_CHARS {
        return Err(Error::invalid_param(format!("`app_id` must be 1 to {MAX_APP_ID_CHARS} characters")));
    }
    if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY_BYTES {
        return Err(Error::invalid_param(format!("`pushkey` must be 1 to {MAX_PUSHKEY_BYTES} bytes")));
    }
    Ok(())
}

/// The gateway URL must be an http(s) URL whose path is the notify endpoint; returns the
/// `data` object to store.
fn check_http(data: &HttpPusherData) -> Result<Value> {
    let url = reqwest::Url::parse(&data.url)
        .map_err(|error| Error::invalid_param(format!("`data.url` is not a URL: {error}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(Error::invalid_param("`data.url` must be an http or https URL"));
    }
    if url.path() != NOTIFY_PATH {
        return Err(Error::invalid_param(format!("`data.url` must have the path {NOTIFY_PATH}")));
    }
    serde_json::to_value(data).map_err(|error| Error::internal(format!("pusher data: {error}")))
}
