//! `paired`: P pairs of users, each pair in its own private room. Every user sends M
//! messages to its partner while reading the partner's through a long-polling `/sync` loop,
//! as two chat clients do. Each message's delivery latency runs from the start of its `PUT`
//! until the partner's `/sync` answer that contains it has arrived; the validity check proves
//! that every message arrived exactly once, in its sender's order, with its body unchanged.

use crate::actions::{self, SETUP_CONCURRENCY, bounded};
use crate::client::MatrixClient;
use crate::feed::{SyncFeed, Transport};
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, LATENCY_HEADER, ServerRun, latency_columns};
use crate::scenarios::delivery::{DeliveryLog, SendStarts, Validity, content_of};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::PhaseResult;
use anyhow::{Result, anyhow, bail};
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

/// How long a `/sync` waits for news, as real clients do.
const SYNC_TIMEOUT_MS: u64 = 30_000;
/// Far above what one long-poll can collect from one sender that sends one message at a time,
/// so that a `limited` timeline means the server dropped events rather than a busy moment.
const TIMELINE_LIMIT: u32 = 100;
/// Once every message has been sent, how long readers keep waiting for missing ones before the
/// run is declared invalid: more than one whole long-poll, so a slow wake-up is not a loss.
pub const DELIVERY_GRACE: Duration = Duration::from_secs(45);
/// How often a reader of pushed deltas looks at the clock for the grace time.
pub const GRACE_CHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PairedParameters {
    pub pairs: u32,
    pub messages: u32,
    pub interval_ms: u64,
    pub transport: Transport,
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

pub struct PairedScenario(pub PairedParameters);

impl Scenario for PairedScenario {
    type Parameters = PairedParameters;
    type Run = PairedRun;
    const NAME: &'static str = "paired";

    fn parameters(&self) -> &PairedParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "paired: {} pairs, {} messages per user, {} ms between a sender's messages, reading {}; \
             latency = send start -> partner's /sync answer read",
            self.0.pairs,
            self.0.messages,
            self.0.interval_ms,
            self.0.transport.describe()
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<PairedRun> {
        run(server.client, server.registration, server.prefix, self.0).await
    }
}

impl ServerRun for PairedRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.validity.valid
    }

    fn write_table(&self, out: &mut String) {
        let (phase, validity) = (&self.phase, &self.validity);
        let _ =
            writeln!(out, "  {:>8}{:>11}{:>10}{:>10}{LATENCY_HEADER}  valid", "users", "delivered", "seconds", "msg/s");
        let _ = writeln!(
            out,
            "  {:>8}{:>11}{:>10.2}{:>10.1}{}  {}",
            phase.concurrency,
            format!("{}/{}", validity.delivered, validity.expected),
            phase.elapsed_s,
            phase.messages_per_s,
            latency_columns(&phase.latency_ms),
            if validity.valid { "yes" } else { "NO" }
        );
        write_validity_problems(out, validity);
    }

    fn comparable(&self) -> Vec<FigureRow> {
        vec![FigureRow::of_phase(&self.phase)]
    }
}

/// The counts and first problems of a failed validity check, for the table.
pub fn write_validity_problems(out: &mut String, validity: &Validity) {
    if validity.valid {
        return;
    }
    let _ = writeln!(
        out,
        "  missing {}, duplicates {}, out of order {}, altered {}, readers failed {}",
        validity.missing, validity.duplicates, validity.out_of_order, validity.altered, validity.failed_readers
    );
    for problem in &validity.problems {
        let _ = writeln!(out, "    {problem}");
    }
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

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: PairedParameters,
) -> Result<PairedRun> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    eprintln!("{server}: registering {} users in {} private rooms", 2 * parameters.pairs, parameters.pairs);
    let pairs = bounded(
        SETUP_CONCURRENCY,
        (0..parameters.pairs).map(|pair| provision_pair(client, registration, prefix, pair)),
    )
    .await?;
    let members: Vec<Member> = pairs.into_iter().flatten().collect();

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

/// Registers both users of a pair, creates the pair's room with the partner invited, joins
/// the partner and takes each user's initial `/sync` token.
async fn provision_pair(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    pair: u32,
) -> Result<[Member; 2]> {
    let first = register_user(client, registration, &prefix.localpart(&format!("p{pair}a"))).await?;
    let second = register_user(client, registration, &prefix.localpart(&format!("p{pair}b"))).await?;
    let body = json!({
        "preset": "trusted_private_chat",
        "is_direct": true,
        "invite": [second.user_id],
        "name": format!("hearth-bench paired {pair}"),
    });
    let room_id = actions::create_room(client, &first, &body).await?;
    actions::join_room(client, &second, &room_id).await?;

    let mut members = Vec::with_capacity(2);
    for (user, partner) in [(&first, &second), (&second, &first)] {
        // The initial /sync is taken after both joins, so that the phase's long-polls see
        // only the messages.
        let answer = actions::sync(client, user, Some(&filter(&room_id)), None, 0).await?;
        members.push(Member {
            user: Arc::new(user.clone()),
            partner_id: partner.user_id.clone(),
            room_id: room_id.clone(),
            since: actions::next_batch(&answer)?,
        });
    }
    let [a, b]: [Member; 2] = members.try_into().map_err(|_| anyhow!("a pair has two members"))?;
    Ok([a, b])
}

fn filter(room_id: &str) -> Value {
    actions::messages_filter(&[room_id], TIMELINE_LIMIT)
}

async fn measure(
    client: &MatrixClient,
    prefix: &RunPrefix,
    parameters: PairedParameters,
    members: Vec<Member>,
) -> Result<(PhaseResult, Validity, u64)> {
    let total = u64::from(parameters.messages) * members.len() as u64;
    let progress = Progress::start("paired (delivered)".to_owned(), total);
    let starts = SendStarts::default();
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
            transport: parameters.transport,
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
    let mut validity = Validity::expecting(total);
    let mut last_delivery = started;
    while let Some(joined) = readers.join_next().await {
        let log = match joined {
            Ok(Ok(log)) => log,
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
        starts.record(sender, sequence, Instant::now())?;
        actions::send_message(&client, &member.user, &member.room_id, &txn_id, &content_of(&prefix, sender, sequence))
            .await?;
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
    transport: Transport,
    starts: SendStarts,
    all_sent: Arc<OnceLock<Instant>>,
    delivered: Arc<AtomicU64>,
    sync_requests: Arc<AtomicU64>,
}

impl Reader {
    async fn run(self) -> Result<DeliveryLog> {
        let mut log = DeliveryLog::new(&self.member.partner_id, &self.member.user.user_id, self.messages);
        let filter = filter(&self.member.room_id);
        let (user, since) = (self.member.user.clone(), &self.member.since);
        let mut feed = SyncFeed::open(self.transport, &self.client, user, &filter, since, SYNC_TIMEOUT_MS).await?;
        while !log.complete() {
            if self.all_sent.get().is_some_and(|sent| sent.elapsed() > DELIVERY_GRACE) {
                break;
            }
            let Some(answer) = feed.next(GRACE_CHECK).await? else { continue };
            let returned = Instant::now();
            self.sync_requests.fetch_add(1, Ordering::Relaxed);
            let timeline = &answer["rooms"]["join"][&self.member.room_id]["timeline"];
            if timeline["limited"].as_bool() == Some(true) {
                bail!(
                    "/sync of {} returned a limited timeline (more than {TIMELINE_LIMIT} events at once): \
                     messages would be skipped, so the run cannot be checked",
                    self.member.user.user_id
                );
            }
            let events = timeline["events"].as_array().map(Vec::as_slice).unwrap_or_default();
            let new = log.observe(&self.prefix, events, returned, &self.starts)?;
            self.delivered.fetch_add(new, Ordering::Relaxed);
        }
        Ok(log)
    }
}
