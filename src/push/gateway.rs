//! What a push gateway is sent (`POST /_matrix/push/v1/notify`, the Push Gateway API), and
//! what its answer means.

use crate::net::{OutboundClient, OutboundError};
use reqwest::Method;
use ruma::api::push_gateway::send_event_notification::v1::{
    Device, Notification, NotificationCounts, NotificationPriority, PusherData, Request, Response,
};
use ruma::api::{IncomingResponseExt, OutgoingRequestExt};
use ruma::events::TimelineEventType;
use ruma::push::{Action, HighlightTweakValue, HttpPusherData, PushFormat, Tweak};
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, SecondsSinceUnixEpoch, UInt};
use serde_json::value::RawValue;

/// The pusher a notification goes to, as the gateway needs it.
pub(crate) struct Target<'a> {
    /// Whose pusher it is: the user being notified.
    pub user_id: &'a str,
    pub app_id: &'a str,
    pub pushkey: &'a str,
    /// When the pushkey was set, in milliseconds.
    pub pushkey_ts: i64,
    /// The pusher's `data` as the client set it (with `url`).
    pub data: &'a serde_json::Value,
}

/// The event a notification is about, with the context a gateway shows.
pub(crate) struct PushedEvent {
    pub event_id: OwnedEventId,
    pub room_id: OwnedRoomId,
    pub event_type: String,
    pub sender: OwnedUserId,
    pub state_key: Option<String>,
    /// `None` once the event is redacted: the gateway is not given what was removed.
    pub content: Option<Box<RawValue>>,
    pub sender_display_name: Option<String>,
    pub room_name: Option<String>,
}

/// The request for one notification. `unread` is the user's count of unread notifications
/// across their rooms; `actions` are what the user's push rules decided for the event, whose
/// tweaks (sound, highlight) travel with the device.
pub(crate) fn notification(target: &Target<'_>, event: &PushedEvent, unread: u64, actions: &[Action]) -> Request {
    let http_data: Option<HttpPusherData> = serde_json::from_value(target.data.clone()).ok();
    let event_id_only = http_data.as_ref().and_then(|data| data.format.as_ref()) == Some(&PushFormat::EventIdOnly);
    let tweaks: Vec<Tweak> = actions
        .iter()
        .filter_map(|action| match action {
            Action::SetTweak(tweak) => Some(tweak.clone()),
            _ => None,
        })
        .collect();
    // As Synapse: a push that sounds or highlights, or whose effect is unknown because the
    // event is encrypted, wakes the device; anything else may wait for a convenient moment.
    let urgent = event.event_type == "m.room.encrypted"
        || tweaks.iter().any(|tweak| {
            matches!(tweak, Tweak::Sound(_)) || matches!(tweak, Tweak::Highlight(HighlightTweakValue::Yes))
        });

    let mut device = Device::new(target.app_id.to_owned(), target.pushkey.to_owned());
    device.pushkey_ts = UInt::try_from(target.pushkey_ts / 1000).ok().map(SecondsSinceUnixEpoch);
    // The client's data minus `url`, which the gateway knows already (spec: PusherData).
    device.data = http_data.map(PusherData::from).unwrap_or_default();

    let mut notification = Notification::new(Vec::new());
    notification.event_id = Some(event.event_id.clone());
    notification.room_id = Some(event.room_id.clone());
    notification.counts = NotificationCounts::new(UInt::try_from(unread).unwrap_or(UInt::MAX), UInt::MIN);
    notification.prio = if urgent { NotificationPriority::High } else { NotificationPriority::Low };
    // `event_id_only` asks for nothing about the event beyond its id (the app fetches it),
    // and, as Synapse sends it, no tweaks either.
    if !event_id_only {
        device.tweaks = tweaks;
        notification.event_type = Some(TimelineEventType::from(event.event_type.as_str()));
        notification.sender = Some(event.sender.clone());
        notification.sender_display_name = event.sender_display_name.clone().filter(|name| !name.is_empty());
        notification.room_name = event.room_name.clone().filter(|name| !name.is_empty());
        notification.user_is_target =
            event.event_type == "m.room.member" && event.state_key.as_deref() == Some(target.user_id);
        notification.content = event.content.clone();
    }
    notification.devices = vec![device];
    Request::new(notification)
}

/// How a gateway answered.
#[derive(Debug)]
pub(crate) enum Answer {
    /// It took the notification (2xx). `rejected` lists pushkeys it says are no longer valid.
    Accepted { rejected: Vec<String> },
    /// It did not (error status, unreachable, timeout, refused destination): retry later.
    Failed(String),
}

/// Posts `request` to the gateway at `url` (the pusher's `data.url`, whose path has been
/// checked to be the notify endpoint).
pub(crate) async fn post(client: &OutboundClient, url: &str, request: Request) -> Answer {
    let answer = send(client, url, request).await;
    crate::telemetry::push_delivery(matches!(answer, Answer::Accepted { .. }));
    answer
}

async fn send(client: &OutboundClient, url: &str, request: Request) -> Answer {
    let http_request = match request.try_into_http_request::<Vec<u8>>("http://gateway.invalid", (), ()) {
        Ok(http_request) => http_request,
        Err(error) => return Answer::Failed(format!("building the request: {error}")),
    };
    let builder = match client.request(Method::POST, url) {
        Ok(builder) => builder.headers(http_request.headers().clone()).body(http_request.into_body()),
        Err(error) => return Answer::Failed(error.to_string()),
    };
    let response = match client.send(builder).await {
        Ok(response) => response,
        Err(OutboundError::Refused(destination)) => {
            return Answer::Failed(format!("refused destination {destination}"));
        }
        Err(error) => return Answer::Failed(error.to_string()),
    };
    let status = response.status();
    if !status.is_success() {
        return Answer::Failed(format!("the gateway answered {status}"));
    }
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(error) => return Answer::Failed(format!("reading the gateway's answer: {error}")),
    };
    // A 2xx means the gateway took it; a body without a readable `rejected` list rejects
    // nothing (resending would only duplicate the push).
    let rejected = http::Response::builder()
        .status(status.as_u16())
        .body(body.as_ref())
        .ok()
        .and_then(|answer| Response::try_from_http_response(answer).ok())
        .map(|answer| answer.rejected)
        .unwrap_or_default();
    Answer::Accepted { rejected }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruma::push::SoundTweakValue;
    use serde_json::json;

    fn event(event_type: &str) -> PushedEvent {
        PushedEvent {
            event_id: "$event".try_into().expect("event id"),
            room_id: "!room:example.org".try_into().expect("room id"),
            event_type: event_type.to_owned(),
            sender: "@alice:example.org".try_into().expect("user id"),
            state_key: None,
            content: Some(RawValue::from_string(r#"{"body":"hi","msgtype":"m.text"}"#.to_owned()).expect("json")),
            sender_display_name: Some("Alice".to_owned()),
            room_name: Some("Tea".to_owned()),
        }
    }

    fn body(request: Request) -> serde_json::Value {
        let http = request.try_into_http_request::<Vec<u8>>("http://gateway.invalid", (), ()).expect("request");
        serde_json::from_slice(http.body()).expect("json body")
    }

    #[test]
    fn the_full_format_carries_the_event_counts_data_without_url_and_tweaks() {
        let data = json!({"url": "https://push.example/_matrix/push/v1/notify", "brand": "tea"});
        let target = Target {
            user_id: "@bob:example.org",
            app_id: "org.example.app",
            pushkey: "key",
            pushkey_ts: 1_700_000_000_123,
            data: &data,
        };
        let actions = vec![
            Action::Notify,
            Action::SetTweak(Tweak::Sound(SoundTweakValue::Default)),
            Action::SetTweak(Tweak::Highlight(HighlightTweakValue::No)),
        ];
        let sent = body(notification(&target, &event("m.room.message"), 3, &actions));
        assert_eq!(
            sent,
            json!({"notification": {
                "event_id": "$event", "room_id": "!room:example.org", "type": "m.room.message",
                "sender": "@alice:example.org", "sender_display_name": "Alice", "room_name": "Tea",
                "content": {"body": "hi", "msgtype": "m.text"},
                "counts": {"unread": 3},
                "devices": [{"app_id": "org.example.app", "pushkey": "key", "pushkey_ts": 1_700_000_000,
                             "data": {"brand": "tea"}, "tweaks": {"sound": "default", "highlight": false}}],
            }})
        );
    }

    #[test]
    fn event_id_only_sends_ids_counts_and_priority() {
        let data = json!({"url": "https://push.example/_matrix/push/v1/notify", "format": "event_id_only"});
        let target =
            Target { user_id: "@bob:example.org", app_id: "app", pushkey: "key", pushkey_ts: 5_000, data: &data };
        let sent = body(notification(&target, &event("m.room.message"), 1, &[Action::Notify]));
        assert_eq!(
            sent,
            json!({"notification": {
                "event_id": "$event", "room_id": "!room:example.org", "prio": "low", "counts": {"unread": 1},
                "devices": [{"app_id": "app", "pushkey": "key", "pushkey_ts": 5, "data": {"format": "event_id_only"}}],
            }})
        );
    }
}
