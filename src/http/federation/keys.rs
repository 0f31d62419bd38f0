//! Key publication and the notary (spec: "Publishing Keys", "Querying Keys Through Another
//! Server"), and the server's version. None of these is authenticated: keys are what
//! authentication needs.

use crate::error::Result;
use crate::federation::key_ring::raw_json;
use crate::http::ruma::{Ruma, RumaResponse, RumaRouter};
use crate::state::AppState;
use crate::time::now_ms;
use axum::Router;
use axum::extract::State;
use ruma::api::federation::discovery::ServerSigningKeys;
use ruma::api::federation::discovery::get_remote_server_keys::v2 as notary_one;
use ruma::api::federation::discovery::get_remote_server_keys_batch::v2 as notary_batch;
use ruma::api::federation::discovery::get_server_keys::v2 as own_keys;
use ruma::api::federation::discovery::get_server_version::v1 as version;
use ruma::serde::Raw;
use ruma::{CanonicalJsonValue, ServerName};
use std::collections::BTreeSet;

/// Servers one notary query may ask about: each may cost a fetch from that server.
const MAX_SERVERS_PER_QUERY: usize = 50;

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .ruma::<version::Request, _, _>(server_version)
        .ruma::<own_keys::Request, _, _>(server_keys)
        .ruma::<notary_batch::Request, _, _>(query_keys)
        .ruma::<notary_one::Request, _, _>(query_keys_of_one)
}

/// `GET /_matrix/federation/v1/version`: this server's name and version.
async fn server_version(_: Ruma<version::Request>) -> RumaResponse<version::Response> {
    let mut server = version::Server::new();
    server.name = Some("Hearth".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = version::Response::new();
    response.server = Some(server);
    RumaResponse(response)
}

/// `GET /_matrix/key/v2/server`: this server's signing keys, self-signed.
async fn server_keys(
    State(state): State<AppState>,
    _: Ruma<own_keys::Request>,
) -> Result<RumaResponse<own_keys::Response>> {
    Ok(RumaResponse(own_keys::Response::new(state.key_ring.own_key_object().await?)))
}

/// `POST /_matrix/key/v2/query`: other servers' keys, as a notary.
async fn query_keys(
    State(state): State<AppState>,
    request: Ruma<notary_batch::Request>,
) -> Result<RumaResponse<notary_batch::Response>> {
    let mut served = Vec::new();
    for (server, criteria) in request.body.server_keys.iter().take(MAX_SERVERS_PER_QUERY) {
        // The spec: without a minimum, keys valid now; several criteria ask for the latest.
        let minimum = criteria
            .values()
            .filter_map(|criteria| criteria.minimum_valid_until_ts)
            .map(|ts| i64::from(ts.get()))
            .max()
            .unwrap_or_else(now_ms);
        let key_ids: BTreeSet<String> = criteria.keys().map(ToString::to_string).collect();
        served.extend(notarised(&state, server, &key_ids, minimum).await?);
    }
    Ok(RumaResponse(notary_batch::Response::new(served)))
}

/// `GET /_matrix/key/v2/query/{serverName}`: one server's keys, as a notary.
async fn query_keys_of_one(
    State(state): State<AppState>,
    request: Ruma<notary_one::Request>,
) -> Result<RumaResponse<notary_one::Response>> {
    let minimum = i64::from(request.body.minimum_valid_until_ts.get());
    let served = notarised(&state, &request.body.server_name, &BTreeSet::new(), minimum).await?;
    Ok(RumaResponse(notary_one::Response::new(served)))
}

/// The key objects held for `server`, each with our signature added beside the server's own.
async fn notarised(
    state: &AppState,
    server: &ServerName,
    key_ids: &BTreeSet<String>,
    minimum_valid_until_ts: i64,
) -> Result<Vec<Raw<ServerSigningKeys>>> {
    let objects = state.key_ring.key_objects_for(server, key_ids, minimum_valid_until_ts).await?;
    let mut served = Vec::with_capacity(objects.len());
    for mut object in objects {
        // Our own object is signed already; others get our signature added.
        if server != state.server_name
            && let Some(CanonicalJsonValue::Object(signatures)) = object.get_mut("signatures")
        {
            signatures.remove(state.server_name.as_str());
        }
        served.push(if server == state.server_name { raw_json(&object)? } else { state.key_ring.sign(object)? });
    }
    Ok(served)
}
