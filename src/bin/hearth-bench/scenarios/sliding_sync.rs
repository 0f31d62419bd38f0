//! `sliding-sync`: one user in R rooms with E messages each opens the app N times: a first
//! sliding sync (MSC4186, a new connection) with a W-room window as Element X asks for it,
//! beside the same user's initial `/sync`; latency and response size of each, and a check
//! that the window holds W rooms of a list counting all R, and `/sync` all R.

use crate::client::MatrixClient;
use crate::provisioning::{Registration, RunPrefix};
use crate::report::{FigureRow, ServerRun};
use crate::scenarios::initial_sync::{rooms_held, user_in_rooms};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::Latency;
use anyhow::Result;
use reqwest::Method;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, Serialize)]
pub struct SlidingSyncParameters {
    pub rooms: u32,
    pub events: u32,
    pub window: u32,
    pub repeats: u32,
}

/// One kind of request's figures over the N repeats.
#[derive(Clone, Debug, Serialize)]
pub struct SyncFigures {
    pub latency_ms: Latency,
    pub min_ms: f64,
    /// Size of each answer's body, in bytes, in request order.
    pub response_bytes: Vec<usize>,
    /// Rooms in each answer, in request order.
    pub rooms: Vec<usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SlidingSyncRun {
    pub homeserver: String,
    pub user_id: String,
    /// First sliding syncs of new connections with a W-room window.
    pub sliding: SyncFigures,
    /// Initial `/sync`s without filter.
    pub initial_sync: SyncFigures,
    /// The list's `count` in each sliding answer.
    pub list_counts: Vec<u64>,
    /// True when every sliding answer held W rooms (or R when fewer) of a list counting R,
    /// and every `/sync` all R.
    pub valid: bool,
    pub setup_s: f64,
}

pub struct SlidingSyncScenario(pub SlidingSyncParameters);

impl Scenario for SlidingSyncScenario {
    type Parameters = SlidingSyncParameters;
    type Run = SlidingSyncRun;
    const NAME: &'static str = "sliding-sync";

    fn parameters(&self) -> &SlidingSyncParameters {
        &self.0
    }

    fn headline(&self) -> String {
        let p = &self.0;
        format!(
            "sliding-sync: one user in {} rooms with {} messages each; {} times, a first sliding sync with a \
             {}-room window, then an initial /sync",
            p.rooms, p.events, p.repeats, p.window
        )
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<SlidingSyncRun> {
        run(server.client, server.registration, server.prefix, self.0).await
    }
}

impl ServerRun for SlidingSyncRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<14}{:>9}{:>11}{:>9}{:>9}{:>12}{:>8}",
            "request", "requests", "median ms", "min ms", "max ms", "KiB (max)", "rooms"
        );
        for (name, figures) in [("sliding sync", &self.sliding), ("initial /sync", &self.initial_sync)] {
            let _ = writeln!(
                out,
                "  {:<14}{:>9}{:>11.1}{:>9.1}{:>9.1}{:>12.1}{:>8}",
                name,
                figures.response_bytes.len(),
                figures.latency_ms.p50,
                figures.min_ms,
                figures.latency_ms.max,
                figures.largest_response() as f64 / 1024.0,
                figures.rooms.iter().min().copied().unwrap_or(0),
            );
        }
        let _ = writeln!(out, "  valid {}; set-up {:.1} s", if self.valid { "yes" } else { "NO" }, self.setup_s);
    }

    fn comparable(&self) -> Vec<FigureRow> {
        [("sliding-sync", &self.sliding), ("initial-sync", &self.initial_sync)]
            .into_iter()
            .map(|(name, figures)| FigureRow {
                name: name.to_owned(),
                figures: vec![
                    ("median", figures.latency_ms.p50),
                    ("min", figures.min_ms),
                    ("max", figures.latency_ms.max),
                    ("response_bytes", figures.largest_response() as f64),
                ],
            })
            .collect()
    }
}

impl SyncFigures {
    fn from_samples(samples: &[Duration], response_bytes: Vec<usize>, rooms: Vec<usize>) -> SyncFigures {
        SyncFigures {
            latency_ms: Latency::from_samples(samples),
            min_ms: samples.iter().min().copied().unwrap_or(Duration::ZERO).as_secs_f64() * 1_000.0,
            response_bytes,
            rooms,
        }
    }

    fn largest_response(&self) -> usize {
        self.response_bytes.iter().max().copied().unwrap_or(0)
    }
}

/// The first request of an app opening on a new connection, as Element X's room list makes
/// it: the top `window` rooms by recency, one timeline event each, and the state a room list
/// row shows.
fn first_request(connection: &str, window: u32) -> Value {
    json!({
        "conn_id": connection,
        "lists": { "all_rooms": {
            "ranges": [[0, window.saturating_sub(1)]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.avatar", ""], ["m.room.encryption", ""],
                ["m.room.member", "$ME"], ["m.room.canonical_alias", ""],
            ],
        }},
    })
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: SlidingSyncParameters,
) -> Result<SlidingSyncRun> {
    let server = client.base().to_string();
    let (user, room_ids, setup_s) =
        user_in_rooms(client, registration, prefix, parameters.rooms, parameters.events).await?;
    let token = Some(user.access_token.as_str());
    let sliding_url = client.url(&["_matrix", "client", "unstable", "org.matrix.simplified_msc3575", "sync"])?;
    let sync_url = client.url(&["_matrix", "client", "v3", "sync"])?;

    eprintln!("{server}: {} first sliding syncs and initial /syncs, alternating", parameters.repeats);
    let repeats = parameters.repeats as usize;
    let (mut sliding_samples, mut sliding_bytes, mut sliding_rooms) = (vec![], vec![], vec![]);
    let (mut sync_samples, mut sync_bytes, mut sync_rooms) = (vec![], vec![], vec![]);
    let mut list_counts = Vec::with_capacity(repeats);
    for repeat in 0..repeats {
        // A new connection each time: every one is an app opening for the first time.
        let body = first_request(&format!("{}-{repeat}", prefix.as_str()), parameters.window);
        let started = Instant::now();
        let (answer, size) = client.request_sized(Method::POST, sliding_url.clone(), token, Some(&body)).await?;
        sliding_samples.push(started.elapsed());
        sliding_bytes.push(size);
        sliding_rooms.push(answer["rooms"].as_object().map_or(0, serde_json::Map::len));
        list_counts.push(answer["lists"]["all_rooms"]["count"].as_u64().unwrap_or(0));

        let started = Instant::now();
        let (answer, size) = client.request_sized(Method::GET, sync_url.clone(), token, None).await?;
        sync_samples.push(started.elapsed());
        sync_bytes.push(size);
        sync_rooms.push(rooms_held(&answer["rooms"]["join"], &room_ids));
    }
    let all = parameters.rooms as usize;
    let window = parameters.window.min(parameters.rooms) as usize;
    let valid = sliding_rooms.iter().all(|rooms| *rooms == window)
        && list_counts.iter().all(|count| *count == u64::from(parameters.rooms))
        && sync_rooms.iter().all(|rooms| *rooms == all);
    Ok(SlidingSyncRun {
        homeserver: server,
        user_id: user.user_id,
        sliding: SyncFigures::from_samples(&sliding_samples, sliding_bytes, sliding_rooms),
        initial_sync: SyncFigures::from_samples(&sync_samples, sync_bytes, sync_rooms),
        list_counts,
        valid,
        setup_s,
    })
}
