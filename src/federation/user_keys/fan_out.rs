//! A local client's `/keys/query` and `/keys/claim`: local users from the `e2ee` domain,
//! remote users from their servers, all servers asked at once and waited for at most the
//! client's `timeout`; a server that did not answer in time (or failed) is named in
//! `failures` and the rest is answered. Remote users who share a room with a local user are
//! answered from their cached device list (`device_cache`), fetched whole the first time;
//! others are asked live through `/user/keys/query`, as their server sends us no updates.

use super::device_cache;
use crate::db;
use crate::e2ee::types::{ClaimedKeys, QueriedKeys};
use crate::e2ee::{device_keys, one_time_keys, remote_identities};
use crate::error::{Error, Result};
use crate::federation::FedCtx;
use futures_util::future::join_all;
use ruma::api::federation::keys::{claim_keys, get_keys};
use ruma::{OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

type Wanted<T> = BTreeMap<OwnedUserId, T>;

/// The remote part of `wanted`, per server.
fn by_server<T: Clone>(local: &ServerName, wanted: &Wanted<T>) -> BTreeMap<OwnedServerName, Wanted<T>> {
    let mut servers: BTreeMap<OwnedServerName, Wanted<T>> = BTreeMap::new();
    for (user, value) in wanted.iter().filter(|(user, _)| user.server_name() != local) {
        servers.entry(user.server_name().to_owned()).or_default().insert(user.clone(), value.clone());
    }
    servers
}

/// Asks every server at once, each bounded by `timeout`; per server its answer or the
/// `failures` entry saying why there is none.
async fn ask_all<'a, T, A, F>(
    servers: BTreeMap<OwnedServerName, A>,
    timeout: Duration,
    ask: F,
) -> Vec<(OwnedServerName, std::result::Result<T, Value>)>
where
    F: Fn(OwnedServerName, A) -> std::pin::Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>,
{
    let asks = servers.into_iter().map(|(server, wanted)| {
        let asked = ask(server.clone(), wanted);
        async move {
            let outcome = match tokio::time::timeout(timeout, asked).await {
                Ok(Ok(answer)) => Ok(answer),
                Ok(Err(error)) => {
                    tracing::info!(%server, %error, "a server did not answer a key request");
                    Err(json!({ "status": 503, "message": error.to_string() }))
                }
                Err(_) => Err(json!({ "status": 504, "message": "The server did not answer in time" })),
            };
            (server, outcome)
        }
    });
    join_all(asks).await
}

/// `/keys/query` for `requester`.
pub(crate) async fn query(
    ctx: FedCtx<'_>,
    requester: &UserId,
    wanted: &Wanted<Vec<OwnedDeviceId>>,
    timeout: Duration,
) -> Result<QueriedKeys> {
    let mut found = device_keys::query(ctx.rooms.pool, ctx.rooms.server_name, Some(requester), wanted).await?;
    let servers = by_server(ctx.rooms.server_name, wanted);
    let answers = ask_all(servers, timeout, |server, users| Box::pin(query_server(ctx, server, users))).await;
    for (server, outcome) in answers {
        match outcome {
            Ok(answer) => {
                found.device_keys.extend(answer.device_keys);
                found.master_keys.extend(answer.master_keys);
                found.self_signing_keys.extend(answer.self_signing_keys);
            }
            Err(failure) => {
                found.failures.insert(server.to_string(), failure);
            }
        }
    }
    // The requester's own verifications of remote users live here, not on their servers.
    remote_identities::attach_requester_signatures(ctx.rooms.pool, requester, &mut found).await?;
    Ok(found)
}

async fn query_server(
    ctx: FedCtx<'_>,
    server: OwnedServerName,
    users: Wanted<Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    let mut found = QueriedKeys::default();
    let mut live = Wanted::new();
    for (user, devices) in users {
        let local = ctx.rooms.server_name.as_str();
        if !db::remote_device_lists::shares_a_room_with_us(ctx.rooms.pool, user.as_str(), local).await? {
            live.insert(user, devices);
            continue;
        }
        let cached = match device_cache::cached(ctx, &user).await? {
            Some(cached) => cached,
            None => device_cache::resync(ctx, &user).await?,
        };
        device_cache::answer(&user, &cached, &devices, &mut found)?;
    }
    if live.is_empty() {
        return Ok(found);
    }
    let response = ctx.client.send(&server, get_keys::v1::Request::new(live)).await?;
    // A server speaks only for its own users.
    let own = |user: &OwnedUserId| user.server_name() == server;
    found.device_keys.extend(response.device_keys.into_iter().filter(|(user, _)| own(user)));
    found.master_keys.extend(response.master_keys.into_iter().filter(|(user, _)| own(user)));
    found.self_signing_keys.extend(response.self_signing_keys.into_iter().filter(|(user, _)| own(user)));
    Ok(found)
}

/// `/keys/claim`: one key per device, a remote server's through `/user/keys/claim`.
pub(crate) async fn claim(
    ctx: FedCtx<'_>,
    wanted: &Wanted<BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
    timeout: Duration,
) -> Result<ClaimedKeys> {
    let mut claimed = one_time_keys::claim(ctx.rooms.pool, ctx.rooms.server_name, wanted).await?;
    let servers = by_server(ctx.rooms.server_name, wanted);
    let answers = ask_all(servers, timeout, |server, users| {
        Box::pin(async move {
            let response = ctx.client.send(&server, claim_keys::v1::Request::new(users)).await.map_err(Error::from)?;
            Ok((server, response.one_time_keys))
        })
    })
    .await;
    for (server, outcome) in answers {
        match outcome {
            Ok((server, keys)) => {
                claimed.one_time_keys.extend(keys.into_iter().filter(|(user, _)| user.server_name() == server));
            }
            Err(failure) => {
                claimed.failures.insert(server.to_string(), failure);
            }
        }
    }
    Ok(claimed)
}
