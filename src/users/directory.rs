//! The user directory (`POST /user_directory/search`): finding people by user id or display
//! name, among those the searcher may discover.

use crate::db;
use crate::error::Result;
use crate::store::Store;
use ruma::api::client::user_directory::search_users::v3::User;
use ruma::{OwnedMxcUri, UserId};

/// Synapse caps every search at this many results.
pub(crate) const MAX_LIMIT: u64 = 50;

pub(crate) struct SearchResults {
    pub results: Vec<User>,
    /// More users matched than were returned.
    pub limited: bool,
}

/// Users whose user id or display name contains `term`, case-insensitively: active local
/// users, and remote users this server has seen join a room. As with Synapse's default
/// (`search_all_users: false`), only users who share a room with the searcher or sit in a
/// public room (join rule `public`, or world-readable history) are found — the searcher too,
/// only through a public room. Deactivated users never are.
pub(crate) async fn search(pool: &Store, searcher: &UserId, term: &str, limit: u64) -> Result<SearchResults> {
    let term = term.trim();
    if term.is_empty() {
        return Ok(SearchResults { results: Vec::new(), limited: false });
    }
    let limit = limit.min(MAX_LIMIT) as usize;
    // One more than wanted tells whether the results were cut short.
    let mut found = db::directory::search_users(pool, searcher.as_str(), term, limit as i64 + 1).await?;
    let limited = found.len() > limit;
    found.truncate(limit);
    let results = found
        .into_iter()
        .filter_map(|user| {
            // Local ids were validated when created, remote ones when their join was accepted;
            // one that still does not parse is left out rather than failing the search.
            let mut result = User::new(UserId::parse(&user.user_id).ok()?);
            result.display_name = user.display_name.filter(|name| !name.is_empty());
            result.avatar_url = user.avatar_url.filter(|url| !url.is_empty()).map(OwnedMxcUri::from);
            Some(result)
        })
        .collect();
    Ok(SearchResults { results, limited })
}
