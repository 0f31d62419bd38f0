//! Federation foundations between real Hearth servers over TLS on loopback (issue #16 items
//! 1-3): key publication and fetching through discovery, the notary, key rotation, signed
//! requests accepted, unsigned or forged ones refused, and private destinations refused.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use common::federation::{FedServer, FederatedPair, TestCa, https_client};
use common::{assert_error, encode};
use hearth::signing_key::SigningKey;
use hearth::testing::federation::client::FederationError;
use reqwest::StatusCode;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use ruma::api::federation::discovery::get_server_version::v1 as version;
use ruma::signatures::{PublicKeyMap, PublicKeySet};
use ruma::{CanonicalJsonObject, OwnedServerName, ServerName};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

fn wanted(server: &ServerName, key_id: &str) -> BTreeMap<OwnedServerName, BTreeSet<String>> {
    BTreeMap::from([(server.to_owned(), BTreeSet::from([key_id.to_owned()]))])
}

async fn get_json(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Checks that `object` carries a valid signature of `server` by `key_id` (unpadded base64
/// public key `public_key`).
fn assert_signed_by(object: &Value, server: &str, key_id: &str, public_key: &str) {
    let mut object: CanonicalJsonObject = serde_json::from_value(object.clone()).expect("canonical JSON");
    // ruma's check wants a key for every signer; keep the one under test.
    if let Some(ruma::CanonicalJsonValue::Object(signatures)) = object.get_mut("signatures") {
        signatures.retain(|entity, _| entity == server);
    }
    let keys: PublicKeySet = BTreeMap::from([(key_id.to_owned(), ruma::serde::Base64::parse(public_key).unwrap())]);
    let map: PublicKeyMap = BTreeMap::from([(server.to_owned(), keys)]);
    ruma::signatures::verify_json(&map, &object).unwrap_or_else(|error| panic!("{server} did not sign: {error}"));
}

#[tokio::test]
async fn each_side_fetches_the_others_key_through_discovery_over_tls() {
    let FederatedPair { a, b, .. } = FederatedPair::start().await;
    let b_key = &b.state().signing_key;
    let keys = a.state().key_ring.public_keys(&wanted(b.name(), &b_key.key_id())).await;
    let found = keys.get(b.name().as_str()).and_then(|set| set.get(&b_key.key_id())).map(|key| key.encode());
    assert_eq!(found, Some(b_key.public_key_base64()), "A learns B's key from B");

    let a_key = &a.state().signing_key;
    let keys = b.state().key_ring.public_keys(&wanted(a.name(), &a_key.key_id())).await;
    let found = keys.get(a.name().as_str()).and_then(|set| set.get(&a_key.key_id())).map(|key| key.encode());
    assert_eq!(found, Some(a_key.public_key_base64()), "B learns A's key from A");

    // The key is kept in the database: asked again, A answers without B.
    let stored = a.server.count(&format!("SELECT count(*) FROM server_keys WHERE server_name = '{}'", b.name())).await;
    assert_eq!(stored, 1);
    let b_name = b.name().to_owned();
    let b_key_id = b_key.key_id();
    let b_port = b.port;
    let _stopped = b.stop().await;
    let keys = a.state().key_ring.public_keys(&wanted(&b_name, &b_key_id)).await;
    assert!(keys.get(b_name.as_str()).is_some_and(|set| set.contains_key(&b_key_id)), "served from A's store");

    // Discovery went by the explicit port: straight to B's federation listener.
    let destination = a.state().federation.discover(&b_name).await.expect("discovery");
    assert_eq!(destination.authority, b_name.as_str());
    assert!(destination.addresses.iter().all(|address| address.port() == b_port && address.ip().is_loopback()));
}

#[tokio::test]
async fn the_key_server_publishes_a_self_signed_key_and_the_version() {
    let pair = FederatedPair::start().await;
    let a = &pair.a;
    let client = https_client(&pair.ca);
    let (status, body) = get_json(&client, &a.federation_url("/_matrix/key/v2/server")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let key = &a.state().signing_key;
    assert_eq!(body["server_name"], a.name().as_str());
    assert_eq!(body["verify_keys"][key.key_id()]["key"], key.public_key_base64());
    assert_eq!(body["old_verify_keys"], json!({}));
    let valid_until = body["valid_until_ts"].as_i64().expect("valid_until_ts");
    assert!(valid_until > hearth::testing::time::now_ms() + 3_600_000, "valid for a while: {valid_until}");
    assert_signed_by(&body, a.name().as_str(), &key.key_id(), &key.public_key_base64());

    let (status, body) = get_json(&client, &a.federation_url("/_matrix/federation/v1/version")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server"]["name"], "Hearth");

    // The other side reads the same through its client.
    let response = pair.b.state().federation.send(a.name(), version::Request::new()).await.expect("version");
    assert_eq!(response.server.and_then(|server| server.name).as_deref(), Some("Hearth"));
}

#[tokio::test]
async fn the_notary_serves_another_servers_keys_with_both_signatures() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let client = https_client(&pair.ca);
    let a_key = &a.state().signing_key;
    let b_key = &b.state().signing_key;

    let response = client
        .post(b.federation_url("/_matrix/key/v2/query"))
        .json(&json!({"server_keys": {a.name().as_str(): {a_key.key_id(): {}}}}))
        .send()
        .await
        .expect("query");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("JSON");
    let served = body["server_keys"].as_array().expect("server_keys");
    assert_eq!(served.len(), 1, "{body}");
    assert_eq!(served[0]["server_name"], a.name().as_str());
    assert_eq!(served[0]["verify_keys"][a_key.key_id()]["key"], a_key.public_key_base64());
    assert_signed_by(&served[0], a.name().as_str(), &a_key.key_id(), &a_key.public_key_base64());
    assert_signed_by(&served[0], b.name().as_str(), &b_key.key_id(), &b_key.public_key_base64());

    // The GET form, and the notary's own keys through it.
    let url = b.federation_url(&format!("/_matrix/key/v2/query/{}", encode(a.name().as_str())));
    let (status, body) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_keys"][0]["server_name"], a.name().as_str());
    let url = b.federation_url(&format!("/_matrix/key/v2/query/{}", encode(b.name().as_str())));
    let (status, body) = get_json(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_signed_by(&body["server_keys"][0], b.name().as_str(), &b_key.key_id(), &b_key.public_key_base64());

    // A server that does not answer: nothing to serve, and no error.
    let response = client
        .post(b.federation_url("/_matrix/key/v2/query"))
        .json(&json!({"server_keys": {"localhost:1": {}}}))
        .send()
        .await
        .expect("query");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.json::<Value>().await.expect("JSON")["server_keys"], json!([]));
}

#[tokio::test]
async fn a_trusted_notary_answers_when_the_server_itself_cannot() {
    let ca = Arc::new(TestCa::new());
    let (a, notary) = tokio::join!(FedServer::start(ca.clone()), FedServer::start(ca.clone()));
    let notary_name = notary.name().to_string();
    let c = FedServer::start_with(ca.clone(), move |config| {
        config.federation.trusted_key_servers = vec![notary_name.clone()];
    })
    .await;
    let a_name = a.name().to_owned();
    let a_key_id = a.state().signing_key.key_id();
    let a_public = a.state().signing_key.public_key_base64();
    // The notary learns A's keys while A is up; then A goes away.
    assert!(!notary.state().key_ring.public_keys(&wanted(&a_name, &a_key_id)).await.is_empty());
    let _stopped = a.stop().await;

    let keys = c.state().key_ring.public_keys(&wanted(&a_name, &a_key_id)).await;
    let found = keys.get(a_name.as_str()).and_then(|set| set.get(&a_key_id)).map(|key| key.encode());
    assert_eq!(found, Some(a_public), "C got A's key through the notary");
}

#[tokio::test]
async fn a_rotated_key_is_published_under_old_verify_keys() {
    let ca = Arc::new(TestCa::new());
    let a = FedServer::start(ca.clone()).await;
    let old_key_id = a.state().signing_key.key_id();
    let old_public = a.state().signing_key.public_key_base64();
    let a = a.stop().await.start_with_new_key().await;
    let new_key = &a.state().signing_key;
    assert_ne!(new_key.key_id(), old_key_id);

    let (status, body) = get_json(&https_client(&ca), &a.federation_url("/_matrix/key/v2/server")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verify_keys"][new_key.key_id()]["key"], new_key.public_key_base64());
    assert!(body["verify_keys"].get(&old_key_id).is_none(), "{body}");
    assert_eq!(body["old_verify_keys"][&old_key_id]["key"], old_public);
    let expired = body["old_verify_keys"][&old_key_id]["expired_ts"].as_i64().expect("expired_ts");
    assert!(expired <= hearth::testing::time::now_ms());
    assert_signed_by(&body, a.name().as_str(), &new_key.key_id(), &new_key.public_key_base64());

    // A restart with the same key changes nothing.
    let a = a.restart().await;
    let (_, again) = get_json(&https_client(&ca), &a.federation_url("/_matrix/key/v2/server")).await;
    assert_eq!(again["verify_keys"], body["verify_keys"]);
    assert_eq!(again["old_verify_keys"], body["old_verify_keys"]);
}

#[tokio::test]
async fn a_signed_request_from_one_side_is_accepted_by_the_other() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    // A public room on B.
    let owner = b.server.register("owner", "password-owner").await;
    let room = b.server.create_room(&owner, json!({"visibility": "public", "name": "Over there"})).await;
    // A client of A asks for B's directory: A signs a request to B, B verifies it.
    let reader = a.server.register("reader", "password-reader").await;
    let path = format!("/_matrix/client/v3/publicRooms?server={}", encode(b.name().as_str()));
    let (status, body) = a.server.get(&path, reader.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let rooms = body["chunk"].as_array().expect("chunk");
    assert_eq!(rooms.len(), 1, "{body}");
    assert_eq!(rooms[0]["room_id"], room.as_str());
    assert_eq!(rooms[0]["name"], "Over there");
    // B verified A's signature with A's key, which it fetched from A for this.
    let learned = b
        .server
        .count(&format!(
            "SELECT count(*) FROM server_keys WHERE server_name = '{}' AND key_id = '{}'",
            a.name(),
            a.state().signing_key.key_id()
        ))
        .await;
    assert_eq!(learned, 1);
}

/// An `Authorization` header for `method uri` with `body`, signed by `key` as `origin` for
/// `destination`.
fn x_matrix(
    key: &SigningKey,
    origin: &ServerName,
    destination: &ServerName,
    method: &str,
    uri: &str,
    body: &[u8],
) -> String {
    let request = http::Request::builder().method(method).uri(uri).body(body.to_vec()).expect("request");
    let input = XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), &key.key_pair);
    XMatrix::sign_http_request(&request, input).expect("sign").to_string()
}

#[tokio::test]
async fn unsigned_forged_misdirected_and_unknown_key_requests_are_unauthorized() {
    let pair = FederatedPair::start().await;
    let (a, b) = (&pair.a, &pair.b);
    let client = https_client(&pair.ca);
    let path = "/_matrix/federation/v1/publicRooms";
    let url = b.federation_url(path);
    let body = br#"{"limit": 5}"#;
    let key = &a.state().signing_key;
    let send = |authorization: Option<String>, payload: &'static [u8]| {
        let mut request = client.post(&url).header("content-type", "application/json").body(payload);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        async move {
            let response = request.send().await.expect("request");
            let status = response.status();
            (status, response.json::<Value>().await.unwrap_or(Value::Null))
        }
    };

    // Properly signed: accepted (the control that makes the refusals below mean something).
    let good = x_matrix(key, a.name(), b.name(), "POST", path, body);
    let (status, answer) = send(Some(good.clone()), body).await;
    assert_eq!(status, StatusCode::OK, "{answer}");

    let other: OwnedServerName = "other.example".try_into().unwrap();
    let cases: Vec<(&str, Option<String>, &'static [u8])> = vec![
        ("no Authorization header", None, body),
        ("not X-Matrix", Some("Bearer abc".to_owned()), body),
        ("a malformed X-Matrix header", Some("X-Matrix origin=,key=".to_owned()), body),
        ("a body other than the signed one", Some(good.clone()), br#"{"limit": 6}"#),
        ("another destination", Some(x_matrix(key, a.name(), &other, "POST", path, body)), body),
        ("another path", Some(x_matrix(key, a.name(), b.name(), "POST", "/_matrix/federation/v1/version", body)), body),
        ("a key of another server", Some(good.replace(a.name().as_str(), "localhost:1")), body),
        ("an unknown key id", Some(good.replace(&key.key_id(), "ed25519:unknown")), body),
    ];
    for (what, authorization, payload) in cases {
        let (status, answer) = send(authorization, payload).await;
        assert_eq!(
            (status, answer["errcode"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")),
            "{what}: {answer}"
        );
    }
    // A key made up by the sender (not A's published one): the signature does not verify.
    let forger = SigningKey::generate().unwrap();
    let forged = x_matrix(&forger, a.name(), b.name(), "POST", path, body).replace(&forger.key_id(), &key.key_id());
    let (status, answer) = send(Some(forged), body).await;
    assert_error(&(status, answer), StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
    // Unsigned GET and POST on the main listener of a server that serves federation there.
    let shared = common::TestServer::start().await;
    let (status, answer) = shared.get(path, None).await;
    assert_error(&(status, answer), StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");
}

#[tokio::test]
async fn the_federation_listener_serves_only_federation_and_the_client_listener_none() {
    let pair = FederatedPair::start().await;
    let a = &pair.a;
    let client = https_client(&pair.ca);
    let (status, _) = get_json(&client, &a.federation_url("/_matrix/client/versions")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = a.server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "federation has a listener of its own");
    let (status, _) = a.server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    // Delegation names the federation listener's port, not the client listener's.
    let (status, body) = a.server.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["m.server"], format!("localhost:{}", a.port));
    // Plain HTTP to the TLS listener gets no answer.
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/_matrix/key/v2/server", a.port)).send().await;
    assert!(plain.is_err() || plain.is_ok_and(|response| !response.status().is_success()));
}

#[tokio::test]
async fn private_destinations_are_refused_unless_allowed() {
    let ca = Arc::new(TestCa::new());
    let b = FedServer::start(ca.clone()).await;
    let guarded = FedServer::start_with(ca.clone(), |config| config.network.allow_private_destinations = false).await;
    let client = &guarded.state().federation;
    let error = client.send(b.name(), version::Request::new()).await.expect_err("localhost is loopback");
    assert!(matches!(error, FederationError::Refused(_)), "{error}");
    let literal: OwnedServerName = format!("127.0.0.1:{}", b.port).try_into().unwrap();
    let error = client.send(&literal, version::Request::new()).await.expect_err("an IP literal on loopback");
    assert!(matches!(error, FederationError::Refused(_)), "{error}");
    // Nor are keys fetched from there.
    let keys = guarded.state().key_ring.public_keys(&wanted(b.name(), &b.state().signing_key.key_id())).await;
    assert!(keys.is_empty());
    // A client asking for such a server's directory gets the gateway error that names why,
    // not a 500.
    let user = guarded.server.register("curious", "password-curious").await;
    let path = format!("/_matrix/client/v3/publicRooms?server={}", encode(b.name().as_str()));
    let (status, body) = guarded.server.get(&path, user.token()).await;
    assert_eq!(status, reqwest::StatusCode::BAD_GATEWAY, "{body}");
    assert!(body["error"].as_str().is_some_and(|error| error.contains("non-public")), "{body}");
}

/// A TLS server (with the test CA's certificate for `localhost`) on `listener` answering GET
/// `path` with `answer`, counting the requests it gets.
async fn counting_tls_server(
    ca: &TestCa,
    listener: tokio::net::TcpListener,
    path: &str,
    answer: Value,
) -> (Arc<std::sync::atomic::AtomicUsize>, tokio::sync::oneshot::Sender<()>) {
    use axum::routing::get;
    let tls = hearth::config::FederationConfig {
        tls_cert: Some(ca.cert_file()),
        tls_key: Some(ca.key_file()),
        ..Default::default()
    };
    let acceptor = hearth::testing::federation::tls::acceptor(&tls).expect("TLS").expect("configured");
    let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = asked.clone();
    let app = axum::Router::new().route(
        path,
        get(move || {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let answer = answer.clone();
            async move { ([("cache-control", "max-age=600")], axum::Json(answer)) }
        }),
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    tokio::spawn(hearth::testing::http::serve::serve_with_tls(
        listener,
        Some(acceptor),
        app,
        std::time::Duration::from_secs(10),
        shutdown,
    ));
    (asked, stop)
}

/// 127.0.0.1:443, the port a well-known lookup dials. Only one test binds it; a run beside
/// it may hold the port for a moment.
async fn port_443() -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(bound) = tokio::net::TcpListener::bind("127.0.0.1:443").await {
            return bound;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("127.0.0.1:443 is not free for the well-known server");
}

#[tokio::test]
async fn a_server_name_without_a_port_is_found_through_well_known_delegation() {
    let ca = Arc::new(TestCa::new());
    // B is named plain `localhost`; its federation listener is on some port, which
    // `https://localhost/.well-known/matrix/server` names.
    let b = FedServer::start_with(ca.clone(), |config| config.server_name = "localhost".to_owned()).await;
    let answer = json!({"m.server": format!("localhost:{}", b.port)});
    let (asked, stop) = counting_tls_server(&ca, port_443().await, "/.well-known/matrix/server", answer).await;
    let a = FedServer::start(ca.clone()).await;
    let localhost: OwnedServerName = "localhost".try_into().unwrap();

    let destination = a.state().federation.discover(&localhost).await.expect("discovery");
    assert_eq!(destination.authority, format!("localhost:{}", b.port), "the delegated name, with its port");
    let response = a.state().federation.send(&localhost, version::Request::new()).await.expect("version");
    assert_eq!(response.server.and_then(|server| server.name).as_deref(), Some("Hearth"));

    // A signed request for `localhost` verifies at B (destination and keys are B's name).
    let owner = b.server.register("owner", "password-owner").await;
    let room = b.server.create_room(&owner, json!({"visibility": "public"})).await;
    let reader = a.server.register("reader", "password-reader").await;
    let (status, body) = a.server.get("/_matrix/client/v3/publicRooms?server=localhost", reader.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["chunk"][0]["room_id"], room.as_str());
    let keys = a.state().key_ring.public_keys(&wanted(&localhost, &b.state().signing_key.key_id())).await;
    assert!(keys.get("localhost").is_some_and(|set| !set.is_empty()), "B's keys fetched as `localhost`");
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "the well-known answer is cached");
    let _ = stop.send(());
}

#[tokio::test]
async fn a_server_that_never_publishes_its_key_is_not_asked_again_at_once() {
    let pair = FederatedPair::start().await;
    let b = &pair.b;
    // "localhost:<port>" answers key requests with something that is not a key object.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hostile: OwnedServerName = format!("localhost:{}", listener.local_addr().unwrap().port()).try_into().unwrap();
    let (asked, _stop) = counting_tls_server(&pair.ca, listener, "/_matrix/key/v2/server", json!({})).await;
    let forger = SigningKey::generate().unwrap();
    let path = "/_matrix/federation/v1/publicRooms";
    let client = https_client(&pair.ca);
    for attempt in 0..3 {
        let authorization = x_matrix(&forger, &hostile, b.name(), "GET", path, b"");
        let response = client.get(b.federation_url(path)).header("authorization", authorization).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!((status, body["errcode"].as_str()), (StatusCode::UNAUTHORIZED, Some("M_UNAUTHORIZED")), "{attempt}");
    }
    assert_eq!(asked.load(std::sync::atomic::Ordering::SeqCst), 1, "asked once, then cooling down");
}
