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
        let (status, body) = self
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                user.token(),
                json!({"msgtype": "m.text", "body": text}),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "sending {text:?}: {body}");
        body["event_id"].as_str().expect("event_id").to_owned()
    }
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
