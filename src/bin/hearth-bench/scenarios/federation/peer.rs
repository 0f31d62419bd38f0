//! The bench's own homeserver, `localhost:<port>`: a TLS listener on loopback that serves its
//! signing key (`/_matrix/key/v2/server`), `make_join` and `send_join` for the rooms it owns,
//! and accepts (and ignores) the transactions the target sends it. It pushes transactions to
//! the target with Hearth's federation client (the spec's discovery, TLS trusting the bench
//! CA, `X-Matrix` signatures), so the same driver measures any server that federates.
//!
//! It does not check the signatures of what it receives: it is the sending side of a
//! measurement on loopback, not a server to expose.
// The handlers' error is the ready answer (an axum `Response`); boxing it would buy nothing in
// handlers called a few thousand times per run.
#![allow(clippy::result_large_err)]

use super::dag::{ROOM_VERSION, RemoteRoom};
use anyhow::{Context, Result, anyhow};
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use hearth::config::Config;
use hearth::signing_key::SigningKey;
use hearth::testing::federation::client::FederationClient;
use hearth::testing::http::ruma::RumaResponse;
use ruma::api::federation::backfill::get_backfill::v1 as get_backfill;
use ruma::api::federation::discovery::get_server_keys::v2 as own_keys;
use ruma::api::federation::discovery::{ServerSigningKeys, VerifyKey};
use ruma::api::federation::event::get_event::v1 as get_event;
use ruma::api::federation::event::get_missing_events::v1 as get_missing_events;
use ruma::api::federation::event::get_room_state::v1 as get_state;
use ruma::api::federation::event::get_room_state_ids::v1 as get_state_ids;
use ruma::api::federation::membership::create_join_event::v2 as send_join;
use ruma::api::federation::membership::prepare_join_event::v1 as make_join;
use ruma::api::federation::transactions::send_transaction_message::v1 as send_transaction;
use ruma::api::{IncomingRequest, IncomingRequestExt, OutgoingResponse};
use ruma::canonical_json::{CanonicalJsonObject, CanonicalJsonValue};
use ruma::serde::{Base64, Raw};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedServerSigningKeyId, RoomId,
    ServerName, UInt, UserId,
};
use serde_json::value::RawValue as RawJsonValue;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the bench's homeserver listens and what TLS it speaks.
#[derive(Clone, Debug)]
pub struct PeerSettings {
    /// Loopback port; the server is named `localhost:<port>`.
    pub port: u16,
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// The CA the targets' federation certificates are signed by.
    pub ca_file: PathBuf,
}

/// The running server; dropping it does not stop the listener (the process ends with the run).
pub struct Peer {
    pub name: OwnedServerName,
    pub key: Arc<SigningKey>,
    client: FederationClient,
    shared: Arc<Shared>,
}

struct Shared {
    origin: OwnedServerName,
    key_object: Raw<ServerSigningKeys>,
    rooms: Mutex<HashMap<OwnedRoomId, RemoteRoom>>,
    /// Requests for anything else than the above, by path: what a target asked that the bench
    /// does not serve (reported, since it may slow the target down).
    unserved: Mutex<BTreeMap<String, u64>>,
    transactions_received: AtomicU64,
    /// Whether a join that asks for a partial state (`omit_members`) gets one, as from a
    /// Hearth resident; off, every join gets the whole state.
    partial_joins: AtomicBool,
    partial_joins_answered: AtomicU64,
}

impl Peer {
    pub async fn start(settings: &PeerSettings) -> Result<Peer> {
        let name = OwnedServerName::try_from(format!("localhost:{}", settings.port)).context("server name")?;
        let key = Arc::new(SigningKey::generate()?);
        let mut config = Config::default();
        config.federation.tls_cert = Some(settings.tls_cert.clone());
        config.federation.tls_key = Some(settings.tls_key.clone());
        config.federation.ca_file = Some(settings.ca_file.clone());
        // The targets are on loopback, which a federating server refuses by default.
        config.network.allow_private_destinations = true;
        let client = FederationClient::new(&config, name.clone(), key.clone())?;
        let shared = Arc::new(Shared {
            origin: name.clone(),
            key_object: key_object(&name, &key)?,
            rooms: Mutex::default(),
            unserved: Mutex::default(),
            transactions_received: AtomicU64::new(0),
            partial_joins: AtomicBool::new(false),
            partial_joins_answered: AtomicU64::new(0),
        });
        let tls = hearth::testing::federation::tls::acceptor(&config.federation)?
            .ok_or_else(|| anyhow!("the bench's federation listener needs --tls-cert and --tls-key"))?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", settings.port))
            .await
            .with_context(|| format!("cannot listen on 127.0.0.1:{}", settings.port))?;
        let app = Router::new()
            .route("/_matrix/key/v2/server", get(server_keys))
            .route("/_matrix/federation/v1/make_join/{room_id}/{user_id}", get(prepare_join))
            .route("/_matrix/federation/v2/send_join/{room_id}/{event_id}", put(complete_join))
            .route("/_matrix/federation/v1/send/{txn_id}", put(transaction))
            .route("/_matrix/federation/v1/get_missing_events/{room_id}", post(missing_events))
            .route("/_matrix/federation/v1/backfill/{room_id}", get(backfill))
            .route("/_matrix/federation/v1/state_ids/{room_id}", get(state_ids))
            .route("/_matrix/federation/v1/state/{room_id}", get(state))
            .route("/_matrix/federation/v1/event/{event_id}", get(one_event))
            .fallback(unserved)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let served = hearth::testing::http::serve::serve_with_tls(
                listener,
                Some(tls),
                app,
                Duration::from_secs(30),
                std::future::pending(),
            )
            .await;
            if let Err(error) = served {
                eprintln!("hearth-bench: the federation listener stopped: {error}");
            }
        });
        Ok(Peer { name, key, client, shared })
    }

    /// Whether joins asking for a partial state get one from now on.
    pub fn answer_partial_joins(&self, partial: bool) {
        self.shared.partial_joins.store(partial, Ordering::SeqCst);
    }

    /// How many joins were answered with a partial state.
    pub fn partial_joins_answered(&self) -> u64 {
        self.shared.partial_joins_answered.load(Ordering::SeqCst)
    }

    /// Makes `room` joinable through this server.
    pub fn host(&self, room: RemoteRoom) {
        lock(&self.shared.rooms).insert(room.room_id.clone(), room);
    }

    /// Runs `change` on a hosted room (to build more events on it).
    pub fn with_room<T>(&self, room_id: &RoomId, change: impl FnOnce(&mut RemoteRoom) -> Result<T>) -> Result<T> {
        let mut rooms = lock(&self.shared.rooms);
        let room = rooms.get_mut(room_id).ok_or_else(|| anyhow!("{room_id} is not hosted here"))?;
        change(room)
    }

    /// Sends one transaction of `pdus` to `destination`; returns the PDUs it refused, with
    /// the reason it gave.
    pub async fn send_transaction(
        &self,
        destination: &ServerName,
        txn_id: &str,
        pdus: Vec<Box<RawJsonValue>>,
    ) -> Result<Vec<(String, String)>> {
        let mut request =
            send_transaction::Request::new(txn_id.into(), self.name.clone(), MilliSecondsSinceUnixEpoch::now());
        request.pdus = pdus;
        let response = self
            .client
            .send(destination, request)
            .await
            .map_err(|error| anyhow!("transaction {txn_id} to {destination}: {error}"))?;
        Ok(response
            .pdus
            .into_iter()
            .filter_map(|(event_id, result)| result.err().map(|reason| (event_id.to_string(), reason)))
            .collect())
    }

    /// What the targets asked for that the bench does not serve, with counts.
    pub fn unserved(&self) -> BTreeMap<String, u64> {
        lock(&self.shared.unserved).clone()
    }

    pub fn transactions_received(&self) -> u64 {
        self.shared.transactions_received.load(Ordering::Relaxed)
    }
}

/// The server's key object, self-signed, valid for a day (longer than any run).
fn key_object(name: &OwnedServerName, key: &SigningKey) -> Result<Raw<ServerSigningKeys>> {
    let valid_until = MilliSecondsSinceUnixEpoch::now().get() + UInt::from(86_400_000u32);
    let mut keys = ServerSigningKeys::new(name.clone(), MilliSecondsSinceUnixEpoch(valid_until));
    let key_id = OwnedServerSigningKeyId::try_from(key.key_id().as_str()).context("key id")?;
    keys.verify_keys.insert(key_id, VerifyKey::new(Base64::new(key.key_pair.public_key().to_vec())));
    let mut object = match CanonicalJsonValue::try_from(serde_json::to_value(&keys)?)? {
        CanonicalJsonValue::Object(object) => object,
        _ => return Err(anyhow!("a key object is not a JSON object")),
    };
    ruma::signatures::sign_json(name.as_str(), &key.key_pair, &mut object)?;
    Ok(Raw::from_json(serde_json::value::to_raw_value(&object)?))
}

async fn server_keys(State(shared): State<Arc<Shared>>) -> Response {
    respond(own_keys::Response::new(shared.key_object.clone()))
}

async fn prepare_join(State(shared): State<Arc<Shared>>, Path((room_id, user_id)): Path<(String, String)>) -> Response {
    let template = (|| {
        let room_id = RoomId::parse(&room_id).map_err(|_| not_found("no such room"))?;
        let user_id = UserId::parse(&user_id).map_err(|_| not_found("not a user id"))?;
        let rooms = lock(&shared.rooms);
        let room = rooms.get(&room_id).ok_or_else(|| not_found("no such room"))?;
        let template = room.join_template(&user_id).map_err(|error| internal(&error.to_string()))?;
        serde_json::value::to_raw_value(&template).map_err(|error| internal(&error.to_string()))
    })();
    match template {
        Ok(event) => {
            let mut response = make_join::Response::new(event);
            response.room_version = Some(ROOM_VERSION);
            respond(response)
        }
        Err(error) => error,
    }
}

async fn complete_join(
    State(shared): State<Arc<Shared>>,
    Path((room_id, claimed_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let partial =
        shared.partial_joins.load(Ordering::SeqCst) && query.get("omit_members").is_some_and(|value| value == "true");
    let answer = (|| {
        let room_id = RoomId::parse(&room_id).map_err(|_| not_found("no such room"))?;
        let event: CanonicalJsonObject =
            serde_json::from_slice(&body).map_err(|error| bad_json(&format!("the join is not an event: {error}")))?;
        let mut rooms = lock(&shared.rooms);
        let room = rooms.get_mut(&room_id).ok_or_else(|| not_found("no such room"))?;
        let event_id = room.accept_join(&event).map_err(|error| bad_json(&error.to_string()))?;
        // Both sides must agree on the id, or what the bench builds on it would dangle.
        if event_id.as_str() != claimed_id {
            return Err(bad_json(&format!("the join's id is {event_id}, not {claimed_id}")));
        }
        let answer = match partial {
            true => room.partial_state_and_auth_chain(),
            false => room.state_and_auth_chain(),
        };
        let (state, auth_chain) = answer.map_err(|error| internal(&error.to_string()))?;
        let mut room_state = send_join::RoomState::new();
        room_state.state = state;
        room_state.auth_chain = auth_chain;
        if partial {
            shared.partial_joins_answered.fetch_add(1, Ordering::SeqCst);
            room_state.members_omitted = true;
            room_state.servers_in_room = Some(vec![shared.origin.to_string()]);
        }
        Ok(send_join::Response::new(room_state))
    })();
    match answer {
        Ok(response) => respond(response),
        Err(error) => error,
    }
}

/// A server that gets PDUs out of order (Synapse processes a transaction's PDUs from a staging
/// table, where PDUs received in the same millisecond have no order) asks for their
/// predecessors; a real resident server serves them, so the bench does too.
async fn missing_events(
    State(shared): State<Arc<Shared>>,
    Path(room_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let request: get_missing_events::Request = match ruma_request(request, &room_id).await {
        Ok(request) => request,
        Err(error) => return error,
    };
    let rooms = lock(&shared.rooms);
    let Some(room) = rooms.get(&request.room_id) else {
        return not_found("no such room");
    };
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(usize::MAX);
    match room.missing_events(&request.earliest_events, &request.latest_events, limit, request.min_depth.into()) {
        Ok(events) => respond(get_missing_events::Response::new(events)),
        Err(error) => internal(&error.to_string()),
    }
}

/// What a server that joined after the room's history asks for when its user pages back
/// through it (Hearth and Synapse backfill at the room's backward extremities).
async fn backfill(
    State(shared): State<Arc<Shared>>,
    Path(room_id): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let request: get_backfill::Request = match ruma_request(request, &room_id).await {
        Ok(request) => request,
        Err(error) => return error,
    };
    let rooms = lock(&shared.rooms);
    let Some(room) = rooms.get(&request.room_id) else {
        return not_found("no such room");
    };
    let limit = usize::try_from(u64::from(request.limit)).unwrap_or(usize::MAX).min(100);
    match room.backfill(&request.v, limit) {
        Ok(pdus) => {
            respond(get_backfill::Response::new(shared.origin.clone(), MilliSecondsSinceUnixEpoch::now(), pdus))
        }
        Err(error) => internal(&error.to_string()),
    }
}

/// What a server asks when it cannot place an event it pulled (Synapse, after
/// `get_missing_events` did not reach back to what it holds).
async fn state_ids(
    State(shared): State<Arc<Shared>>,
    Path(room_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (room_id, event_id) = match room_and_event(&room_id, &query) {
        Ok(ids) => ids,
        Err(error) => return error,
    };
    let rooms = lock(&shared.rooms);
    match rooms.get(&room_id).and_then(|room| room.state_ids_at(&event_id)) {
        Some((auth_chain, state)) => respond(get_state_ids::Response::new(auth_chain, state)),
        None => not_found("no such event"),
    }
}

/// What Synapse asks instead of fetching the events of `state_ids` one by one when it lacks
/// many of them.
async fn state(
    State(shared): State<Arc<Shared>>,
    Path(room_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let (room_id, event_id) = match room_and_event(&room_id, &query) {
        Ok(ids) => ids,
        Err(error) => return error,
    };
    let rooms = lock(&shared.rooms);
    match rooms.get(&room_id).and_then(|room| room.state_at(&event_id)) {
        Some(Ok((auth_chain, state))) => respond(get_state::Response::new(auth_chain, state)),
        Some(Err(error)) => internal(&error.to_string()),
        None => not_found("no such event"),
    }
}

/// A request of a ruma endpoint whose one path argument is `room_id` (query and body parsed by
/// ruma), or the answer to give when it does not parse.
async fn ruma_request<R: IncomingRequest>(request: axum::extract::Request, room_id: &str) -> Result<R, Response> {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, 1 << 20).await else {
        return Err(bad_json("unreadable body"));
    };
    R::try_from_http_request(http::Request::from_parts(parts, body.as_ref()), &[room_id])
        .map_err(|error| bad_json(&error.to_string()))
}

/// The room of the path and the `event_id` of the query, which `/state` and `/state_ids` name.
fn room_and_event(room_id: &str, query: &HashMap<String, String>) -> Result<(OwnedRoomId, OwnedEventId), Response> {
    match (RoomId::parse(room_id), query.get("event_id").map(|id| EventId::parse(id.as_str()))) {
        (Ok(room_id), Some(Ok(event_id))) => Ok((room_id, event_id)),
        _ => Err(bad_json("a room id and an event_id are needed")),
    }
}

async fn one_event(State(shared): State<Arc<Shared>>, Path(event_id): Path<String>) -> Response {
    let Ok(event_id) = EventId::parse(&event_id) else {
        return not_found("no such event");
    };
    let rooms = lock(&shared.rooms);
    let Some(pdu) = rooms.values().find_map(|room| room.event(&event_id)) else {
        return not_found("no such event");
    };
    match RawJsonValue::from_string(pdu.canonical_json()) {
        Ok(json) => respond(get_event::Response::new(shared.origin.clone(), MilliSecondsSinceUnixEpoch::now(), json)),
        Err(error) => internal(&error.to_string()),
    }
}

/// The target's own events (its user's join) come back as transactions: accepted, unread.
async fn transaction(State(shared): State<Arc<Shared>>) -> Response {
    shared.transactions_received.fetch_add(1, Ordering::Relaxed);
    respond(send_transaction::Response::new(BTreeMap::new()))
}

async fn unserved(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    // Ids in paths would make every request its own entry: keep the endpoint's name only.
    let endpoint: String = uri.path().split('/').take(5).collect::<Vec<_>>().join("/");
    *lock(&shared.unserved).entry(endpoint).or_default() += 1;
    matrix_error(StatusCode::NOT_FOUND, "M_UNRECOGNIZED", "not served by hearth-bench")
}

fn respond(response: impl OutgoingResponse) -> Response {
    RumaResponse(response).into_response()
}

fn not_found(message: &str) -> Response {
    matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", message)
}

fn bad_json(message: &str) -> Response {
    matrix_error(StatusCode::BAD_REQUEST, "M_BAD_JSON", message)
}

fn internal(message: &str) -> Response {
    matrix_error(StatusCode::INTERNAL_SERVER_ERROR, "M_UNKNOWN", message)
}

fn matrix_error(status: StatusCode, errcode: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({"errcode": errcode, "error": message}))).into_response()
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
