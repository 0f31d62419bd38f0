//! `federation`: hearth-bench acts as another homeserver (`peer`) that owns rooms (`dag`)
//! which a user of the measured server joins over federation. Two measurements:
//!
//! - **inbound PDUs**: the bench pushes N signed messages into a room the target's user
//!   joined, in transactions of up to 50 PDUs, one transaction in flight (as a sending server
//!   does per destination). Timed twice: until the last transaction was acknowledged, and
//!   until the last message is readable by the local user over the client API (a server may
//!   acknowledge before processing: Synapse stages PDUs and processes them afterwards).
//! - **join**: the target's user joins a room whose state holds K members, through the
//!   target's client API (`POST /join/{roomId}?server_name=…`); timed from the request to its
//!   answer, and checked with `joined_members`. Twice: with the whole state in the `send_join`
//!   answer, then — for a joiner that asks for it (`omit_members`) — with a partial state, as a
//!   Hearth resident answers ("faster joins"); that join is also timed until `joined_members`
//!   (which a partial-state server answers once it has the full state) lists all K members.
//!
//! The target must be named so that the bench reaches its federation API by the spec's
//! discovery (e.g. `localhost:<port>` serving TLS on that port with a certificate from the
//! bench's CA), trust that CA and allow loopback destinations (docs/PERFORMANCE.md).

mod dag;
pub mod peer;

use crate::client::MatrixClient;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, ServerRun};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::Latency;
use anyhow::{Context, Result, anyhow, bail};
use dag::RemoteRoom;
use peer::{Peer, PeerSettings};
use reqwest::{Method, StatusCode};
use ruma::ServerName;
use serde::Serialize;
use serde_json::value::RawValue as RawJsonValue;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};
use tokio::sync::OnceCell;

/// The spec's limit of PDUs in one transaction.
const PDUS_PER_TRANSACTION: usize = 50;
/// How long the last pushed message may take to become readable after its acknowledgement.
const PROCESSING_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Clone, Debug, Serialize)]
pub struct FederationParameters {
    /// Messages pushed into the joined room (0: skip that measurement).
    pub pdus: u32,
    /// Members of the room joined in the second measurement (0: skip it).
    pub members: u32,
    #[serde(skip)]
    pub peer: PeerSettings,
}

#[derive(Clone, Debug, Serialize)]
pub struct FederationRun {
    pub homeserver: String,
    /// The measured server's name, from its user's id.
    pub server_name: String,
    pub inbound: Option<InboundResult>,
    pub join: Option<JoinResult>,
    /// The same join with a partial state (when the target asks for one).
    pub partial_join: Option<PartialJoinResult>,
    /// Requests of the target the bench answered 404 (by endpoint), and transactions it sent us.
    pub unserved_requests: BTreeMap<String, u64>,
    pub transactions_from_target: u64,
    pub valid: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct InboundResult {
    pub room_id: String,
    pub pdus: u32,
    pub transactions: usize,
    /// First transaction sent → last acknowledged.
    pub acknowledged_s: f64,
    pub acknowledged_pdus_per_s: f64,
    /// First transaction sent → the last message readable by the local user; `None` when it
    /// was not readable within the timeout (the run is then invalid).
    pub readable_s: Option<f64>,
    pub readable_pdus_per_s: Option<f64>,
    /// Latency of each transaction (50 PDUs).
    pub transaction_latency_ms: Latency,
    /// PDUs the target refused in its answers (reason of the first).
    pub refused: usize,
    pub first_refusal: Option<String>,
    /// Messages of the run the local user reads in the room afterwards (`/messages`).
    pub messages_readable: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct JoinResult {
    pub room_id: String,
    /// Members in the room's state before the join (the bench's owner and K members).
    pub state_members: usize,
    /// Building and signing the room on the bench's side (not part of the join time).
    pub build_s: f64,
    pub join_ms: f64,
    /// `joined_members` seen by the local user right after the join.
    pub joined_members: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct PartialJoinResult {
    pub room_id: String,
    pub state_members: usize,
    /// Whether the target asked for a partial state (else it was answered the whole state).
    pub asked_partial: bool,
    pub join_ms: f64,
    /// Join request → `joined_members` answered with every member (the full state is in).
    pub full_state_s: f64,
    pub joined_members: usize,
}

pub struct FederationScenario {
    pub parameters: FederationParameters,
    peer: OnceCell<Peer>,
}

impl FederationScenario {
    pub fn new(parameters: FederationParameters) -> FederationScenario {
        FederationScenario { parameters, peer: OnceCell::new() }
    }
}

impl Scenario for FederationScenario {
    type Parameters = FederationParameters;
    type Run = FederationRun;
    const NAME: &'static str = "federation";

    fn parameters(&self) -> &FederationParameters {
        &self.parameters
    }

    fn headline(&self) -> String {
        format!(
            "federation: hearth-bench as homeserver localhost:{} pushes {} PDUs ({} per transaction) into a room \
             the target's user joined; then that user joins a room of {} members",
            self.parameters.peer.port, self.parameters.pdus, PDUS_PER_TRANSACTION, self.parameters.members
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<FederationRun> {
        // One bench homeserver for both targets of `--compare`: rooms are per target.
        let peer = self.peer.get_or_try_init(|| Peer::start(&self.parameters.peer)).await?;
        run(peer, server.client, server.registration, server.prefix, &self.parameters).await
    }
}

impl ServerRun for FederationRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        if let Some(inbound) = &self.inbound {
            let l = &inbound.transaction_latency_ms;
            let readable = match (inbound.readable_pdus_per_s, inbound.readable_s) {
                (Some(rate), Some(seconds)) => format!("{rate:.1} PDU/s ({seconds:.2} s)"),
                _ => "NOT within the timeout".to_owned(),
            };
            let _ = writeln!(
                out,
                "  inbound: {} PDUs in {} transactions; acknowledged {:.1} PDU/s ({:.2} s), readable {readable}; \
                 per transaction p50 {:.1} / p95 {:.1} / p99 {:.1} / max {:.1} ms; refused {}; readable afterwards {}",
                inbound.pdus,
                inbound.transactions,
                inbound.acknowledged_pdus_per_s,
                inbound.acknowledged_s,
                l.p50,
                l.p95,
                l.p99,
                l.max,
                inbound.refused,
                inbound.messages_readable
            );
        }
        if let Some(join) = &self.join {
            let _ = writeln!(
                out,
                "  join: room of {} members (built in {:.1} s): joined in {:.0} ms; joined_members afterwards {}",
                join.state_members, join.build_s, join.join_ms, join.joined_members
            );
        }
        if let Some(partial) = &self.partial_join {
            let _ = writeln!(
                out,
                "  partial-state join: room of {} members: joined in {:.0} ms (asked for a partial state: {}); \
                 full state after {:.2} s; joined_members afterwards {}",
                partial.state_members,
                partial.join_ms,
                if partial.asked_partial { "yes" } else { "no" },
                partial.full_state_s,
                partial.joined_members
            );
        }
        let _ = writeln!(
            out,
            "  transactions from the target: {}; requests not served: {:?}; valid: {}",
            self.transactions_from_target,
            self.unserved_requests,
            if self.valid { "yes" } else { "NO" }
        );
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let mut rows = Vec::new();
        if let Some(inbound) = &self.inbound {
            let l = &inbound.transaction_latency_ms;
            rows.push(FigureRow {
                name: "inbound".to_owned(),
                figures: vec![
                    ("acknowledged_pdus_per_s", inbound.acknowledged_pdus_per_s),
                    ("readable_pdus_per_s", inbound.readable_pdus_per_s.unwrap_or(0.0)),
                    ("txn_p50", l.p50),
                    ("txn_p99", l.p99),
                ],
            });
        }
        if let Some(join) = &self.join {
            rows.push(FigureRow { name: "join".to_owned(), figures: vec![("join_ms", join.join_ms)] });
        }
        if let Some(partial) = &self.partial_join {
            rows.push(FigureRow {
                name: "partial_join".to_owned(),
                figures: vec![("join_ms", partial.join_ms), ("full_state_s", partial.full_state_s)],
            });
        }
        rows
    }
}

async fn run(
    peer: &Peer,
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: &FederationParameters,
) -> Result<FederationRun> {
    let homeserver = client.base().to_string();
    client.check_reachable().await?;
    let user = register_user(client, registration, &prefix.localpart("joiner")).await?;
    let server_name = user
        .user_id
        .split_once(':')
        .map(|(_, name)| name.to_owned())
        .ok_or_else(|| anyhow!("{} is not a user id", user.user_id))?;
    let target = <&ServerName>::try_from(server_name.as_str()).context("the target's server name")?;
    let transactions_before = peer.transactions_received();
    let unserved_before = peer.unserved();

    let inbound = if parameters.pdus > 0 {
        Some(inbound_pdus(peer, client, &user, target, prefix, parameters.pdus).await?)
    } else {
        None
    };
    let join = if parameters.members > 0 {
        Some(join_large_room(peer, client, &user, prefix, parameters.members).await?)
    } else {
        None
    };
    let partial_join = if parameters.members > 0 {
        Some(join_large_room_partially(peer, client, &user, prefix, parameters.members).await?)
    } else {
        None
    };

    let mut unserved = peer.unserved();
    for (endpoint, count) in unserved_before {
        if let Some(now) = unserved.get_mut(&endpoint) {
            *now -= count;
        }
    }
    unserved.retain(|_, count| *count > 0);
    let valid = inbound
        .as_ref()
        .is_none_or(|i| i.refused == 0 && i.readable_s.is_some() && i.messages_readable == i.pdus as usize)
        && join.as_ref().is_none_or(|j| j.joined_members == j.state_members + 1)
        && partial_join.as_ref().is_none_or(|j| j.joined_members == j.state_members + 1);
    Ok(FederationRun {
        homeserver,
        server_name,
        inbound,
        join,
        partial_join,
        unserved_requests: unserved,
        transactions_from_target: peer.transactions_received() - transactions_before,
        valid,
    })
}

/// Creates a room on the bench's server, hosts it and has `user` join it through the target;
/// returns the room and the join's duration.
async fn join_hosted_room(
    peer: &Peer,
    client: &MatrixClient,
    user: &BenchUser,
    room: RemoteRoom,
) -> Result<(ruma::OwnedRoomId, Duration)> {
    let room_id = room.room_id.clone();
    peer.host(room);
    let mut url = client.url(&["_matrix", "client", "v3", "join", room_id.as_str()])?;
    url.query_pairs_mut().append_pair("server_name", peer.name.as_str()).append_pair("via", peer.name.as_str());
    let started = Instant::now();
    client
        .request(Method::POST, url, Some(&user.access_token), Some(&serde_json::json!({})))
        .await
        .with_context(|| format!("{} cannot join {room_id} over federation", user.user_id))?;
    Ok((room_id, started.elapsed()))
}

async fn inbound_pdus(
    peer: &Peer,
    client: &MatrixClient,
    user: &BenchUser,
    target: &ServerName,
    prefix: &RunPrefix,
    count: u32,
) -> Result<InboundResult> {
    let server = client.base();
    eprintln!("{server}: joining a room of the bench's server");
    let label = format!("{}-inbound", prefix.as_str());
    let room = RemoteRoom::create(&peer.name, &peer.key, &label, 0)?;
    let (room_id, _) = join_hosted_room(peer, client, user, room).await?;

    eprintln!("{server}: signing {count} messages, then pushing them in transactions of {PDUS_PER_TRANSACTION}");
    let pdus = peer.with_room(&room_id, |room| room.messages(count, &peer.key, &label))?;
    let last_event = pdus.last().map(|pdu| pdu.event_id.to_string()).ok_or_else(|| anyhow!("no PDUs to send"))?;
    let batches = pdus
        .chunks(PDUS_PER_TRANSACTION)
        .map(|chunk| {
            chunk
                .iter()
                .map(|pdu| RawJsonValue::from_string(pdu.canonical_json()).context("a PDU as JSON"))
                .collect::<Result<Vec<_>>>()
        })
        .collect::<Result<Vec<_>>>()?;
    let transactions = batches.len();

    let mut latencies = Vec::with_capacity(transactions);
    let mut refusals = Vec::new();
    let started = Instant::now();
    for (index, batch) in batches.into_iter().enumerate() {
        let sent = Instant::now();
        refusals.extend(peer.send_transaction(target, &format!("{label}-{index}"), batch).await?);
        latencies.push(sent.elapsed());
    }
    let acknowledged = started.elapsed();
    let readable = match wait_readable(client, user, &room_id, &last_event).await {
        Ok(()) => Some(started.elapsed()),
        // Kept as a failed check, so that the other server's figures are still reported.
        Err(error) => {
            eprintln!("{server}: {error:#}");
            None
        }
    };
    let messages_readable = count_messages(client, user, room_id.as_str(), &label).await?;

    Ok(InboundResult {
        room_id: room_id.to_string(),
        pdus: count,
        transactions,
        acknowledged_s: acknowledged.as_secs_f64(),
        acknowledged_pdus_per_s: f64::from(count) / acknowledged.as_secs_f64(),
        readable_s: readable.map(|took| took.as_secs_f64()),
        readable_pdus_per_s: readable.map(|took| f64::from(count) / took.as_secs_f64()),
        transaction_latency_ms: Latency::from_samples(&latencies),
        refused: refusals.len(),
        first_refusal: refusals.first().map(|(event, reason)| format!("{event}: {reason}")),
        messages_readable,
    })
}

/// Polls the client API until the local user can read `event_id` (20 ms apart: the wait is
/// part of the figure, so it must not round it up much).
async fn wait_readable(client: &MatrixClient, user: &BenchUser, room_id: &ruma::RoomId, event_id: &str) -> Result<()> {
    let url = client.url(&["_matrix", "client", "v3", "rooms", room_id.as_str(), "event", event_id])?;
    let deadline = Instant::now() + PROCESSING_TIMEOUT;
    loop {
        let (status, answer) = client.request_status(Method::GET, url.clone(), Some(&user.access_token), None).await?;
        if status.is_success() {
            return Ok(());
        }
        if status != StatusCode::NOT_FOUND {
            bail!("reading the last pushed event answered {status}: {answer}");
        }
        if Instant::now() > deadline {
            bail!("the last pushed event {event_id} was not readable within {PROCESSING_TIMEOUT:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The run's messages the user reads in the room, paginating `/messages` back from the end.
async fn count_messages(client: &MatrixClient, user: &BenchUser, room_id: &str, label: &str) -> Result<usize> {
    let mut count = 0;
    let mut from: Option<String> = None;
    loop {
        let mut url = client.url(&["_matrix", "client", "v3", "rooms", room_id, "messages"])?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("dir", "b").append_pair("limit", "500");
            if let Some(from) = &from {
                query.append_pair("from", from);
            }
        }
        let page = client.request(Method::GET, url, Some(&user.access_token), None).await?;
        let chunk = page["chunk"].as_array().map(Vec::as_slice).unwrap_or_default();
        count += chunk
            .iter()
            .filter(|event| event["type"] == "m.room.message")
            .filter(|event| event["content"]["body"].as_str().is_some_and(|body| body.starts_with(label)))
            .count();
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return Ok(count),
        }
    }
}

async fn join_large_room(
    peer: &Peer,
    client: &MatrixClient,
    user: &BenchUser,
    prefix: &RunPrefix,
    members: u32,
) -> Result<JoinResult> {
    let server = client.base();
    eprintln!("{server}: building a room of {members} members on the bench's server");
    let built = Instant::now();
    let label = format!("{}-join", prefix.as_str());
    let room = RemoteRoom::create(&peer.name, &peer.key, &label, members)?;
    let state_members = room.member_count();
    let build_s = built.elapsed().as_secs_f64();
    eprintln!("{server}: joining it");
    let (room_id, took) = join_hosted_room(peer, client, user, room).await?;
    let joined_members = joined_member_count(client, user, room_id.as_str()).await?;
    Ok(JoinResult {
        room_id: room_id.to_string(),
        state_members,
        build_s,
        join_ms: took.as_secs_f64() * 1000.0,
        joined_members,
    })
}

/// [`join_large_room`] with the bench answering a partial state to a joiner that asks for one;
/// timed until the target lists every member.
async fn join_large_room_partially(
    peer: &Peer,
    client: &MatrixClient,
    user: &BenchUser,
    prefix: &RunPrefix,
    members: u32,
) -> Result<PartialJoinResult> {
    let server = client.base();
    eprintln!("{server}: building a second room of {members} members, for a partial-state join");
    let label = format!("{}-partial", prefix.as_str());
    let room = RemoteRoom::create(&peer.name, &peer.key, &label, members)?;
    let state_members = room.member_count();
    let room_id = room.room_id.clone();
    let asked_before = peer.partial_joins_answered();
    peer.answer_partial_joins(true);
    eprintln!("{server}: joining it with a partial state");
    let started = Instant::now();
    let joined = join_hosted_room(peer, client, user, room).await;
    peer.answer_partial_joins(false);
    let (_, took) = joined?;
    // A partial-state server answers `joined_members` once it has the full state; wait until
    // the list is whole either way.
    let deadline = started + PROCESSING_TIMEOUT;
    let joined_members = loop {
        let count = joined_member_count(client, user, room_id.as_str()).await?;
        if count > state_members || Instant::now() > deadline {
            break count;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    Ok(PartialJoinResult {
        room_id: room_id.to_string(),
        state_members,
        asked_partial: peer.partial_joins_answered() > asked_before,
        join_ms: took.as_secs_f64() * 1000.0,
        full_state_s: started.elapsed().as_secs_f64(),
        joined_members,
    })
}

async fn joined_member_count(client: &MatrixClient, user: &BenchUser, room_id: &str) -> Result<usize> {
    let url = client.url(&["_matrix", "client", "v3", "rooms", room_id, "joined_members"])?;
    let answer = client.request(Method::GET, url, Some(&user.access_token), None).await?;
    Ok(answer["joined"].as_object().map_or(0, serde_json::Map::len))
}
