//! An XMPP client and a Matrix user in conversation through Hearth: a DM the Matrix side
//! starts (typing ↔ chat states, read receipts ↔ markers) and a Matrix room joined as a MUC.
//! The XMPP side is slixmpp running `tests/clients/xmpp/scenario.py`, which answers each
//! stanza with the next step; the Matrix side is driven over HTTP.

use crate::clients::install::xmpp_scenario_script;
use crate::common::TestServer;
use crate::xmpp::{event, run_script, start};
use serde_json::{Value, json};

/// Incremental syncs of `token` from `since` until `found` holds for a response (or fail).
async fn sync_until(server: &TestServer, token: &str, mut found: impl FnMut(&Value) -> bool) {
    let mut since: Option<String> = None;
    for _ in 0..30 {
        let path = match &since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=2000&since={since}"),
            None => "/_matrix/client/v3/sync".to_owned(),
        };
        let (_, body) = server.get(&path, Some(token)).await;
        if found(&body) {
            return;
        }
        since = body["next_batch"].as_str().map(str::to_owned);
    }
    panic!("the Matrix side never saw it");
}

fn ephemeral<'a>(body: &'a Value, room: &str) -> impl Iterator<Item = &'a Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"].as_array().into_iter().flatten()
}

fn lines_of<'a>(lines: &'a [Value], name: &'a str) -> impl Iterator<Item = &'a Value> {
    lines.iter().filter(move |line| line["event"] == name)
}

#[tokio::test]
async fn a_dm_started_from_matrix_carries_typing_and_read_receipts_both_ways() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let port = xmpp.starttls_port.to_string();
    let args = ["127.0.0.1", &port, "alice@hearth.test", "alice-password", "dm", "bob@hearth.test", "reply from xmpp"];
    let mut room = String::new();
    let mut bob_event = String::new();
    let mut reply_event = String::new();
    let lines = run_script(&xmpp_scenario_script(), &args, async |line| match line["event"].as_str() {
        Some("session") => {
            // Bob starts the DM from Matrix, as Element does: invite with is_direct, then talk.
            let create =
                json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": ["@alice:hearth.test"] });
            let (_, created) = server.post("/_matrix/client/v3/createRoom", bob.token(), create).await;
            room = created["room_id"].as_str().unwrap().to_owned();
            let typing = format!("/_matrix/client/v3/rooms/{room}/typing/@bob:hearth.test");
            let (status, _) = server.put(&typing, bob.token(), json!({ "typing": true, "timeout": 30000 })).await;
            assert!(status.is_success());
            let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/m1");
            let (_, sent) =
                server.put(&send, bob.token(), json!({ "msgtype": "m.text", "body": "hello from matrix" })).await;
            bob_event = sent["event_id"].as_str().unwrap().to_owned();
        }
        Some("reacted") => {
            // Alice's `composing` is typing and her `displayed` marker a read receipt.
            let (mut typing, mut read) = (false, false);
            sync_until(server, &bob.access_token, |body| {
                for edu in ephemeral(body, &room) {
                    typing |= edu["type"] == "m.typing"
                        && edu["content"]["user_ids"].as_array().unwrap().contains(&json!("@alice:hearth.test"));
                    read |= edu["type"] == "m.receipt"
                        && edu["content"][&bob_event]["m.read"]["@alice:hearth.test"].is_object();
                }
                typing && read
            })
            .await;
            let typing = format!("/_matrix/client/v3/rooms/{room}/typing/@bob:hearth.test");
            let (status, _) = server.put(&typing, bob.token(), json!({ "typing": false })).await;
            assert!(status.is_success());
        }
        Some("sent") => {
            let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5");
            let mut found = None;
            for _ in 0..50 {
                let (_, page) = server.get(&path, bob.token()).await;
                found = page["chunk"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|e| e["content"]["body"] == "reply from xmpp")
                    .cloned();
                if found.is_some() {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            let reply = found.expect("alice's reply reaches the room");
            assert_eq!(reply["sender"], "@alice:hearth.test");
            reply_event = reply["event_id"].as_str().unwrap().to_owned();
            let receipt = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{reply_event}");
            let (status, _) = server.post(&receipt, bob.token(), json!({})).await;
            assert!(status.is_success());
        }
        _ => {}
    })
    .await;

    let message = event(&lines, "message").unwrap_or_else(|| panic!("bob's message never reached XMPP: {lines:?}"));
    assert_eq!(message["body"], "hello from matrix");
    assert_eq!(message["id"], bob_event.as_str(), "the message id is the event id");
    assert_eq!(message["stanza_id"], bob_event.as_str());
    assert_eq!(message["markable"], true, "messages ask for displayed markers");
    let states: Vec<&Value> = lines_of(&lines, "chatstate").map(|line| &line["state"]).collect();
    assert_eq!(states, [&json!("composing"), &json!("active")], "bob's typing as chat states: {lines:?}");
    let displayed = event(&lines, "displayed").unwrap_or_else(|| panic!("no read marker: {lines:?}"));
    assert_eq!(displayed["id"], "xmpp-reply-1", "the receipt names the message by the client's own id");
    assert_eq!(displayed["received"], "xmpp-reply-1");
    // The accepted invite: alice is joined, and her m.direct lists the room under bob.
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(joined["joined_rooms"], json!([room]));
    let direct = server.get("/_matrix/client/v3/user/@alice:hearth.test/account_data/m.direct", alice.token()).await;
    assert_eq!(direct.1, json!({ "@bob:hearth.test": [room] }));
}

#[tokio::test]
async fn an_xmpp_client_joins_a_matrix_room_as_a_muc() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let _alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let (status, _) = server
        .put("/_matrix/client/v3/profile/@bob:hearth.test/displayname", bob.token(), json!({ "displayname": "Bob M" }))
        .await;
    assert!(status.is_success());
    // Anyone may set the topic, so that the subject change from XMPP is allowed.
    let topic_for_all = json!({ "events": { "m.room.topic": 0 } });
    let create = json!({
        "preset": "public_chat", "room_alias_name": "lounge", "topic": "Lounge topic",
        "power_level_content_override": topic_for_all,
    });
    let (_, created) = server.post("/_matrix/client/v3/createRoom", bob.token(), create).await;
    let room = created["room_id"].as_str().unwrap().to_owned();
    for (txn, body) in [("h1", "history 1"), ("h2", "history 2")] {
        let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
        server.put(&send, bob.token(), json!({ "msgtype": "m.text", "body": body })).await;
    }
    let port = xmpp.starttls_port.to_string();
    let args = [
        "127.0.0.1",
        &port,
        "alice@hearth.test",
        "alice-password",
        "muc",
        "lounge@conference.hearth.test",
        "Alice X",
        "hello muc",
    ];
    let mut nick_on_matrix = Value::Null;
    let lines = run_script(&xmpp_scenario_script(), &args, async |line| {
        if line["event"] == "groupchat" && line["id"] == "muc-1" {
            // The reflection of alice's message: she is in the room under her nick.
            let member = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@alice:hearth.test");
            nick_on_matrix = server.get(&member, bob.token()).await.1["displayname"].clone();
            let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/live1");
            server.put(&send, bob.token(), json!({ "msgtype": "m.text", "body": "live from matrix" })).await;
        }
    })
    .await;

    let occupants: Vec<&Value> = lines_of(&lines, "occupant").collect();
    assert_eq!(occupants.len(), 3, "bob, alice herself, then alice leaving: {lines:?}");
    assert_eq!(occupants[0]["nick"], "Bob M");
    assert_eq!((&occupants[0]["affiliation"], &occupants[0]["role"]), (&json!("owner"), &json!("moderator")));
    assert_eq!(occupants[0]["jid"], "bob@hearth.test");
    assert_eq!(occupants[1]["nick"], "Alice X");
    assert_eq!(occupants[1]["codes"], json!(["100", "110"]), "self-presence");
    assert_eq!((&occupants[2]["type"], &occupants[2]["codes"]), (&json!("unavailable"), &json!(["110"])));
    let messages: Vec<(&Value, &Value, &Value)> =
        lines_of(&lines, "groupchat").map(|line| (&line["body"], &line["nick"], &line["delayed"])).collect();
    assert_eq!(
        messages,
        [
            (&json!("history 1"), &json!("Bob M"), &json!(true)),
            (&json!("history 2"), &json!("Bob M"), &json!(true)),
            (&json!("hello muc"), &json!("Alice X"), &json!(false)),
            (&json!("live from matrix"), &json!("Bob M"), &json!(false)),
        ],
        "{lines:?}"
    );
    let subjects: Vec<&Value> = lines_of(&lines, "subject").map(|line| &line["subject"]).collect();
    assert_eq!(subjects, [&json!("Lounge topic"), &json!("Set from XMPP")]);
    assert_eq!(nick_on_matrix, "Alice X", "the nick is alice's display name in the room");

    // On Matrix: alice's message, her topic, and her leaving.
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20");
    let (_, page) = server.get(&path, bob.token()).await;
    let chunk = page["chunk"].as_array().unwrap();
    let hello = chunk.iter().find(|e| e["content"]["body"] == "hello muc").expect("alice's message is in the room");
    assert_eq!(hello["sender"], "@alice:hearth.test");
    let reflected = lines_of(&lines, "groupchat").find(|line| line["id"] == "muc-1").unwrap();
    assert_eq!(reflected["stanza_id"], hello["event_id"], "the stanza id is the event id");
    let (_, topic) = server.get(&format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic"), bob.token()).await;
    assert_eq!(topic["topic"], "Set from XMPP");
    let (_, members) = server.get(&format!("/_matrix/client/v3/rooms/{room}/joined_members"), bob.token()).await;
    assert!(members["joined"]["@alice:hearth.test"].is_null(), "leaving the MUC left the room: {members}");
}

/// Sends a text message as `token`'s user; the event id.
async fn say(server: &TestServer, token: Option<&str>, room: &str, txn: &str, body: &str) -> String {
    let send = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}");
    let (_, sent) = server.put(&send, token, json!({ "msgtype": "m.text", "body": body })).await;
    sent["event_id"].as_str().unwrap().to_owned()
}

/// `(event id, sender, body)` of the room's messages as `/messages` serves them, oldest first.
async fn messages_of(server: &TestServer, token: Option<&str>, room: &str) -> Vec<(String, String, String)> {
    let path = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50");
    let (_, page) = server.get(&path, token).await;
    let chunk = page["chunk"].as_array().unwrap().iter().rev().filter(|event| event["type"] == "m.room.message");
    chunk.map(|e| (e["event_id"].to_string(), e["sender"].to_string(), e["content"]["body"].to_string())).collect()
}

/// A DM bob started and alice joined from Matrix, listed in alice's `m.direct`.
async fn joined_dm(server: &TestServer, alice: &crate::common::TestUser, bob: &crate::common::TestUser) -> String {
    let create = json!({ "preset": "trusted_private_chat", "is_direct": true, "invite": ["@alice:hearth.test"] });
    let (_, created) = server.post("/_matrix/client/v3/createRoom", bob.token(), create).await;
    let dm = created["room_id"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/join/{dm}"), alice.token(), json!({})).await;
    let direct = "/_matrix/client/v3/user/@alice:hearth.test/account_data/m.direct";
    server.put(direct, alice.token(), json!({ "@bob:hearth.test": [dm] })).await;
    dm
}

#[tokio::test]
async fn mam_serves_the_one_to_one_and_muc_archives_as_messages_serves_the_rooms() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let dm = joined_dm(server, &alice, &bob).await;
    for (index, body) in ["one", "two", "three", "four", "five"].into_iter().enumerate() {
        let speaker = if index % 2 == 0 { bob.token() } else { alice.token() };
        say(server, speaker, &dm, &format!("d{index}"), body).await;
    }
    let create = json!({ "preset": "public_chat", "room_alias_name": "archive" });
    let (_, created) = server.post("/_matrix/client/v3/createRoom", bob.token(), create).await;
    let muc = created["room_id"].as_str().unwrap().to_owned();
    server.post(&format!("/_matrix/client/v3/join/{muc}"), alice.token(), json!({})).await;
    for body in ["m1", "m2", "m3"] {
        say(server, bob.token(), &muc, body, body).await;
    }

    let port = xmpp.starttls_port.to_string();
    let room_jid = "archive@conference.hearth.test";
    let args = [
        "127.0.0.1",
        &port,
        "alice@hearth.test",
        "alice-password",
        "mam",
        "2",
        "alice@hearth.test",
        "bob@hearth.test",
        room_jid,
        "-",
    ];
    let lines = run_script(&xmpp_scenario_script(), &args, async |_| {}).await;

    let archives: Vec<&Value> = lines_of(&lines, "archive").collect();
    assert_eq!(archives.len(), 2, "{lines:?}");
    let fins: Vec<(&Value, &Value)> = lines_of(&lines, "fin").map(|fin| (&fin["results"], &fin["complete"])).collect();
    let (two, one) = (json!(2), json!(1));
    let (done, more) = (json!(true), json!(false));
    assert_eq!(fins, [(&two, &more), (&two, &more), (&one, &done), (&two, &more), (&one, &done)], "pages of 2");
    for fin in lines_of(&lines, "fin") {
        assert_eq!(fin["queryids"].as_array().unwrap().len(), 1, "results carry their query's id: {fin}");
    }
    for (archive, room) in [(archives[0], &dm), (archives[1], &muc)] {
        let served = messages_of(server, alice.token(), room).await;
        let archived: Vec<(String, String, String)> = archive["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                let sender = match (m["type"].as_str().unwrap(), m["from"].as_str().unwrap()) {
                    ("chat", from) => format!("\"@{}\"", from.replace("@hearth.test", ":hearth.test")),
                    // A MUC message comes from the sender's nick: their localpart without a name.
                    (_, from) => format!("\"@{}:hearth.test\"", from.rsplit('/').next().unwrap()),
                };
                assert_eq!(m["stamped"], true, "{m}");
                (m["archive_id"].to_string(), sender, m["body"].to_string())
            })
            .collect();
        assert_eq!(archived, served, "the archive of {room} is its timeline");
    }
    let bodies: Vec<&Value> = archives[0]["messages"].as_array().unwrap().iter().map(|m| &m["body"]).collect();
    assert_eq!(bodies, ["one", "two", "three", "four", "five"]);
}

#[tokio::test]
async fn carbons_copy_own_messages_from_elsewhere_and_corrections_are_edits_both_ways() {
    let xmpp = start().await;
    let server = &xmpp.server;
    let alice = server.register("alice", "alice-password").await;
    let bob = server.register("bob", "bob-password").await;
    let dm = joined_dm(server, &alice, &bob).await;
    let port = xmpp.starttls_port.to_string();
    let args = ["127.0.0.1", &port, "alice@hearth.test", "alice-password", "carbons", "bob@hearth.test"];
    let mut bob_event = String::new();
    let mut edit = Value::Null;
    let lines = run_script(&xmpp_scenario_script(), &args, async |line| match line["event"].as_str() {
        // Alice writes from another device (her Matrix client): this resource gets a carbon.
        Some("ready") => drop(say(server, alice.token(), &dm, "elsewhere", "from another device").await),
        Some("corrected") => {
            for _ in 0..50 {
                let path = format!("/_matrix/client/v3/rooms/{dm}/messages?dir=b&limit=10");
                let (_, page) = server.get(&path, bob.token()).await;
                let chunk = page["chunk"].as_array().unwrap();
                let original = chunk.iter().find(|e| e["content"]["body"] == "tpyo").map(|e| e["event_id"].clone());
                let edited = chunk.iter().find(|e| e["content"]["m.new_content"]["body"] == "typo fixed");
                if let (Some(original), Some(edited)) = (original, edited) {
                    edit = json!({ "relates_to": edited["content"]["m.relates_to"], "original": original });
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            bob_event = say(server, bob.token(), &dm, "b1", "bob says").await;
            let correction = json!({
                "msgtype": "m.text", "body": "* bob says, edited",
                "m.new_content": { "msgtype": "m.text", "body": "bob says, edited" },
                "m.relates_to": { "rel_type": "m.replace", "event_id": bob_event },
            });
            server.put(&format!("/_matrix/client/v3/rooms/{dm}/send/m.room.message/b2"), bob.token(), correction).await;
        }
        _ => {}
    })
    .await;

    let carbon = event(&lines, "carbon").unwrap_or_else(|| panic!("no carbon: {lines:?}"));
    assert_eq!((&carbon["body"], &carbon["to"]), (&json!("from another device"), &json!("bob@hearth.test")));
    assert_eq!(edit["relates_to"], json!({ "rel_type": "m.replace", "event_id": edit["original"] }), "{edit}");
    let corrections: Vec<&Value> = lines_of(&lines, "message").filter(|line| !line["replace"].is_null()).collect();
    assert_eq!(corrections.len(), 1, "{lines:?}");
    assert_eq!(corrections[0]["body"], "bob says, edited");
    assert_eq!(corrections[0]["replace"], bob_event.as_str(), "the correction names bob's message by its id");
}
