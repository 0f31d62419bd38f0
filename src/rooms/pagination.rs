//! Pagination tokens of history and relations pages.

use crate::error::{Error, Result};

/// Pagination tokens are stream positions: `s{N}` is the point just after the event at N.
pub fn parse_token(token: &str) -> Result<i64> {
    token
        .strip_prefix('s')
        .and_then(|n| n.parse::<i64>().ok())
        .filter(|n| *n >= 0)
        .ok_or_else(|| Error::invalid_param(format!("Invalid pagination token {token:?}")))
}
