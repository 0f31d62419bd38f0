//! Creating the users a scenario needs, through the client-server API only: Synapse-compatible
//! shared-secret registration, or open registration with `m.login.dummy`.

use crate::client::{MatrixClient, answer_text};
use anyhow::{Context, Result, anyhow, bail};
use hmac::{Hmac, Mac};
use rand::Rng;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha1::Sha1;

/// How accounts are created on the server under test.
#[derive(Clone, Debug)]
pub enum Registration {
    /// `GET`/`POST /_synapse/admin/v1/register` with this secret.
    SharedSecret(String),
    /// `POST /_matrix/client/v3/register` with `m.login.dummy`.
    Open,
}

impl Registration {
    /// How to register on this server: with the shared secret when one was given and the
    /// server offers Synapse's shared-secret registration, with open registration otherwise.
    /// Servers compared in one run differ here (Conduit has no shared-secret registration,
    /// only open or token registration), so the choice is made per server by asking it for a
    /// nonce: an error answer (404 unknown endpoint, 400 not enabled) means open registration.
    pub async fn for_server(client: &MatrixClient, secret: Option<&str>) -> Result<Registration> {
        let Some(secret) = secret else { return Ok(Registration::Open) };
        let url = client.url(&["_synapse", "admin", "v1", "register"])?;
        let (status, answer) = client.request_status(Method::GET, url, None, None).await?;
        if status.is_success() && answer["nonce"].is_string() {
            return Ok(Registration::SharedSecret(secret.to_owned()));
        }
        eprintln!(
            "{}: no shared-secret registration (GET /_synapse/admin/v1/register answered {status}); \
             registering with open registration",
            client.base()
        );
        Ok(Registration::Open)
    }
}

/// A random prefix for this run's usernames and transaction ids, so that runs against the
/// same server never collide. Lowercase letters and digits only: valid in every localpart.
#[derive(Clone, Debug)]
pub struct RunPrefix(String);

impl RunPrefix {
    pub fn random() -> RunPrefix {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut rng = rand::thread_rng();
        let suffix: String = (0..10).map(|_| char::from(ALPHABET[rng.gen_range(0..ALPHABET.len())])).collect();
        RunPrefix(format!("hb{suffix}"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn localpart(&self, role: &str) -> String {
        format!("{}_{role}", self.0)
    }
}

#[derive(Clone, Debug)]
pub struct BenchUser {
    pub user_id: String,
    pub access_token: String,
}

pub async fn register_user(client: &MatrixClient, registration: &Registration, localpart: &str) -> Result<BenchUser> {
    let password = random_password();
    let answer = match registration {
        Registration::SharedSecret(secret) => register_with_shared_secret(client, secret, localpart, &password).await,
        Registration::Open => register_openly(client, localpart, &password).await,
    }
    .with_context(|| format!("cannot register the user `{localpart}` on {}", client.base()))?;
    session_from(&answer)
}

async fn register_with_shared_secret(
    client: &MatrixClient,
    secret: &str,
    username: &str,
    password: &str,
) -> Result<Value> {
    let url = client.url(&["_synapse", "admin", "v1", "register"])?;
    let nonce_answer = client.request(Method::GET, url.clone(), None, None).await?;
    let nonce = nonce_answer["nonce"]
        .as_str()
        .ok_or_else(|| anyhow!("the nonce answer has no `nonce`: {}", answer_text(&nonce_answer)))?;
    let body = json!({
        "nonce": nonce,
        "username": username,
        "password": password,
        "admin": false,
        "mac": registration_mac(secret, nonce, username, password)?,
    });
    client.request(Method::POST, url, None, Some(&body)).await
}

/// Synapse's shared-secret MAC: HMAC-SHA1 keyed by the secret over
/// `nonce NUL username NUL password NUL notadmin`, in lowercase hex.
fn registration_mac(secret: &str, nonce: &str, username: &str, password: &str) -> Result<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).map_err(|error| anyhow!("HMAC key: {error}"))?;
    for (index, part) in [nonce, username, password, "notadmin"].iter().enumerate() {
        if index > 0 {
            mac.update(b"\0");
        }
        mac.update(part.as_bytes());
    }
    Ok(hex::encode(mac.finalize().into_bytes()))
}

/// Open registration. Servers differ on whether `m.login.dummy` completes in the first
/// request or only after a 401 that opens a user-interactive auth session, so both are
/// handled.
async fn register_openly(client: &MatrixClient, username: &str, password: &str) -> Result<Value> {
    let url = client.url(&["_matrix", "client", "v3", "register"])?;
    let mut body = json!({
        "username": username,
        "password": password,
        "auth": {"type": "m.login.dummy"},
        "initial_device_display_name": "hearth-bench",
    });
    let (status, answer) = client.request_status(Method::POST, url.clone(), None, Some(&body)).await?;
    if status.is_success() {
        return Ok(answer);
    }
    if status == StatusCode::UNAUTHORIZED
        && let Some(session) = answer["session"].as_str()
    {
        body["auth"]["session"] = json!(session);
        return client.request(Method::POST, url, None, Some(&body)).await;
    }
    bail!(
        "POST {} answered {status}: {}{}",
        url.path(),
        answer_text(&answer),
        if status == StatusCode::FORBIDDEN { " (open registration is closed: pass --shared-secret)" } else { "" }
    )
}

fn session_from(answer: &Value) -> Result<BenchUser> {
    let field = |name: &str| {
        answer[name]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the registration answer has no `{name}`: {}", answer_text(answer)))
    };
    Ok(BenchUser { user_id: field("user_id")?, access_token: field("access_token")? })
}

fn random_password() -> String {
    let mut rng = rand::thread_rng();
    (0..24).map(|_| char::from(rng.sample(rand::distributions::Alphanumeric))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mac_is_hmac_sha1_over_nul_separated_fields() {
        // Computed independently with Python: hmac.new(b"secret",
        // b"abc\x00alice\x00pw\x00notadmin", hashlib.sha1).hexdigest()
        assert_eq!(
            registration_mac("secret", "abc", "alice", "pw").expect("mac"),
            "42e32623fe124933c326f9d2d67ff7c617915a10"
        );
    }

    #[test]
    fn run_prefixes_are_valid_localparts_and_differ() {
        let (a, b) = (RunPrefix::random(), RunPrefix::random());
        assert_ne!(a.as_str(), b.as_str());
        assert!(a.localpart("sender").chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'));
    }
}
