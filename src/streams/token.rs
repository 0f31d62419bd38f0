//! Stream tokens: opaque to clients, versioned for us. A `/sync` token is one global stream
//! position (`h1_<position>`); a later version may carry more (e.g. per-writer positions) and
//! the version prefix lets old tokens keep working. History pages (`/messages`, `/context`,
//! relations, a timeline's `prev_batch`) hand out `s<position>`, the point just after the event
//! at that position. Both name points of the one stream, and clients pass any token they got to
//! any endpoint that takes one (Element gives `/members?at=` its `/sync` token), so every reader
//! decodes both kinds through [`decode`].

use crate::error::{Error, Result};

const PREFIX: &str = "h1_";
const PAGE_PREFIX: &str = "s";

pub(crate) fn encode(position: i64) -> String {
    format!("{PREFIX}{position}")
}

/// A history page's token for the point just after the event at `position`.
pub(crate) fn encode_page(position: i64) -> String {
    format!("{PAGE_PREFIX}{position}")
}

/// Parses any stream token a client was handed (`since`, `from`, `to`, `at`). Tokens this server
/// never handed out are the client's mistake (`M_INVALID_PARAM`), never a silent full resync.
pub(crate) fn decode(token: &str) -> Result<i64> {
    let digits = |position: &str| !position.is_empty() && position.bytes().all(|byte| byte.is_ascii_digit());
    // Page tokens may be negative: history backfilled from other servers sits below position 0.
    let page = |position: &str| digits(position.strip_prefix('-').unwrap_or(position));
    token
        .strip_prefix(PREFIX)
        .filter(|position| digits(position))
        .or_else(|| token.strip_prefix(PAGE_PREFIX).filter(|position| page(position)))
        .and_then(|position| position.parse::<i64>().ok())
        .ok_or_else(|| Error::invalid_param(format!("Unknown stream token {token:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        assert_eq!(decode(&encode(42)).ok(), Some(42));
        assert_eq!(decode(&encode_page(42)).ok(), Some(42));
        assert_eq!(decode(&encode_page(-7)).ok(), Some(-7), "backfilled history");
        for bad in ["", "42", "h1_", "h1_-3", "h1_x", "h1_+3", "h2_5", "s", "s-", "s--5", "s+5", "s5x", "t5"] {
            assert_eq!(decode(bad).map_err(|e| e.errcode()).err().as_deref(), Some("M_INVALID_PARAM"), "{bad}");
        }
    }
}
