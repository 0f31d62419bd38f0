//! `fanout`: one room with K members, each holding its own long-polling `/sync` (its own
//! access token, its own connection), and one sender posting S messages at a steady pace.
//! Each (member, message) delivery is timed from the start of the message's `PUT` until
//! that member's `/sync` answer containing it has been read, and checked: every member gets
//! every message exactly once, in order, unaltered.

use crate::actions::{self, SETUP_CONCURRENCY, bounded};
use crate::client::MatrixClient;
use crate::feed::{SyncFeed, Transport};
use crate::process;
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, LATENCY_HEADER, ServerRun, latency_columns};
use crate::scenarios::delivery::{DeliveryLog, SendStarts, Validity, content_of};
use crate::scenarios::paired::{DELIVERY_GRACE, GRACE_CHECK, write_validity_problems};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::{Latency, PhaseResult};
use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Before the first message, how long the members' first long-polls get to reach the server
/// and be parked there, per thousand members: the measurement is of wake-ups, not of
/// connection set-up.
const PARK_TIME_PER_THOUSAND: Duration = Duration::from_secs(3);
const MIN_PARK_TIME: Duration = Duration::from_millis(500);

#[derive(Clone, Copy, Debug, Serialize)]
pub struct FanoutParameters {
    pub members: u32,
    pub messages: u32,
    pub interval_ms: u64,
    pub transport: Transport,
}

#[derive(Clone, Debug, Serialize)]
pub struct FanoutRun {
    pub homeserver: String,
    pub room_id: String,
    /// Delivery latency over all (member, message) deliveries, and deliveries per second from
    /// the first send to the last delivery.
    pub phase: PhaseResult,
    /// How long each `PUT` of the sender took.
    pub send_latency_ms: Latency,
    pub validity: Validity,
    /// `/sync` requests made by all members during the phase.
    pub sync_requests: u64,
    /// Registering the members, joining them to the room and bringing their syncs past the joins.
    pub setup_s: f64,
}

pub struct FanoutScenario(pub FanoutParameters);

impl Scenario for FanoutScenario {
    type Parameters = FanoutParameters;
    type Run = FanoutRun;
    const NAME: &'static str = "fanout";

    fn parameters(&self) -> &FanoutParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "fanout: {} members in one room reading {}, 1 sender, {} messages {} ms apart; \
             latency = send start -> each member's /sync answer read",
            self.0.members,
            self.0.transport.describe(),
            self.0.messages,
            self.0.interval_ms
        )
    }

    /// Every member holds a connection of its own (a long-poll or a WebSocket) through the
    /// phase: 10,000 members need more descriptors than the usual soft limit of 1,024.
    fn prepare(&self) -> Result<()> {
        process::raise_open_file_limit(u64::from(self.0.members) + process::SPARE_FILES)?;
        Ok(())
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<FanoutRun> {
        run(server.client, server.registration, server.prefix, self.0).await
    }
}

impl ServerRun for FanoutRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.validity.valid
    }

    fn write_table(&self, out: &mut String) {
        let (phase, validity) = (&self.phase, &self.validity);
        let _ = writeln!(
            out,
            "  {:>8}{:>13}{:>10}{:>12}{LATENCY_HEADER}  valid",
            "members", "delivered", "seconds", "deliv./s"
        );
        let _ = writeln!(
            out,
            "  {:>8}{:>13}{:>10.2}{:>12.1}{}  {}",
            phase.concurrency,
            format!("{}/{}", validity.delivered, validity.expected),
            phase.elapsed_s,
            phase.messages_per_s,
            latency_columns(&phase.latency_ms),
            if validity.valid { "yes" } else { "NO" }
        );
        let s = &self.send_latency_ms;
        let _ = writeln!(
            out,
            "  sender PUT p50 {:.2} ms, p99 {:.2} ms; {} /sync requests; set-up {:.1} s",
            s.p50, s.p99, self.sync_requests, self.setup_s
        );
        write_validity_problems(out, validity);
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let mut row = FigureRow::of_phase(&self.phase);
        row.figures[0].0 = "deliveries_per_s";
        vec![row]
    }
}

struct Member {
    user: BenchUser,
    since: String,
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: FanoutParameters,
) -> Result<FanoutRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    let setup_started = Instant::now();
    let sender = register_user(client, registration, &prefix.localpart("sender")).await?;
    let room_id = actions::create_room(
        client,
        &sender,
        &json!({"preset": "public_chat", "name": "hearth-bench fanout", "visibility": "private"}),
    )
    .await?;
    eprintln!("{server}: registering {} members and joining them to {room_id}", parameters.members);
    let progress = Progress::counting("fanout set-up".to_owned(), u64::from(parameters.members), "members");
    let filter = filter(&room_id, parameters.messages);
    let joined = progress.counter();
    let members = bounded(
        SETUP_CONCURRENCY,
        (0..parameters.members).map(|index| {
            let (room_id, filter, joined) = (&room_id, &filter, joined.clone());
            async move {
                let user = register_user(client, registration, &prefix.localpart(&format!("m{index}"))).await?;
                actions::join_room(client, &user, room_id).await?;
                let answer = actions::sync(client, &user, Some(filter), None, 0).await?;
                joined.fetch_add(1, Ordering::Relaxed);
                Ok(Member { since: actions::next_batch(&answer)?, user })
            }
        }),
    )
    .await?;
    progress.finish().await;
    let members = catch_up(client, &filter, members).await?;
    let setup_s = setup_started.elapsed().as_secs_f64();

    eprintln!("{server}: {} members long-poll /sync; sending {} messages", members.len(), parameters.messages);
    let measured = measure(client, prefix, parameters, &sender, &room_id, members).await?;
    Ok(FanoutRun {
        homeserver: server,
        room_id,
        phase: measured.phase,
        send_latency_ms: measured.send_latency,
        validity: measured.validity,
        sync_requests: measured.sync_requests,
        setup_s,
    })
}

/// Brings every member's `since` past the whole set-up: a member registered early has the
/// joins of all later ones to read, and that catching up (its cost is part of `setup_s`) would
/// otherwise land in the measured phase, which is about a message reaching members who wait.
async fn catch_up(client: &MatrixClient, filter: &Value, members: Vec<Member>) -> Result<Vec<Member>> {
    let progress = Progress::counting("fanout catch-up".to_owned(), members.len() as u64, "members");
    let caught_up = progress.counter();
    let members = bounded(
        SETUP_CONCURRENCY,
        members.into_iter().map(|member| {
            let caught_up = caught_up.clone();
            async move {
                let answer = actions::sync(client, &member.user, Some(filter), Some(&member.since), 0).await?;
                caught_up.fetch_add(1, Ordering::Relaxed);
                Ok(Member { since: actions::next_batch(&answer)?, user: member.user })
            }
        }),
    )
    .await?;
    progress.finish().await;
    Ok(members)
}

/// The room's messages only, all of them in one answer: a `limited` timeline would skip
/// some, and is reported as such.
fn filter(room_id: &str, messages: u32) -> Value {
    actions::messages_filter(&[room_id], messages.saturating_add(10))
}

struct Measured {
    phase: PhaseResult,
    send_latency: Latency,
    validity: Validity,
    sync_requests: u64,
}

async fn measure(
    client: &MatrixClient,
    prefix: &RunPrefix,
    parameters: FanoutParameters,
    sender: &BenchUser,
    room_id: &str,
    members: Vec<Member>,
) -> Result<Measured> {
    let total = u64::from(parameters.messages) * members.len() as u64;
    let starts = SendStarts::default();
    let all_sent: Arc<OnceLock<Instant>> = Arc::new(OnceLock::new());
    let sync_requests = Arc::new(AtomicU64::new(0));
    let member_count = members.len();

    let mut readers = JoinSet::new();
    let progress = Progress::start("fanout (delivered)".to_owned(), total);
    for member in members {
        let reader = Reader {
            client: client.clone(),
            prefix: prefix.clone(),
            sender_id: sender.user_id.clone(),
            room_id: room_id.to_owned(),
            filter: filter(room_id, parameters.messages),
            messages: parameters.messages,
            transport: parameters.transport,
            starts: starts.clone(),
            all_sent: all_sent.clone(),
            delivered: progress.counter(),
            sync_requests: sync_requests.clone(),
        };
        readers.spawn(reader.run(member));
    }
    let park = PARK_TIME_PER_THOUSAND.mul_f64(member_count as f64 / 1_000.0).max(MIN_PARK_TIME);
    tokio::time::sleep(park).await;

    let started = Instant::now();
    let mut send_samples = Vec::with_capacity(parameters.messages as usize);
    for sequence in 0..parameters.messages {
        if sequence > 0 && parameters.interval_ms > 0 {
            tokio::time::sleep(Duration::from_millis(parameters.interval_ms)).await;
        }
        let txn_id = format!("{}-f{sequence}", prefix.as_str());
        let start = Instant::now();
        starts.record(&sender.user_id, sequence, start)?;
        actions::send_message(client, sender, room_id, &txn_id, &content_of(prefix, &sender.user_id, sequence)).await?;
        send_samples.push(start.elapsed());
    }
    let _ = all_sent.set(Instant::now());

    let mut samples = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
    let mut validity = Validity::expecting(total);
    let mut last_delivery = started;
    while let Some(joined) = readers.join_next().await {
        let log = match joined {
            Ok(Ok(log)) => log,
            // The first failure ends the run; the other readers are stopped with the set.
            Ok(Err(error)) => return Err(error),
            Err(error) => return Err(anyhow!("a reader task ended abnormally: {error}")),
        };
        validity.add(&log);
        samples.extend(log.latencies);
        if let Some(delivery) = log.last_delivery {
            last_delivery = last_delivery.max(delivery);
        }
    }
    progress.finish().await;
    validity.conclude();
    let members = u32::try_from(member_count).unwrap_or(u32::MAX);
    Ok(Measured {
        phase: PhaseResult::new("fanout", members, last_delivery.duration_since(started), &samples),
        send_latency: Latency::from_samples(&send_samples),
        validity,
        sync_requests: sync_requests.load(Ordering::Relaxed),
    })
}

struct Reader {
    client: MatrixClient,
    prefix: RunPrefix,
    sender_id: String,
    room_id: String,
    filter: Value,
    messages: u32,
    transport: Transport,
    starts: SendStarts,
    all_sent: Arc<OnceLock<Instant>>,
    delivered: Arc<AtomicU64>,
    sync_requests: Arc<AtomicU64>,
}

impl Reader {
    async fn run(self, member: Member) -> Result<DeliveryLog> {
        let mut log = DeliveryLog::new(&self.sender_id, &member.user.user_id, self.messages);
        if let Err(error) = self.read(&member, &mut log).await {
            log.fail(&error);
        }
        Ok(log)
    }

    async fn read(&self, member: &Member, log: &mut DeliveryLog) -> Result<()> {
        let (user, since) = (Arc::new(member.user.clone()), &member.since);
        let mut feed = SyncFeed::open(self.transport, &self.client, user, &self.filter, since, SYNC_TIMEOUT_MS).await?;
        while !log.complete() {
            if self.all_sent.get().is_some_and(|sent| sent.elapsed() > DELIVERY_GRACE) {
                break;
            }
            let Some(answer) = feed.next(GRACE_CHECK).await? else { continue };
            let returned = Instant::now();
            self.sync_requests.fetch_add(1, Ordering::Relaxed);
            let timeline = &answer["rooms"]["join"][&self.room_id]["timeline"];
            if timeline["limited"].as_bool() == Some(true) {
                bail!("/sync returned a limited timeline: messages would be skipped, so the run cannot be checked");
            }
            let events = timeline["events"].as_array().map(Vec::as_slice).unwrap_or_default();
            let new = log.observe(&self.prefix, events, returned, &self.starts)?;
            self.delivered.fetch_add(new, Ordering::Relaxed);
        }
        Ok(())
    }
}
