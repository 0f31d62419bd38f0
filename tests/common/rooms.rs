//! Room steps most tests take on the way to what they check, as a client would take them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::{TestServer, TestUser};
use reqwest::StatusCode;
use serde_json::{Value, json};

impl TestServer {
    /// `POST /createRoom`; returns the room id.
    pub async fn create_room(&self, user: &TestUser, body: Value) -> String {
        let (status, response) = self.post("/_matrix/client/v3/createRoom", user.token(), body).await;
        assert_eq!(status, StatusCode::OK, "{response}");
        response["room_id"].as_str().expect("room_id").to_owned()
    }

    pub async fn join(&self, user: &TestUser, room: &str) {
        let (status, body) =
            self.post(&format!("/_matrix/client/v3/join/{}", encode(room)), user.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{} joining {room}: {body}", user.user_id);
    }

    pub async fn leave(&self, user: &TestUser, room: &str) {
        let (status, body) =
            self.post(&format!("/_matrix/client/v3/rooms/{room}/leave"), user.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{} leaving {room}: {body}", user.user_id);
    }

    /// Sends an `m.text` message; returns its event id.
    pub async fn send_text(&self, user: &TestUser, room: &str, txn: &str, text: &str) -> String {
        self.send_message(user, room, txn, json!({"msgtype": "m.text", "body": text})).await
    }

    /// Sends an `m.room.message` with any content; returns its event id.
    pub async fn send_message(&self, user: &TestUser, room: &str, txn: &str, content: Value) -> String {
        let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        let (status, body) = self.put(&path, user.token(), content.clone()).await;
        assert_eq!(status, StatusCode::OK, "sending {content}: {body}");
        body["event_id"].as_str().expect("event_id").to_owned()
    }

    /// Moves the user's `m.read` receipt to the event.
    pub async fn read_up_to(&self, user: &TestUser, room: &str, event_id: &str) {
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}");
        let (status, body) = self.post(&path, user.token(), json!({})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }

    /// Registers the users named and puts them in a new public room the first creates (with
    /// `create` merged into the createRoom body); returns them and the room.
    pub async fn public_room_of(&self, names: &[&str], password: &str, create: Value) -> (Vec<TestUser>, String) {
        let mut users = Vec::new();
        for name in names {
            users.push(self.register(name, password).await);
        }
        let mut body = json!({"preset": "public_chat"});
        if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), create) {
            body.extend(extra);
        }
        let room = self.create_room(&users[0], body).await;
        for user in &users[1..] {
            self.join(user, &room).await;
        }
        (users, room)
    }
}

/// `m.text` message content.
pub fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

/// The invitee's own member event in an invitation as `/sync` shows it (an entry of
/// `rooms.invite`), from its `invite_state`.
pub fn own_invite_member(invite: &Value, user_id: &str) -> Option<Value> {
    invite["invite_state"]["events"]
        .as_array()?
        .iter()
        .find(|event| event["type"] == "m.room.member" && event["state_key"] == user_id)
        .cloned()
}

/// The ids of the `m.room.message` events in a `/messages` answer's chunk, in its order.
pub fn message_ids(messages: &Value) -> Vec<String> {
    messages["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| event["event_id"].as_str().expect("event_id").to_owned())
        .collect()
}

/// The bodies of the `m.room.message` events in a `/messages` answer's chunk, in its order.
pub fn message_bodies(messages: &Value) -> Vec<String> {
    messages["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|event| event["type"] == "m.room.message")
        .map(|event| event["content"]["body"].as_str().expect("body").to_owned())
        .collect()
}

/// Percent-encodes a path segment or query value (tokens are opaque; aliases hold `#` and `:`;
/// filters are JSON).
pub fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A value for a route placeholder that names nothing of a test's own: ids that name no task,
/// report, token or media (so every request meets the same "not found"), this server for
/// `server_name`, and names made from `tag` (the caller's, e.g. "audit") for what a client
/// chooses itself (event types, transaction ids, tags). `None` for placeholders that must name
/// something real (users, rooms, events...), which the caller fills from its own fixture; the
/// route audits give every new placeholder a value here.
pub fn inert_placeholder(name: &str, tag: &str) -> Option<String> {
    let value = match name {
        "event_type" => format!("org.example.{tag}"),
        "state_key" => tag.to_owned(),
        "txn_id" => format!("{tag}-txn"),
        "room_alias" => format!("#{tag}:hearth.test"),
        "session_id" => format!("{tag}-session"),
        // Room tags (`/user/{user_id}/rooms/{room_id}/tags/{tag}`).
        "tag" => format!("u.{tag}"),
        "rule_id" => format!("{tag}-rule"),
        // Federation transactions (`/_matrix/federation/v1/send/{transaction_id}`).
        "transaction_id" => format!("{tag}-federation-txn"),
        "receipt_type" => "m.read".to_owned(),
        "rel_type" => "m.annotation".to_owned(),
        // Push rules (`/pushrules/global/{kind}/{rule_id}`).
        "kind" => "override".to_owned(),
        // Media (`/media/download/{server_name}/{media_id}/{filename}`): an id that names
        // nothing. Federation (`/_matrix/key/v2/query/{server_name}`): this server, answered
        // locally.
        "server_name" => "hearth.test".to_owned(),
        "media_id" => "nosuchmedia".to_owned(),
        "filename" => "file.txt".to_owned(),
        // Admin API tasks, reports, registration tokens and federation destinations.
        "delete_id" => "nosuchdeletion".to_owned(),
        "purge_id" => "nosuchpurge".to_owned(),
        "report_id" => "999999".to_owned(),
        "token" => "nosuchtoken".to_owned(),
        "destination" => "remote.example".to_owned(),
        // Broadcast lists and broadcasts (`/_hearth/client/v1/broadcast/...`).
        "list_id" => "nosuchlist".to_owned(),
        "broadcast_id" => "nosuchbroadcast".to_owned(),
        // Third-party networks (`/thirdparty/protocol/{protocol}`): none is bridged.
        "protocol" => "irc".to_owned(),
        _ => return None,
    };
    Some(value)
}

/// `path` with each `{placeholder}` replaced by what `value` gives for its name, encoded.
pub fn fill_path(path: &str, value: impl Fn(&str) -> String) -> String {
    let mut filled = String::new();
    let mut rest = path;
    while let Some((before, after)) = rest.split_once('{') {
        let (name, after) = after.split_once('}').expect("placeholders close");
        filled.push_str(before);
        filled.push_str(&encode(&value(name)));
        rest = after;
    }
    filled.push_str(rest);
    filled
}
