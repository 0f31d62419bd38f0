//! What one message costs the database per member it wakes: the statements counted by
//! PostgreSQL's `pg_stat_statements` (the test cluster preloads it) while one message reaches
//! a room's waiting long-polls, divided by the members woken. A count of statements does not
//! depend on the machine's load, so it guards fan-out's cost in CI (docs/PERFORMANCE.md).

use crate::common;
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Members waiting in the room besides the sender: enough that the per-member cost stands out
/// from the send's own statements, few enough to stay lean.
const MEMBERS: usize = 12;

/// The filter `hearth-bench fanout` syncs with: the room's messages only, members lazily.
fn bench_filter(room: &str) -> String {
    let filter = json!({
        "room": {
            "rooms": [room],
            "timeline": {"limit": 30, "types": ["m.room.message"]},
            "state": {"lazy_load_members": true},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    });
    encode(&filter.to_string())
}

async fn sync(server: &TestServer, user: &TestUser, filter: &str, since: Option<&str>, timeout_ms: u64) -> Value {
    let since = since.map(|since| format!("&since={since}")).unwrap_or_default();
    let path = format!("/_matrix/client/v3/sync?filter={filter}&timeout={timeout_ms}{since}");
    let (status, body) = server.request(Method::GET, &path, user.token(), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

fn messages(answer: &Value, room: &str) -> Vec<String> {
    answer["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .map(|events| events.iter().filter_map(|event| event["content"]["body"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Each member's long-poll from its token, once every one of them waits (registered under
/// the room and itself).
async fn long_polls(
    server: &TestServer,
    members: &[(&TestUser, &str)],
    since: &[String],
) -> Vec<tokio::task::JoinHandle<(StatusCode, Value)>> {
    let polls: Vec<_> = members
        .iter()
        .zip(since)
        .map(|((member, filter), since)| {
            let (http, base, token) = (server.http.clone(), server.base_url.clone(), member.access_token.clone());
            let url = format!("{base}/_matrix/client/v3/sync?filter={filter}&timeout=30000&since={since}");
            tokio::spawn(async move { send_json(&http, Method::GET, &url, Some(&token), None).await })
        })
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while server.state.streams.notifier.registrations() < 2 * members.len() {
        assert!(tokio::time::Instant::now() < deadline, "the members' long-polls never waited");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    polls
}

/// Every long-poll answers with the one message `body`, and each member's token moves on.
/// Returns the answers, in the members' order.
async fn each_gets_once(
    polls: Vec<tokio::task::JoinHandle<(StatusCode, Value)>>,
    since: &mut [String],
    room: &str,
    body: &str,
) -> Vec<Value> {
    let mut answers = Vec::with_capacity(polls.len());
    for (poll, since) in polls.into_iter().zip(since.iter_mut()) {
        let (status, answer) = poll.await.unwrap();
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(messages(&answer, room), vec![body.to_owned()], "each member gets the message once: {answer}");
        *since = answer["next_batch"].as_str().unwrap().to_owned();
        answers.push(answer);
    }
    answers
}

/// One message to a room of waiting long-polls: each member gets it exactly once, and the woken
/// members' syncs cost the database a few statements together, however many they are (their
/// window news is asked in one statement; the room's timeline page is read once for all of
/// them; their next long-polls, at the empty window after the message, ask nothing).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn woken_members_cost_few_statements_together() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let names: Vec<String> = (0..=MEMBERS).map(|n| format!("fan{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (users, room) = server.public_room_of(&names, "password-fan", json!({})).await;
    let filter = bench_filter(&room);
    let (sender, members) = users.split_first().unwrap();

    // Two warm rounds: the first sync of a member and the first wake-up fill the caches a
    // running server has filled long since; the measured round is the third, from its message
    // until the members wait again (in the fourth).
    let mut since = Vec::new();
    for member in members {
        since.push(sync(&server, member, &filter, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }
    let waiting: Vec<(&TestUser, &str)> = members.iter().map(|member| (member, filter.as_str())).collect();
    let mut measured = None;
    for round in 0..4 {
        let polls = long_polls(&server, &waiting, &since).await;
        if round == 3 {
            measured = Some(common::statements::statements(&server).await);
        }
        if round == 2 {
            common::statements::reset(&server).await;
        }
        let body = format!("message {round}");
        server.send_text(sender, &room, &format!("fan-{round}"), &body).await;
        each_gets_once(polls, &mut since, &room, &body).await;
    }
    let statements = measured.unwrap();
    let (total, listing) = common::statements::listing(&statements);
    // The members and the sender were authenticated before: their tokens are known, and no
    // request of the round looks one up.
    let ran = |fragment: &str| common::statements::calls(&statements, fragment);
    assert_eq!(ran("FROM access_tokens t"), 0, "a known token was looked up again:\n{listing}");
    // Each look samples the stream's bounds (two statements). The message's commit is the one
    // change of the round: the woken looks share one read made after it, and the members' next
    // long-polls, with nothing announced since, share it too. A little slack for a read made
    // while the commit was being announced.
    let requests = MEMBERS as i64 + 1;
    let bounds_reads = ran("SELECT min(blocking_from) FROM stream_writers");
    assert!(
        bounds_reads <= 3,
        "the stream's bounds were read {bounds_reads} times for {requests} requests and one change:\n{listing}"
    );
    let per_request =
        |statement: &str| statement.contains("FROM stream_positions") || statement.contains("FROM stream_writers");
    let most = statements
        .iter()
        .filter(|(_, statement)| !per_request(statement))
        .map(|(calls, _)| *calls)
        .max()
        .unwrap_or_default();
    println!(
        "one message to {MEMBERS} waiting members: {total} statements; beside the bounds none more than {most} times\n{listing}"
    );
    assert!(total > 0, "the fan-out reached the database");
    // The window news runs once per batch of syncs asking at once (how the wake-ups and the
    // next long-polls fall into batches depends on scheduling), the timeline page once; the
    // rest is the send's. Before batching, the news ran twice per member.
    assert!(most < MEMBERS as i64, "a statement ran {most} times for {MEMBERS} woken members:\n{listing}");
}

/// The window news statement, as `pg_stat_statements` shows it.
const WINDOW_NEWS: &str = "WITH q AS MATERIALIZED";

/// A client syncing again from the token it was just given, with nothing new since, holds an
/// empty window: its long-poll waits (or, with no timeout, answers empty) without asking the
/// database what the window holds. Anything that arrives then still reaches it at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_from_the_newest_token_asks_nothing_of_an_empty_window() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let (users, room) = server.public_room_of(&["alice", "bob"], "password-empty", json!({})).await;
    let filter = bench_filter(&room);
    let (alice, bob) = (&users[0], &users[1]);
    let first = sync(&server, bob, &filter, None, 0).await;
    let mut since = first["next_batch"].as_str().unwrap().to_owned();
    // The first incremental sync learns the memberships it may trust through the window's end.
    since = sync(&server, bob, &filter, Some(&since), 0).await["next_batch"].as_str().unwrap().to_owned();

    common::statements::reset(&server).await;
    for _ in 0..5 {
        let answer = sync(&server, bob, &filter, Some(&since), 0).await;
        assert_eq!(answer["next_batch"].as_str(), Some(since.as_str()), "nothing moved: {answer}");
        assert!(answer.get("rooms").is_none_or(|rooms| rooms["join"].as_object().is_none_or(|join| join.is_empty())));
    }
    let statements = common::statements::statements(&server).await;
    let (_, listing) = common::statements::listing(&statements);
    let news = common::statements::calls(&statements, WINDOW_NEWS);
    assert_eq!(news, 0, "five syncs of an empty window asked what it holds:\n{listing}");

    // A long-poll on that empty window still wakes for a message, and gets it once.
    let (http, base, token) = (server.http.clone(), server.base_url.clone(), bob.access_token.clone());
    let url = format!("{base}/_matrix/client/v3/sync?filter={filter}&timeout=30000&since={since}");
    let poll = tokio::spawn(async move { send_json(&http, Method::GET, &url, Some(&token), None).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.send_text(alice, &room, "after-empty", "after the empty windows").await;
    let (status, answer) = tokio::time::timeout(Duration::from_secs(10), poll).await.unwrap().unwrap();
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(messages(&answer, &room), vec!["after the empty windows".to_owned()], "{answer}");
}

/// The timeline page statement (`db::events::timeline_page_matching`), as
/// `pg_stat_statements` shows it.
const TIMELINE_PAGE: &str = "LIKE ANY($5)) AND NOT (e.event_type LIKE ANY($6))";

/// Page reads since the last reset, with the statements' listing for a failure message.
async fn page_reads(server: &TestServer) -> (i64, String) {
    let statements = common::statements::statements(server).await;
    let (_, listing) = common::statements::listing(&statements);
    (common::statements::calls(&statements, TIMELINE_PAGE), listing)
}

/// A room's filter with its own timeline limit (otherwise the load tool's).
fn filter_with_limit(room: &str, limit: u32) -> String {
    let filter = json!({
        "room": {"rooms": [room], "timeline": {"limit": limit}, "state": {"lazy_load_members": true}},
        "presence": {"not_types": ["*"]},
    });
    encode(&filter.to_string())
}

/// Members whose clients ask different timeline limits (Element asks 20, others 50 or more
/// than a hundred) still share the read of the window one message woke them for: it holds
/// that one message, whatever each would have allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_asking_different_timeline_limits_share_the_windows_read() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let names: Vec<String> = (0..=6).map(|n| format!("limit{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (users, room) = server.public_room_of(&names, "password-limits", json!({})).await;
    let (sender, members) = users.split_first().unwrap();
    let filters: Vec<String> =
        [5, 20, 150, 300, 50, 1000].iter().map(|limit| filter_with_limit(&room, *limit)).collect();
    let waiting: Vec<(&TestUser, &str)> =
        members.iter().zip(&filters).map(|(member, filter)| (member, filter.as_str())).collect();
    let mut since = Vec::new();
    for (member, filter) in &waiting {
        since.push(sync(&server, member, filter, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }
    // A warm round first (a first incremental sync learns what it may trust of its memberships).
    for round in 0..2 {
        let polls = long_polls(&server, &waiting, &since).await;
        common::statements::reset(&server).await;
        let body = format!("limits {round}");
        server.send_text(sender, &room, &format!("limits-{round}"), &body).await;
        each_gets_once(polls, &mut since, &room, &body).await;
    }
    let (reads, listing) = page_reads(&server).await;
    assert_eq!(reads, 1, "six members woken by one message read its window {reads} times:\n{listing}");
}

/// A live window's page costs what its few events cost, not what the room's history does:
/// the statement's lower end bounds the index scan (it was a filter, and the generic plan
/// read every earlier event of the room to find the one that was new).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_windows_read_does_not_grow_with_the_rooms_history() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let (users, room) = server.public_room_of(&["historian", "reader"], "password-history", json!({})).await;
    let (sender, reader) = (&users[0], &users[1]);
    for n in 0..400 {
        server.send_text(sender, &room, &format!("history-{n}"), &format!("history {n}")).await;
    }
    let filter = filter_with_limit(&room, 20);
    let mut since = sync(&server, reader, &filter, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    common::statements::reset(&server).await;
    for n in 0..3 {
        let body = format!("live {n}");
        server.send_text(sender, &room, &format!("live-{n}"), &body).await;
        let answer = sync(&server, reader, &filter, Some(&since), 0).await;
        assert_eq!(messages(&answer, &room), vec![body], "{answer}");
        since = answer["next_batch"].as_str().unwrap().to_owned();
    }
    let (reads, buffers) = common::statements::buffers(&server, TIMELINE_PAGE).await;
    assert_eq!(reads, 3, "one page read per sync");
    // An index probe and the new event's rows: a handful of buffers. Scanning the 400 earlier
    // events touched 57 per read.
    assert!(buffers / reads <= 20, "a one-event window's read touched {} buffers", buffers / reads);
}

/// A member catching up on more events than a shared page keeps (here 120, with a limit of
/// 150) gets them all from one read: the page too large to keep is still its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_catch_up_too_large_to_share_is_read_once() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let (users, room) = server.public_room_of(&["chatty", "returning"], "password-catch-up", json!({})).await;
    let (sender, reader) = (&users[0], &users[1]);
    let filter = filter_with_limit(&room, 150);
    let since = sync(&server, reader, &filter, None, 0).await["next_batch"].as_str().unwrap().to_owned();
    let sent: Vec<String> = (0..120).map(|n| format!("while away {n}")).collect();
    for (n, body) in sent.iter().enumerate() {
        server.send_text(sender, &room, &format!("away-{n}"), body).await;
    }
    common::statements::reset(&server).await;
    let answer = sync(&server, reader, &filter, Some(&since), 0).await;
    assert_eq!(messages(&answer, &room), sent, "every message missed, once, in order");
    let (reads, listing) = page_reads(&server).await;
    assert_eq!(reads, 1, "one catch-up read its window {reads} times:\n{listing}");
}

/// Every statement reading some keyed entries of a state snapshot without their redactions
/// (`db::state::snapshot_state_for_keys`: a lazy-loading sync's member events).
fn keyed_state_reads(statements: &[(i64, String)]) -> i64 {
    let keyed = |query: &str| query.contains("wanted AS MATERIALIZED") && !query.contains("redaction_json");
    statements.iter().filter(|(_, query)| keyed(query)).map(|(calls, _)| calls).sum()
}

/// The redaction lookup of events served without a redaction flag (`db::relations::redactions_of`).
const REDACTIONS_OF: &str = "SELECT t.nid AS target_nid";

/// A member who never spoke sends their first message to a room of waiting lazy-loading
/// members: each member's answer carries the speaker's member event (the client has not seen
/// it), read once for all of them, and whether a redaction applies to it asked once — not once
/// per member, all in the same instant (measured at 200 members: 200 lookups and 21 reads of
/// the same event, the slowest message of a fan-out run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_speakers_member_event_is_read_once_for_the_whole_room() {
    let server = TestServer::start().await;
    common::statements::enable(&server).await;
    let names: Vec<String> = (0..=MEMBERS + 1).map(|n| format!("speak{n}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let (users, room) = server.public_room_of(&names, "password-speak", json!({})).await;
    let filter = bench_filter(&room);
    let (regular, quiet, members) = (&users[0], &users[1], &users[2..]);
    let mut since = Vec::new();
    for member in members {
        since.push(sync(&server, member, &filter, None, 0).await["next_batch"].as_str().unwrap().to_owned());
    }
    let waiting: Vec<(&TestUser, &str)> = members.iter().map(|member| (member, filter.as_str())).collect();
    // A warm round from the member who speaks regularly.
    let polls = long_polls(&server, &waiting, &since).await;
    server.send_text(regular, &room, "speak-warm", "warm").await;
    each_gets_once(polls, &mut since, &room, "warm").await;

    let polls = long_polls(&server, &waiting, &since).await;
    common::statements::reset(&server).await;
    server.send_text(quiet, &room, "speak-first", "first words").await;
    let answers = each_gets_once(polls, &mut since, &room, "first words").await;
    let statements = common::statements::statements(&server).await;
    let (_, listing) = common::statements::listing(&statements);
    for answer in &answers {
        let state = answer["rooms"]["join"][&room]["state"]["events"].as_array().cloned().unwrap_or_default();
        let speaker = state.iter().find(|event| {
            event["type"] == "m.room.member" && event["state_key"].as_str() == Some(quiet.user_id.as_str())
        });
        let speaker = speaker.unwrap_or_else(|| panic!("the new speaker's member event is missing: {answer}"));
        assert_eq!(speaker["content"]["membership"], "join", "{speaker}");
    }
    let reads = keyed_state_reads(&statements);
    assert!(reads <= 1, "the speaker's member event was read {reads} times for {MEMBERS} members:\n{listing}");
    let lookups = common::statements::calls(&statements, REDACTIONS_OF);
    assert!(lookups <= 1, "its redactions were looked up {lookups} times for {MEMBERS} members:\n{listing}");
}
