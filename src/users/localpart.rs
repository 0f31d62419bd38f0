//! User id rules: what a new account may be called, and how a login names an account.

use crate::error::{Error, Result};
use ruma::{OwnedUserId, ServerName, UserId};

/// The spec's limit on a whole user id, in bytes.
const MAX_USER_ID_LENGTH: usize = 255;

/// Checks a requested localpart against the spec's rules for new accounts (only
/// `a-z 0-9 . _ = - / +`, whole id at most 255 bytes) and Synapse's reservations (no leading
/// underscore, which appservices use; no all-digit names, which guests get).
pub(crate) fn new_user_id(localpart: &str, server_name: &ServerName) -> Result<OwnedUserId> {
    if localpart.is_empty() {
        return Err(Error::invalid_username("The username must not be empty"));
    }
    if !localpart.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+')) {
        return Err(Error::invalid_username("A username may only contain a-z, 0-9 and the characters ._=-/+"));
    }
    if localpart.starts_with('_') {
        return Err(Error::invalid_username("A username may not begin with an underscore"));
    }
    if localpart.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::invalid_username("All-numeric usernames are reserved for guest accounts"));
    }
    let user_id = format!("@{localpart}:{server_name}");
    if user_id.len() > MAX_USER_ID_LENGTH {
        return Err(Error::invalid_username(format!(
            "The user id would be {} bytes long; the limit is {MAX_USER_ID_LENGTH}",
            user_id.len()
        )));
    }
    UserId::parse(user_id).map_err(|error| Error::invalid_username(format!("Invalid username: {error}")))
}

/// Resolves what a user typed at login (a localpart or a full user id) to a local user id.
/// Localparts are matched case-insensitively, as Synapse does, since new ones are lower case.
/// `None` means it cannot be a local account; callers answer that like a wrong password.
pub(crate) fn login_user_id(input: &str, server_name: &ServerName) -> Option<OwnedUserId> {
    let input = input.trim();
    let localpart = match input.strip_prefix('@') {
        Some(rest) => {
            let (localpart, server) = rest.split_once(':')?;
            if server != server_name.as_str() {
                return None;
            }
            localpart
        }
        None => input,
    };
    if localpart.is_empty() {
        return None;
    }
    UserId::parse(format!("@{}:{server_name}", localpart.to_lowercase())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> &'static ServerName {
        <&ServerName>::try_from("example.org").expect("valid")
    }

    #[test]
    fn accepts_the_spec_alphabet() {
        assert_eq!(
            new_user_id("alice.b-c=d/e+f", server()).map(|id| id.to_string()).ok(),
            Some("@alice.b-c=d/e+f:example.org".into())
        );
    }

    #[test]
    fn refuses_what_the_spec_forbids() {
        for bad in ["", "Alice", "al ice", "zoë", "_bridge", "12345", "a:b", &"x".repeat(250)] {
            let error = new_user_id(bad, server()).expect_err(bad);
            assert_eq!(error.errcode(), "M_INVALID_USERNAME", "{bad}");
        }
    }

    #[test]
    fn login_names_resolve_case_insensitively() {
        let id = login_user_id("@Alice:example.org", server()).map(|id| id.to_string());
        assert_eq!(id.as_deref(), Some("@alice:example.org"));
        assert_eq!(login_user_id("BOB", server()).map(|id| id.to_string()).as_deref(), Some("@bob:example.org"));
        assert!(login_user_id("@alice:elsewhere.org", server()).is_none());
        assert!(login_user_id("", server()).is_none());
    }
}
