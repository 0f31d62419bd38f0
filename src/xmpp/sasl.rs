//! SASL (RFC 6120 §6) on the XMPP stream: SCRAM-SHA-256 and SCRAM-SHA-1 (RFC 5802, RFC 7677)
//! against the stored SCRAM keys, and PLAIN, offered only over TLS, against the argon2 hash
//! (an account older than its SCRAM keys gets them at its first PLAIN login).
//!
//! The server never learns which names exist from a refusal: an unknown name gets decoy keys
//! and fails at the proof, like a wrong password.

use crate::error::Error;
use crate::ratelimit::Action;
use crate::state::AppState;
use crate::users::ClientInfo;
use crate::users::scram::{self, Mechanism};
use crate::xmpp::stream::{Stream, StreamError};
use base64::Engine;
use minidom::Element;
use rand::RngCore;
use ruma::OwnedUserId;
use ruma::api::error::ErrorKind;

pub(super) const NS: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
/// Tries before the stream ends (RFC 6120 §6.4.5 asks for between 2 and 5).
const MAX_ATTEMPTS: u32 = 3;

/// `<mechanisms/>` for the stream features.
pub(super) fn mechanisms_feature() -> String {
    let mut names: Vec<&str> = Mechanism::ALL.iter().map(|mechanism| mechanism.name()).collect();
    names.push("PLAIN");
    let list: String = names.iter().map(|name| format!("<mechanism>{name}</mechanism>")).collect();
    format!("<mechanisms xmlns='{NS}'>{list}</mechanisms>")
}

/// Runs SASL exchanges until one succeeds (the authenticated user) or the tries run out.
/// Attempts count against the same per-address login rate as `/login`, so that XMPP is no
/// side door for guessing passwords.
pub(super) async fn authenticate(
    state: &AppState,
    stream: &mut Stream,
    client: &ClientInfo,
) -> Result<OwnedUserId, StreamError> {
    let mut attempts = 0;
    loop {
        let auth = stream.next_element().await?;
        if !auth.is("auth", NS) {
            return Err(StreamError::not_authorized("authenticate first"));
        }
        if state.rate_limits.check(Action::Login, client).is_err() {
            stream.send(&format!("<failure xmlns='{NS}'><temporary-auth-failure/></failure>")).await?;
            return Err(StreamError::new("policy-violation", "too many login attempts; try again later"));
        }
        let outcome = match auth.attr("mechanism").unwrap_or_default() {
            "PLAIN" => plain(state, stream, &auth).await?,
            name => match Mechanism::from_name(name) {
                Some(mechanism) => scram_exchange(state, stream, mechanism, &auth).await?,
                None => Err("invalid-mechanism"),
            },
        };
        match outcome {
            Ok((user_id, success_data)) => {
                stream.send(&format!("<success xmlns='{NS}'>{}</success>", encode_or_empty(&success_data))).await?;
                return Ok(user_id);
            }
            Err(condition) => {
                stream.send(&format!("<failure xmlns='{NS}'><{condition}/></failure>")).await?;
                attempts += 1;
                if attempts >= MAX_ATTEMPTS {
                    return Err(StreamError::not_authorized("too many failed authentication attempts"));
                }
            }
        }
    }
}

/// A success (the user, and the data `<success/>` carries) or a SASL failure condition.
type Outcome = Result<(OwnedUserId, Vec<u8>), &'static str>;

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::STANDARD
}

/// `=` is an empty initial response (RFC 6120 §6.4.2); SASL data with no text is none.
fn decode(element: &Element) -> Option<Vec<u8>> {
    let text = element.text();
    let text = text.trim();
    if text == "=" || text.is_empty() {
        return Some(Vec::new());
    }
    b64().decode(text).ok()
}

fn encode_or_empty(data: &[u8]) -> String {
    if data.is_empty() { String::new() } else { b64().encode(data) }
}

async fn plain(state: &AppState, stream: &mut Stream, auth: &Element) -> Result<Outcome, StreamError> {
    if !stream.is_tls() {
        // Never offered in plain text; a client that tries anyway learns nothing.
        return Ok(Err("encryption-required"));
    }
    let Some(data) = decode(auth) else { return Ok(Err("incorrect-encoding")) };
    let mut parts = data.split(|byte| *byte == 0);
    let (Some(authzid), Some(authcid), Some(password), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(Err("malformed-request"));
    };
    let (Ok(authzid), Ok(authcid), Ok(password)) =
        (std::str::from_utf8(authzid), std::str::from_utf8(authcid), std::str::from_utf8(password))
    else {
        return Ok(Err("malformed-request"));
    };
    let user_id = match crate::users::sessions::check_password(&state.pool, &state.server_name, authcid, password).await
    {
        Ok(user_id) => user_id,
        Err(error) => return Ok(Err(refusal(&error)?)),
    };
    if !authzid.is_empty() && !names_user(authzid, &user_id, state) {
        return Ok(Err("invalid-authzid"));
    }
    scram::remember_checked(&state.pool, user_id.as_str(), password).await.map_err(StreamError::internal)?;
    Ok(Ok((user_id, Vec::new())))
}

/// The SASL condition for a refused login; server faults end the stream instead.
fn refusal(error: &Error) -> Result<&'static str, StreamError> {
    match error {
        Error::Matrix { kind: ErrorKind::UserDeactivated | ErrorKind::UserLocked, .. } => Ok("account-disabled"),
        Error::Matrix { .. } => Ok("not-authorized"),
        _ => Err(StreamError::internal(error)),
    }
}

/// Whether an authorization identity (`alice@domain` or `alice`) is the authenticated user.
fn names_user(authzid: &str, user_id: &ruma::UserId, state: &AppState) -> bool {
    let domain = crate::config::XmppConfig::domain_of(state.server_name.as_str());
    authzid == user_id.localpart() || authzid == format!("{}@{domain}", user_id.localpart())
}

/// The client's first message, `gs2-header client-first-message-bare`.
struct ClientFirst {
    gs2_header: String,
    bare: String,
    username: String,
    nonce: String,
}

fn parse_client_first(data: &[u8]) -> Option<ClientFirst> {
    let text = std::str::from_utf8(data).ok()?;
    let (binding, rest) = text.split_once(',')?;
    // No channel binding is offered (no -PLUS mechanism), so `p=` is refused; `y` says the
    // client could bind but thinks the server cannot, which is true.
    if !(binding == "n" || binding == "y") {
        return None;
    }
    let (authzid, bare) = rest.split_once(',')?;
    if !(authzid.is_empty() || authzid.starts_with("a=")) {
        return None;
    }
    let mut username = None;
    let mut nonce = None;
    for attribute in bare.split(',') {
        if let Some(value) = attribute.strip_prefix("n=") {
            username = Some(unescape_name(value)?);
        } else if let Some(value) = attribute.strip_prefix("r=") {
            nonce = Some(value.to_owned());
        } else if attribute.starts_with("m=") {
            // Mandatory extensions are unknown to us (RFC 5802 §5.1).
            return None;
        }
    }
    let gs2_header = format!("{binding},{authzid},");
    Some(ClientFirst {
        gs2_header,
        bare: bare.to_owned(),
        username: username?,
        nonce: nonce.filter(|n| !n.is_empty())?,
    })
}

/// `=2C` and `=3D` stand for `,` and `=` in a SCRAM name; any other `=` is malformed.
fn unescape_name(value: &str) -> Option<String> {
    let mut name = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('=') {
        name.push_str(&rest[..at]);
        let escape = rest.get(at..at + 3)?;
        name.push(match escape {
            "=2C" => ',',
            "=3D" => '=',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    name.push_str(rest);
    Some(name)
}

async fn scram_exchange(
    state: &AppState,
    stream: &mut Stream,
    mechanism: Mechanism,
    auth: &Element,
) -> Result<Outcome, StreamError> {
    let Some(first) = decode(auth).as_deref().and_then(parse_client_first) else {
        return Ok(Err("malformed-request"));
    };
    let user_id = crate::users::localpart::login_user_id(&first.username, &state.server_name);
    let stored = match &user_id {
        Some(user_id) => {
            scram::credentials(&state.pool, user_id.as_str(), mechanism).await.map_err(StreamError::internal)?
        }
        None => None,
    };
    let credentials = stored.clone().unwrap_or_else(|| scram::decoy(mechanism, &first.username));
    let mut server_nonce = [0u8; 18];
    rand::rngs::OsRng.fill_bytes(&mut server_nonce);
    let nonce = format!("{}{}", first.nonce, b64().encode(server_nonce));
    let server_first = format!("r={nonce},s={},i={}", b64().encode(&credentials.salt), credentials.iterations);
    stream.send(&format!("<challenge xmlns='{NS}'>{}</challenge>", b64().encode(&server_first))).await?;

    let response = stream.next_element().await?;
    if response.is("abort", NS) {
        return Ok(Err("aborted"));
    }
    if !response.is("response", NS) {
        return Ok(Err("malformed-request"));
    }
    let Some(final_text) = decode(&response).and_then(|data| String::from_utf8(data).ok()) else {
        return Ok(Err("incorrect-encoding"));
    };
    let Some((without_proof, proof)) = final_text.rsplit_once(",p=") else { return Ok(Err("malformed-request")) };
    let Ok(proof) = b64().decode(proof) else { return Ok(Err("incorrect-encoding")) };
    let expected_start = format!("c={},r={nonce}", b64().encode(&first.gs2_header));
    if without_proof != expected_start && !without_proof.starts_with(&format!("{expected_start},")) {
        return Ok(Err("not-authorized"));
    }
    let auth_message = format!("{},{server_first},{without_proof}", first.bare);
    let proven = mechanism.proof_matches(&credentials, auth_message.as_bytes(), &proof);
    let (Some(user_id), Some(_), true) = (user_id, stored, proven) else { return Ok(Err("not-authorized")) };
    let signature = mechanism.server_signature(&credentials, auth_message.as_bytes());
    Ok(Ok((user_id, format!("v={}", b64().encode(signature)).into_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_messages() {
        let first = parse_client_first(b"n,,n=us=2Cer,r=abc").expect("valid");
        assert_eq!((first.username.as_str(), first.nonce.as_str(), first.gs2_header.as_str()), ("us,er", "abc", "n,,"));
        assert_eq!(first.bare, "n=us=2Cer,r=abc");
        for refused in [&b"p=tls-unique,,n=u,r=a"[..], b"n,,n=u", b"n,,n=u=,r=a", b"n,,n=u,r=a,m=x", b"\xff"] {
            assert!(parse_client_first(refused).is_none(), "{refused:?}");
        }
    }
}
