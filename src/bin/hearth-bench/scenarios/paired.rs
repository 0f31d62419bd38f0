//! `paired`: P pairs of users, each pair in its own private room. Every user sends M
//! messages to its partner while reading the partner's through a long-polling `/sync` loop,
//! as two chat clients do. Each message's delivery latency runs from the start of its `PUT`
//! until the partner's `/sync` answer that contains it has arrived; the validity check proves
//! that every message arrived exactly once, in its sender's order, with its body unchanged.

use crate::client::{MatrixClient, answer_text};
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::stats::PhaseResult;
use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, Url};
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// How long a `/sync` waits for news, as real clients do.
const SYNC_TIMEOUT_MS: &str = "30000";
/// Far above what one long-poll can collect from one sender that sends one message at a time,
/// so that a `limited` timeline means the server dropped events rather than a busy moment.
const TIMELINE_LIMIT: u32 = 100;
/// Once every message has been sent, how long readers keep waiting for missing ones before the
/// run is declared invalid: more than one whole long-poll, so a slow wake-up is not a loss.
const DELIVERY_GRACE: Duration = Duration::from_secs(45);
/// Registrations and room set-up run a few at a time: on a 2-core machine more parallelism
/// only queues requests (and password hashing) without finishing sooner.
const SETUP_CONCURRENCY: usize = 4;
/// The content key that numbers a sender's messages, so that the reader can tell a lost,
/// repeated, reordered or altered message apart without trusting the body it checks.
const SEQUENCE_KEY: &str = "hearth_bench_seq";
/// At most this many validity problems are listed; the counts cover all of them.
const MAX_LISTED_PROBLEMS: usize = 20;

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PairedParameters {
    pub pairs: u32,
    pub messages: u32,
    pub interval_ms: u64,
}

/// What the validity check found on one server. `valid` is true only when every message was
/// delivered exactly once, in order and unaltered.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Validity {
    pub valid: bool,
    pub expected: u64,
    pub delivered: u64,
    pub missing: u64,
    pub duplicates: u64,
    pub out_of_order: u64,
    pub altered: u64,
    /// The first problems found, in words.
    pub problems: Vec<String>,
}

/// The figures of one server.
#[derive(Clone, Debug, Serialize)]
pub struct PairedRun {
    pub homeserver: String,
    /// Delivery latency (send start → partner's `/sync` returned) and delivered messages/s
    /// over the whole phase, from the first send to the last delivery.
    pub phase: PhaseResult,
    pub validity: Validity,
    /// `/sync` requests made by all readers during the phase.
    pub sync_requests: u64,
}

/// One side of a pair: the user, its room and its partner.
#[derive(Clone)]
struct Member {
    user: Arc<BenchUser>,
    partner_id: String,
    room_id: String,
    /// The `next_batch` of an initial `/sync` taken before the phase starts.
    since: String,
}

/// Send start times by (sender, sequence number), written before each `PUT` starts so that a
/// reader can never see an event whose start is not recorded yet.
type SendStarts = Arc<Mutex<HashMap<(String, u32), Instant>>>;

pub async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: PairedParameters,
) -> Result<PairedRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    eprintln!("{server}: registering {} users in {} private rooms", 2 * parameters.pairs, parameters.pairs);
    let members = provision(client, registration, prefix, parameters.pairs).await?;

    eprintln!(
        "{server}: {} users each send {} messages and read their partner's over /sync",
        members.len(),
        parameters.messages
    );
    measure(client, prefix, parameters, members).await.map(|(phase, validity, sync_requests)| PairedRun {
        homeserver: server,
        phase,
        validity,
        sync_requests,
    })
}

/// Registers both users of every pair, creates the pair's room with the partner invited, joins
/// the partner and takes each user's initial `/sync` token.
async fn provision(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    pairs: u32,
) -> Result<Vec<Member>> {
    let limit = Arc::new(Semaphore::new(SETUP_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for pair in 0..pairs {
        let (client, registration, prefix, limit) =
            (client.clone(), registration.clone(), prefix.clone(), limit.clone());
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.map_err(|_| anyhow!("the set-up was stopped"))?;
            provision_pair(&client, &registration, &prefix, pair).await
        });
    }
    let mut members = Vec::with_capacity(2 * pairs as usize);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(Ok(pair)) => members.extend(pair),
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow!("a set-up task ended abnormally: {error}")),
        }
    }
    Ok(members)
}

async fn provision_pair(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    pair: u32,
) -> Result<[Member; 2]> {
    let first = register_user(client, registration, &prefix.localpart(&format!("p{pair}a"))).await?;
    let second = register_user(client, registration, &prefix.localpart(&format!("p{pair}b"))).await?;

    let url = client.url(&["_matrix", "client", "v3", "createRoom"])?;
    let body = json!({
        "preset": "trusted_private_chat",
        "is_direct": true,
        "invite": [second.user_id],
        "name": format!("hearth-bench paired {pair}"),
    });
    let answer = client
        .request(Method::POST, url, Some(&first.access_token), Some(&body))
        .await
        .with_context(|| format!("cannot create the room of pair {pair}"))?;
    let room_id = answer["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the createRoom answer has no room_id: {}", answer_text(&answer)))?;
    let url = client.url(&["_matrix", "client", "v3", "rooms", &room_id, "join"])?;
    client
        .request(Method::POST, url, Some(&second.access_token), Some(&json!({})))
        .await
        .with_context(|| format!("{} cannot join the room of pair {pair}", second.user_id))?;

    let mut members = Vec::with_capacity(2);
    for (user, partner) in [(&first, &second), (&second, &first)] {
        let mut member = Member {
            user: Arc::new(user.clone()),
            partner_id: partner.user_id.clone(),
            room_id: room_id.clone(),
            since: String::new(),
        };
        // The initial /sync is taken after both joins, so that the phase's long-polls see
        // only the messages.
        let answer = sync(client, &member, None, "0").await?;
        member.since = next_batch(&answer)?;
        members.push(member);
    }
    let [a, b]: [Member; 2] = members.try_into().map_err(|_| anyhow!("a pair has two members"))?;
    Ok([a, b])
}

/// A `/sync` whose inline filter keeps only the pair's room and its messages, and nothing
/// of presence or account data, so that the answer holds what the measurement looks at.
async fn sync(client: &MatrixClient, member: &Member, since: Option<&str>, timeout_ms: &str) -> Result<Value> {
    let filter = json!({
        "room": {
            "rooms": [member.room_id],
            "timeline": {"limit": TIMELINE_LIMIT, "types": ["m.room.message"]},
            "state": {"lazy_load_members": true},
            "ephemeral": {"not_types": ["*"]},
            "account_data": {"not_types": ["*"]},
        },
        "presence": {"not_types": ["*"]},
        "account_data": {"not_types": ["*"]},
    });
    let mut url: Url = client.url(&["_matrix", "client", "v3", "sync"])?;
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("filter", &filter.to_string()).append_pair("timeout", timeout_ms);
        if let Some(since) = since {
            query.append_pair("since", since);
        }
    }
    client
        .request(Method::GET, url, Some(&member.user.access_token), None)
        .await
        .with_context(|| format!("/sync of {} failed", member.user.user_id))
}

fn next_batch(answer: &Value) -> Result<String> {
    answer["next_batch"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("the /sync answer has no next_batch: {}", answer_text(answer)))
}

/// The body of message `sequence` from `sender`: unique in the whole run, so that any
/// alteration or mix-up between senders shows.
fn body_of(prefix: &RunPrefix, sender: &str, sequence: u32) -> String {
    format!("hearth-bench paired {} from {sender} #{sequence}", prefix.as_str())
}

async fn measure(
    client: &MatrixClient,
    prefix: &RunPrefix,
    parameters: PairedParameters,
    members: Vec<Member>,
) -> Result<(PhaseResult, Validity, u64)> {
    let total = u64::from(parameters.messages) * members.len() as u64;
    let progress = Progress::start("paired (delivered)".to_owned(), total);
    let starts: SendStarts = Arc::new(Mutex::new(HashMap::new()));
    let all_sent: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let sync_requests = Arc::new(AtomicU64::new(0));

    let started = Instant::now();
    let mut readers = JoinSet::new();
    for member in &members {
        let reader = Reader {
            client: client.clone(),
            prefix: prefix.clone(),
            member: member.clone(),
            messages: parameters.messages,
            starts: starts.clone(),
            all_sent: all_sent.clone(),
            delivered: progress.counter(),
            sync_requests: sync_requests.clone(),
        };
        readers.spawn(reader.run());
    }
    let mut senders = JoinSet::new();
    for member in &members {
        let (client, prefix, member, starts) = (client.clone(), prefix.clone(), member.clone(), starts.clone());
        senders.spawn(send_all(client, prefix, member, parameters, starts));
    }
    while let Some(joined) = senders.join_next().await {
        match joined {
            Ok(Ok(())) => {}
            // The first failure ends the run; the other tasks are stopped with their sets.
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow!("a sender task ended abnormally: {error}")),
        }
    }
    let _ = all_sent.set(Instant::now());

    let mut samples = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut validity = Validity { expected: total, ..Validity::default() };
    let mut last_delivery = started;
    while let Some(joined) = readers.join_next().await {
        let read = match joined {
            Ok(Ok(read)) => read,
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow!("a reader task ended abnormally: {error}")),
        };
        samples.extend(read.latencies);
        if let Some(delivery) = read.last_delivery {
            last_delivery = last_delivery.max(delivery);
        }
        validity.delivered += read.delivered;
        validity.missing += read.missing;
        validity.duplicates += read.duplicates;
        validity.out_of_order += read.out_of_order;
        validity.altered += read.altered;
        for problem in read.problems {
            if validity.problems.len() < MAX_LISTED_PROBLEMS {
                validity.problems.push(problem);
            }
        }
    }
    progress.finish().await;
    validity.valid = validity.delivered == total
        && validity.missing == 0
        && validity.duplicates == 0
        && validity.out_of_order == 0
        && validity.altered == 0;
    let senders = u32::try_from(members.len()).unwrap_or(u32::MAX);
    let phase = PhaseResult::new("paired", senders, last_delivery.duration_since(started), &samples);
    Ok((phase, validity, sync_requests.load(Ordering::Relaxed)))
}

/// One user's sender: one message at a time, as a person typing does, with an optional pause.
async fn send_all(
    client: MatrixClient,
    prefix: RunPrefix,
    member: Member,
    parameters: PairedParameters,
    starts: SendStarts,
) -> Result<()> {
    let sender = member.user.user_id.as_str();
    for sequence in 0..parameters.messages {
        let txn_id = format!("{}-{sequence}", prefix.as_str());
        let url =
            client.url(&["_matrix", "client", "v3", "rooms", &member.room_id, "send", "m.room.message", &txn_id])?;
        let body = json!({"msgtype": "m.text", "body": body_of(&prefix, sender, sequence), SEQUENCE_KEY: sequence});
        let started = Instant::now();
        starts.lock().map_err(|_| anyhow!("a task panicked"))?.insert((sender.to_owned(), sequence), started);
        let answer = client.request(Method::PUT, url, Some(&member.user.access_token), Some(&body)).await?;
        // A 2xx without an event id means the message was not sent, whatever the status says.
        answer["event_id"].as_str().ok_or_else(|| anyhow!("the send answer has no event_id: {answer}"))?;
        if parameters.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(parameters.interval_ms)).await;
        }
    }
    Ok(())
}

struct Reader {
    client: MatrixClient,
    prefix: RunPrefix,
    member: Member,
    messages: u32,
    starts: SendStarts,
    all_sent: Arc<OnceLock<Instant>>,
    delivered: Arc<AtomicU64>,
    sync_requests: Arc<AtomicU64>,
}

/// What one reader saw of its partner's messages.
#[derive(Default)]
struct ReadResult {
    latencies: Vec<Duration>,
    last_delivery: Option<Instant>,
    delivered: u64,
    missing: u64,
    duplicates: u64,
    out_of_order: u64,
    altered: u64,
    problems: Vec<String>,
}

impl ReadResult {
    fn problem(&mut self, text: String) {
        if self.problems.len() < MAX_LISTED_PROBLEMS {
            self.problems.push(text);
        }
    }
}

impl Reader {
    async fn run(self) -> Result<ReadResult> {
        let partner = self.member.partner_id.as_str();
        let mut seen = vec![false; self.messages as usize];
        // The highest sequence number delivered so far: anything at or below it that arrives
        // later is out of order (or a duplicate, if it was seen).
        let mut highest: Option<u32> = None;
        let mut result = ReadResult::default();
        let mut since = self.member.since.clone();
        while result.delivered < u64::from(self.messages) {
            if self.all_sent.get().is_some_and(|sent| sent.elapsed() > DELIVERY_GRACE) {
                break;
            }
            let answer = sync(&self.client, &self.member, Some(&since), SYNC_TIMEOUT_MS).await?;
            let returned = Instant::now();
            self.sync_requests.fetch_add(1, Ordering::Relaxed);
            since = next_batch(&answer)?;
            let timeline = &answer["rooms"]["join"][&self.member.room_id]["timeline"];
            if timeline["limited"].as_bool() == Some(true) {
                bail!(
                    "/sync of {} returned a limited timeline (more than {TIMELINE_LIMIT} events at once): \
                     messages would be skipped, so the run cannot be checked",
                    self.member.user.user_id
                );
            }
            let events = timeline["events"].as_array().map(Vec::as_slice).unwrap_or_default();
            for event in events {
                if event["sender"].as_str() != Some(partner) || event["type"].as_str() != Some("m.room.message") {
                    continue;
                }
                let content = &event["content"];
                let Some(sequence) = content[SEQUENCE_KEY].as_u64().and_then(|s| u32::try_from(s).ok()) else {
                    result.altered += 1;
                    result.problem(format!("a message from {partner} lost its sequence number: {content}"));
                    continue;
                };
                let Some(slot) = seen.get_mut(sequence as usize) else {
                    result.altered += 1;
                    result.problem(format!("{partner} never sent a message #{sequence}"));
                    continue;
                };
                if *slot {
                    result.duplicates += 1;
                    result.problem(format!("message #{sequence} from {partner} arrived twice"));
                    continue;
                }
                *slot = true;
                if highest.is_some_and(|highest| sequence < highest) {
                    result.out_of_order += 1;
                    result.problem(format!("message #{sequence} from {partner} arrived after a later one"));
                }
                highest = highest.max(Some(sequence));
                let expected = body_of(&self.prefix, partner, sequence);
                if content["body"].as_str() != Some(expected.as_str()) || content["msgtype"] != "m.text" {
                    result.altered += 1;
                    result.problem(format!("message #{sequence} from {partner} arrived altered: {content}"));
                }
                let start = self
                    .starts
                    .lock()
                    .map_err(|_| anyhow!("a task panicked"))?
                    .get(&(partner.to_owned(), sequence))
                    .copied();
                if let Some(start) = start {
                    result.latencies.push(returned.duration_since(start));
                }
                result.delivered += 1;
                result.last_delivery = Some(returned);
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
        }
        result.missing = seen.iter().filter(|seen| !**seen).count() as u64;
        if result.missing > 0 {
            result.problem(format!(
                "{} of {}'s messages never reached {}",
                result.missing, partner, self.member.user.user_id
            ));
        }
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_unique_per_run_sender_and_sequence() {
        let (a, b) = (RunPrefix::random(), RunPrefix::random());
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&b, "@x:h", 1));
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&a, "@y:h", 1));
        assert_ne!(body_of(&a, "@x:h", 1), body_of(&a, "@x:h", 2));
    }
}
