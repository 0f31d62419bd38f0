//! Sync tokens: opaque to clients, versioned for us. Today a token is one global stream
//! position (`h1_<position>`); a later version may carry more (e.g. per-writer positions) and
//! the version prefix lets old tokens keep working. They name points of the stream, so other
//! readers of it (history pages, relations) accept them too.

use crate::error::{Error, Result};

const PREFIX: &str = "h1_";

pub fn encode(position: i64) -> String {
    format!("{PREFIX}{position}")
}

/// Parses a client's `since`. Tokens this server never handed out are the client's mistake
/// (`M_INVALID_PARAM`), never a silent full resync.
pub fn decode(token: &str) -> Result<i64> {
    token
        .strip_prefix(PREFIX)
        .and_then(|position| position.parse::<i64>().ok())
        .filter(|position| *position >= 0)
        .ok_or_else(|| Error::invalid_param(format!("Unknown sync token {token:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(&encode(42)).ok(), Some(42));
        for bad in ["", "42", "h1_", "h1_-3", "h1_x", "h2_5", "s5"] {
            assert_eq!(decode(bad).map_err(|e| e.errcode()).err().as_deref(), Some("M_INVALID_PARAM"), "{bad}");
        }
    }
}
