//! Pagination tokens of history and relations pages.

use crate::error::Result;

/// Pagination tokens are stream positions: `s{N}` is the point just after the event at N. A
/// `/sync` token names the same kind of point (everything up to N delivered), and the spec
/// lets `from` and `to` be any token the server handed out, so those are accepted too
/// (`streams::token` reads both). History backfilled from other servers sits at negative
/// positions (below everything received live), so a page token may be negative.
pub(crate) fn parse_token(token: &str) -> Result<i64> {
    crate::streams::token::decode(token)
}

/// The token of the point just after the event at `position`.
pub(crate) fn page_token(position: i64) -> String {
    crate::streams::token::encode_page(position)
}
