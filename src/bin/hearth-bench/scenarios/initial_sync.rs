//! `initial-sync`: one user in R rooms with E messages each, then N initial `/sync`s (no
//! `since`, no filter, no timeout: the first request of a new client) one after another;
//! latency and response size, and a check that each answer holds all R joined rooms.

use crate::actions::{self, SETUP_CONCURRENCY, bounded};
use crate::client::MatrixClient;
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, ServerRun};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::Latency;
use anyhow::Result;
use reqwest::Method;
use serde::Serialize;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct InitialSyncParameters {
    pub rooms: u32,
    pub events: u32,
    pub repeats: u32,
}

#[derive(Clone, Debug, Serialize)]
pub struct InitialSyncRun {
    pub homeserver: String,
    pub user_id: String,
    /// Latency of the N initial `/sync`s; `p50` is their median.
    pub latency_ms: Latency,
    pub min_ms: f64,
    /// The first `/sync` alone (a server that caches answers has nothing of this user yet)
    /// and the median of the others (what a cache gives).
    pub first_ms: f64,
    pub repeated_median_ms: Option<f64>,
    /// Size of each answer's body, in bytes, in request order.
    pub response_bytes: Vec<usize>,
    /// How many of the run's R rooms each answer held, in request order. Rooms the server
    /// joins a new account to by itself (Conduit's admin room) are not counted: they are not
    /// the run's, and an answer is no less complete for them.
    pub joined_rooms: Vec<usize>,
    /// True when every answer held all R rooms.
    pub valid: bool,
    /// Creating the rooms and sending their messages.
    pub setup_s: f64,
}

pub struct InitialSyncScenario(pub InitialSyncParameters);

impl Scenario for InitialSyncScenario {
    type Parameters = InitialSyncParameters;
    type Run = InitialSyncRun;
    const NAME: &'static str = "initial-sync";

    fn parameters(&self) -> &InitialSyncParameters {
        &self.0
    }

    fn headline(&self) -> String {
        format!(
            "initial-sync: one user in {} rooms with {} messages each; {} initial /syncs without filter, one at a time",
            self.0.rooms, self.0.events, self.0.repeats
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<InitialSyncRun> {
        run(server.client, server.registration, server.prefix, self.0).await
    }
}

impl ServerRun for InitialSyncRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  {:>9}{:>11}{:>9}{:>9}{:>9}{:>10}{:>13}{:>12}{:>8}  valid",
            "requests", "median ms", "p99 ms", "min ms", "max ms", "first ms", "repeated ms", "KiB (max)", "rooms"
        );
        let repeated = self.repeated_median_ms.map_or_else(|| "-".to_owned(), |ms| format!("{ms:.1}"));
        let _ = writeln!(
            out,
            "  {:>9}{:>11.1}{:>9.1}{:>9.1}{:>9.1}{:>10.1}{:>13}{:>12.1}{:>8}  {}",
            self.response_bytes.len(),
            l.p50,
            l.p99,
            self.min_ms,
            l.max,
            self.first_ms,
            repeated,
            self.largest_response() as f64 / 1024.0,
            self.joined_rooms.iter().min().copied().unwrap_or(0),
            if self.valid { "yes" } else { "NO" }
        );
        let _ = writeln!(out, "  set-up {:.1} s", self.setup_s);
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let l = &self.latency_ms;
        let mut figures =
            vec![("median", l.p50), ("p99", l.p99), ("min", self.min_ms), ("max", l.max), ("first", self.first_ms)];
        figures.extend(self.repeated_median_ms.map(|ms| ("repeated_median", ms)));
        figures.push(("response_bytes", self.largest_response() as f64));
        vec![FigureRow { name: "initial-sync".to_owned(), figures }]
    }
}

impl InitialSyncRun {
    fn largest_response(&self) -> usize {
        self.response_bytes.iter().max().copied().unwrap_or(0)
    }
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: InitialSyncParameters,
) -> Result<InitialSyncRun> {
    let server = client.base().to_string();
    let (user, room_ids, setup_s) =
        user_in_rooms(client, registration, prefix, parameters.rooms, parameters.events).await?;

    eprintln!("{server}: {} initial /syncs", parameters.repeats);
    let mut samples = Vec::with_capacity(parameters.repeats as usize);
    let mut response_bytes = Vec::with_capacity(parameters.repeats as usize);
    let mut joined_rooms = Vec::with_capacity(parameters.repeats as usize);
    let url = client.url(&["_matrix", "client", "v3", "sync"])?;
    for _ in 0..parameters.repeats {
        let started = Instant::now();
        let (answer, size) = client.request_sized(Method::GET, url.clone(), Some(&user.access_token), None).await?;
        samples.push(started.elapsed());
        response_bytes.push(size);
        joined_rooms.push(rooms_held(&answer["rooms"]["join"], &room_ids));
    }
    let valid = joined_rooms.iter().all(|rooms| *rooms == parameters.rooms as usize);
    Ok(InitialSyncRun {
        homeserver: server,
        user_id: user.user_id,
        latency_ms: Latency::from_samples(&samples),
        min_ms: samples.iter().min().copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1_000.0,
        first_ms: samples.first().copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1_000.0,
        repeated_median_ms: (samples.len() > 1).then(|| Latency::from_samples(&samples[1..]).p50),
        response_bytes,
        joined_rooms,
        valid,
        setup_s,
    })
}

/// How many of `room_ids` are keys of `section` (a `/sync` `rooms.join` object).
pub fn rooms_held(section: &serde_json::Value, room_ids: &[String]) -> usize {
    section
        .as_object()
        .map_or(0, |rooms| room_ids.iter().filter(|room_id| rooms.contains_key(room_id.as_str())).count())
}

/// Registers a user and fills `rooms` rooms of theirs with `events` messages each (what the
/// scenarios that measure a first sync start from). Returns the user, the rooms' ids and the
/// seconds it took.
pub async fn user_in_rooms(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    rooms: u32,
    events: u32,
) -> Result<(BenchUser, Vec<String>, f64)> {
    let server = client.base().to_string();
    client.check_reachable().await?;
    let setup_started = Instant::now();
    let user = register_user(client, registration, &prefix.localpart("reader")).await?;
    eprintln!("{server}: creating {rooms} rooms with {events} messages each");
    let progress = Progress::start("set-up".to_owned(), u64::from(rooms) * u64::from(events));
    let sent = progress.counter();
    // Rooms are filled a few at a time, each room's messages in order, as a real account's
    // history builds up.
    let room_ids = bounded(
        SETUP_CONCURRENCY,
        (0..rooms).map(|room| {
            let (user, sent) = (&user, sent.clone());
            async move {
                // A create event unique to the room: concurrent createRooms of one user can
                // otherwise build identical create events (same sender, content and
                // millisecond), hence, since room version 12, the same room id.
                let body = json!({
                    "preset": "private_chat",
                    "name": format!("hearth-bench room {room}"),
                    "creation_content": {"hearth_bench_room": format!("{}-{room}", prefix.as_str())},
                });
                let room_id = actions::create_room(client, user, &body).await?;
                for index in 0..events {
                    let txn_id = format!("{}-r{room}-{index}", prefix.as_str());
                    let content =
                        json!({"msgtype": "m.text", "body": format!("hearth-bench room {room} message {index}")});
                    actions::send_message(client, user, &room_id, &txn_id, &content).await?;
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(room_id)
            }
        }),
    )
    .await?;
    progress.finish().await;
    Ok((user, room_ids, setup_started.elapsed().as_secs_f64()))
}
