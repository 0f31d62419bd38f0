//! TURN credentials for calls (`GET /voip/turnServer`).
//!
//! Hearth does not relay media itself; it hands clients short-lived credentials for the
//! operator's TURN server. They are made from a secret the TURN server shares (coturn's
//! `use-auth-secret`, the "TURN REST API" scheme): the username is `<expiry>:<user id>` and the
//! password HMAC-SHA1(secret, username) in base64, so the TURN server checks them without
//! asking Hearth, and they stop working at the expiry.

use crate::config::VoipConfig;
use base64::Engine;
use hmac::{Hmac, Mac};
use ruma::UserId;
use sha1::Sha1;
use std::time::Duration;

/// What a client needs to use the TURN server.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TurnCredentials {
    pub username: String,
    pub password: String,
    pub uris: Vec<String>,
    pub ttl: Duration,
}

/// Credentials for `user`, valid from `now_secs` (Unix time) for the configured lifetime; `None`
/// when the operator configured no TURN server or no shared secret to make credentials with.
pub(crate) fn credentials(config: &VoipConfig, user: &UserId, now_secs: u64) -> Option<TurnCredentials> {
    let secret = config.turn_shared_secret.as_deref().filter(|secret| !secret.is_empty())?;
    if config.turn_uris.is_empty() {
        return None;
    }
    let expiry = now_secs.saturating_add(config.turn_user_lifetime_secs);
    let username = format!("{expiry}:{user}");
    // HMAC takes a key of any length; the error arm cannot happen, and then there are no credentials.
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    Some(TurnCredentials {
        username,
        password,
        uris: config.turn_uris.clone(),
        ttl: Duration::from_secs(config.turn_user_lifetime_secs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(secret: Option<&str>, uris: &[&str]) -> VoipConfig {
        VoipConfig {
            turn_uris: uris.iter().map(|uri| (*uri).to_owned()).collect(),
            turn_shared_secret: secret.map(str::to_owned),
            turn_user_lifetime_secs: 3600,
        }
    }

    #[test]
    fn credentials_follow_the_turn_rest_scheme() {
        let user = UserId::parse("@alice:example.org").unwrap();
        let made = credentials(&config(Some("s3cret"), &["turn:turn.example.org"]), &user, 1_000).unwrap();
        assert_eq!(made.username, "4600:@alice:example.org");
        // coturn's check, done independently: base64(HMAC-SHA1(secret, username)).
        let mut mac = Hmac::<Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"4600:@alice:example.org");
        mac.verify_slice(&base64::engine::general_purpose::STANDARD.decode(&made.password).unwrap()).unwrap();
        assert_eq!(made.ttl, Duration::from_secs(3600));
    }

    #[test]
    fn no_credentials_without_uris_or_secret() {
        let user = UserId::parse("@alice:example.org").unwrap();
        assert_eq!(credentials(&config(None, &["turn:t"]), &user, 0), None);
        assert_eq!(credentials(&config(Some(""), &["turn:t"]), &user, 0), None);
        assert_eq!(credentials(&config(Some("s"), &[]), &user, 0), None);
    }
}
