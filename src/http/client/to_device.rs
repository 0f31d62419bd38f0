//! `PUT /sendToDevice/{eventType}/{txnId}`.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::users::to_device::{self, Messages};
use axum::Router;
use axum::extract::State;
use ruma::api::client::to_device::send_event_to_device;
use std::collections::BTreeMap;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router.ruma_guest::<send_event_to_device::v3::Request, _, _>(send)
}

/// `PUT /_matrix/client/*/sendToDevice/{eventType}/{txnId}`: send an event to a device or devices.
async fn send(
    State(state): State<AppState>,
    request: Authed<send_event_to_device::v3::Request>,
) -> Result<RumaResponse<send_event_to_device::v3::Response>> {
    let body = &request.body;
    let mut messages = Messages::new();
    for (user_id, devices) in &body.messages {
        let mut contents = BTreeMap::new();
        for (device, raw) in devices {
            let content = serde_json::from_str(raw.json().get())
                .map_err(|error| Error::bad_json(format!("Invalid message content: {error}")))?;
            contents.insert(device.clone(), content);
        }
        messages.insert(user_id.clone(), contents);
    }
    to_device::send(
        &state.pool,
        &state.streams,
        &state.server_name,
        &request.session,
        &body.event_type.to_string(),
        body.txn_id.as_str(),
        &messages,
    )
    .await?;
    Ok(send_event_to_device::v3::Response::new().into())
}
