//! Blocking (XEP-0191) is Hearth's blocking: alice blocks carol from Matrix and bob from XMPP,
//! and both lists agree; a message to bob is refused with `<blocked/>`, nothing carol says
//! reaches XMPP while dave (not blocked) gets through, and unblocking from XMPP lifts the
//! Matrix block.

use crate::clients::install::xmpp_scenario_script;
use crate::common::{TestServer, TestUser};
use crate::xmpp::{event, run_script, start};
use serde_json::{Value, json};

/// A DM room of `user` with `partner`, listed in `user`'s `m.direct` as Matrix clients do.
async fn direct_room(server: &TestServer, user: &TestUser, partner: &TestUser) -> String {
    let create = json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": [partner.user_id] });
    let (_, created) = server.post("/_matrix/client/v3/createRoom", user.token(), create).await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    let (status, _) = server.post(&format!("/_matrix/client/v3/join/{room}"), partner.token(), json!({})).await;
    assert!(status.is_success());
    room
}

async fn say(server: &TestServer, from: &TestUser, room: &str, text: &str) {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{}", text.replace(' ', "-"));
    let (status, body) = server.put(&path, from.token(), json!({ "msgtype": "m.text", "body": text })).await;
    assert!(status.is_success(), "{body}");
}

async fn matrix_block_list(server: &TestServer, user: &TestUser) -> Value {
    server.get("/_hearth/client/v1/block", user.token()).await.1["blocked"].clone()
}

#[tokio::test]
async fn blocks_set_on_either_side_hold_on_both() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let carol = server.register("carol", "carol-password").await;
    let dave = server.register("dave", "dave-password").await;
    let with_carol = direct_room(server, &alice, &carol).await;
    let with_dave = direct_room(server, &alice, &dave).await;
    let direct = json!({ "@carol:hearth.test": [with_carol], "@dave:hearth.test": [with_dave] });
    let path = "/_matrix/client/v3/user/@alice:hearth.test/account_data/m.direct";
    assert!(server.put(path, alice.token(), direct).await.0.is_success());
    let (status, _) = server.put("/_hearth/client/v1/block/@carol:hearth.test", alice.token(), json!({})).await;
    assert!(status.is_success());

    let port = xmpp.starttls_port.to_string();
    let (block, unblock, marker) = ("bob@hearth.test", "carol@hearth.test", "dave@hearth.test");
    let args = ["127.0.0.1", &port, "alice@hearth.test", "alice-password", "block", block, unblock, marker];
    let mut both_lists = Value::Null;
    let lines = run_script(&xmpp_scenario_script(), &args, async |line| {
        if line["event"] == "ready" {
            both_lists = matrix_block_list(server, &alice).await;
            // Carol first: had her message been delivered, it would come before dave's.
            say(server, &carol, &with_carol, "while blocked").await;
            say(server, &dave, &with_dave, "marker").await;
        }
    })
    .await;

    let lists: Vec<&Value> = lines.iter().filter(|line| line["event"] == "blocklist").map(|l| &l["items"]).collect();
    assert_eq!(lists, [&json!([unblock]), &json!([block, unblock]), &json!([block])], "{lines:?}");
    assert_eq!(event(&lines, "block").unwrap()["type"], "result");
    assert_eq!(event(&lines, "unblock").unwrap()["type"], "result");
    let bounce = event(&lines, "bounce").unwrap_or_else(|| panic!("the message to bob was not refused: {lines:?}"));
    assert_eq!(bounce, &json!({ "event": "bounce", "condition": "not-acceptable", "blocked": true }));
    assert_eq!(both_lists, json!(["@bob:hearth.test", "@carol:hearth.test"]), "the XMPP block is the Matrix block");
    let messages: Vec<&Value> = lines.iter().filter(|line| line["event"] == "message").collect();
    assert_eq!(messages, [&json!({ "event": "message", "from_": marker, "body": "marker" })], "{lines:?}");
    assert_eq!(matrix_block_list(server, &alice).await, json!(["@bob:hearth.test"]), "unblocked from XMPP");
    // Nothing alice sent to bob reached him: his DM invite never came.
    let (_, sync) = server.get("/_matrix/client/v3/sync", bob.token()).await;
    assert_eq!(sync["rooms"]["invite"].as_object().map_or(0, |rooms| rooms.len()), 0, "{sync}");
}
