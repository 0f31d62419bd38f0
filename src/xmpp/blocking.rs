//! Blocking (XEP-0191) is Hearth's blocking: the block list is the user's
//! `m.ignored_user_list` (`users::ignore`), so a block set from XMPP holds for every Matrix
//! client and one set from Matrix shows in the XMPP block list. Only local users have XMPP
//! addresses, so only they can be named; a message to a blocked contact is refused (§3.4) and
//! nothing from one is delivered (`delivery.rs`).

use crate::state::AppState;
use crate::xmpp::chat::jid_of;
use crate::xmpp::session::{Session, iq_error, local_user};
use minidom::Element;
use ruma::UserId;
use std::collections::HashSet;
use xmpp_parsers::blocking::{Block, Blocked, BlocklistResult, Unblock};
use xmpp_parsers::iq::Iq;
use xmpp_parsers::jid::Jid;
use xmpp_parsers::stanza_error::{DefinedCondition, ErrorType, StanzaError};

/// `<blocklist/>`: the blocked users that have XMPP addresses, sorted.
pub(super) async fn list(state: &AppState, session: &Session, id: &str) -> Iq {
    let blocked = match blocked(state, session).await {
        Ok(blocked) => blocked,
        Err(error) => return failure(id, error),
    };
    let domain = session.jid.domain().as_str();
    let mut items: Vec<Jid> = blocked
        .iter()
        .filter_map(|user| UserId::parse(user).ok())
        .filter(|user| user.server_name() == state.server_name)
        .filter_map(|user| jid_of(&user, domain).map(Jid::from))
        .collect();
    items.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    Iq::from_result(id, Some(BlocklistResult { items }))
}

/// `<block/>` or `<unblock/>`: changes the ignore list one user at a time (each change is
/// whole); an `<unblock/>` naming nobody unblocks everyone (§3.3).
pub(super) async fn change(state: &AppState, session: &Session, id: &str, payload: Element) -> Iq {
    let (on, items) = match payload.name() {
        "block" => match Block::try_from(payload) {
            Ok(Block { items }) if !items.is_empty() => (true, items),
            _ => return iq_error(id, ErrorType::Modify, DefinedCondition::BadRequest),
        },
        _ => match Unblock::try_from(payload) {
            Ok(Unblock { items }) => (false, items),
            Err(_) => return iq_error(id, ErrorType::Modify, DefinedCondition::BadRequest),
        },
    };
    let domain = session.jid.domain().as_str();
    let users: Option<Vec<_>> = items.iter().map(|jid| local_user(jid, domain, &state.server_name)).collect();
    let users = match users {
        // Nothing but this server's users can be on a Matrix ignore list.
        None => return iq_error(id, ErrorType::Cancel, DefinedCondition::ItemNotFound),
        Some(users) if users.is_empty() => match blocked(state, session).await {
            Ok(all) => all.iter().filter_map(|user| UserId::parse(user).ok()).collect(),
            Err(error) => return failure(id, error),
        },
        Some(users) => users,
    };
    for user in &users {
        let user_id = &session.matrix.user_id;
        if let Err(error) = crate::users::ignore::set_blocked(&state.pool, &state.streams, user_id, user, on).await {
            return failure(id, error);
        }
    }
    Iq::empty_result(session.jid.clone().into(), id)
}

/// The Matrix ids the user blocks.
pub(super) async fn blocked(state: &AppState, session: &Session) -> crate::Result<HashSet<String>> {
    crate::users::ignore::ignored_users(&state.pool, &session.matrix.user_id).await
}

/// The `not-acceptable` + `<blocked/>` error of a message to a blocked contact (§3.4).
pub(super) fn blocked_error() -> StanzaError {
    let mut error = StanzaError::new(ErrorType::Cancel, DefinedCondition::NotAcceptable, "en", "");
    error.other = Some(Blocked.into());
    error
}

fn failure(id: &str, error: crate::Error) -> Iq {
    match error {
        // Blocking oneself, say: the client asked for something that cannot be.
        crate::Error::Matrix { .. } => iq_error(id, ErrorType::Modify, DefinedCondition::NotAcceptable),
        error => {
            tracing::error!(%error, "changing the block list from XMPP failed");
            iq_error(id, ErrorType::Wait, DefinedCondition::InternalServerError)
        }
    }
}
