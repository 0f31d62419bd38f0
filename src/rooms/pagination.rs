//! Pagination tokens of history and relations pages.

use crate::error::{Error, Result};

/// Pagination tokens are stream positions: `s{N}` is the point just after the event at N. A
/// `/sync` token names the same kind of point (everything up to N delivered), and the spec
/// lets `from` and `to` be any token the server handed out, so those are accepted too. History
/// backfilled from other servers sits at negative positions (below everything received live),
/// so a page token may be negative.
pub fn parse_token(token: &str) -> Result<i64> {
    if let Some(page_position) = token.strip_prefix('s').and_then(|n| n.parse::<i64>().ok()) {
        return Ok(page_position);
    }
    crate::streams::token::decode(token)
        .map_err(|_| Error::invalid_param(format!("Invalid pagination token {token:?}")))
}
