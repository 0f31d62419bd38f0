//! Server access control lists (`m.room.server_acl`): a server the room's current ACL denies
//! takes no part in the room over federation — its PDUs and EDUs for the room are dropped, and
//! its requests naming the room refused (spec: server-server API, "Server Access Control Lists").

use crate::db;
use crate::error::{Error, Result};
use ruma::events::room::server_acl::RoomServerAclEventContent;
use ruma::{RoomId, ServerName};
use serde::Deserialize;
use sqlx::PgExecutor;

/// Refuses (`M_FORBIDDEN`) a server the room's current ACL denies. A room without an ACL, or
/// one this server does not know, denies nobody.
pub async fn check(db: impl PgExecutor<'_>, room_id: &RoomId, server: &ServerName) -> Result<()> {
    let Some(entry) = db::state::current_state_event(db, room_id.as_str(), "m.room.server_acl", "").await? else {
        return Ok(());
    };
    if allowed_by(&entry.json, server) {
        Ok(())
    } else {
        Err(Error::forbidden(format!("Server {server} is denied by the room's server ACL")))
    }
}

/// Whether the ACL event `event_json` lets `server` take part.
pub fn allowed_by(event_json: &str, server: &ServerName) -> bool {
    #[derive(Deserialize)]
    struct Event {
        content: serde_json::Value,
    }
    let Ok(event) = serde_json::from_str::<Event>(event_json) else { return true };
    // The spec: an ACL whose content is malformed is ignored rather than locking everyone out;
    // its `allow` and `deny` are read leniently (non-string entries skipped).
    let strings =
        |key: &str| -> Vec<String> {
            event.content.get(key).and_then(|v| v.as_array()).map_or_else(Vec::new, |list| {
                list.iter().filter_map(|entry| entry.as_str().map(str::to_owned)).collect()
            })
        };
    let allow_ip_literals = event.content.get("allow_ip_literals").and_then(|v| v.as_bool()).unwrap_or(true);
    RoomServerAclEventContent::new(allow_ip_literals, strings("allow"), strings("deny")).is_allowed(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(content: serde_json::Value) -> String {
        serde_json::json!({ "type": "m.room.server_acl", "content": content }).to_string()
    }

    fn server(name: &str) -> ruma::OwnedServerName {
        ServerName::parse(name).expect("a valid server name")
    }

    #[test]
    fn deny_beats_allow_and_globs_match_ports_away() {
        let event = acl(serde_json::json!({ "allow": ["*"], "deny": ["evil.example", "*.bad.example"] }));
        assert!(allowed_by(&event, &server("good.example")));
        assert!(allowed_by(&event, &server("good.example:8448")));
        assert!(!allowed_by(&event, &server("evil.example")));
        assert!(!allowed_by(&event, &server("evil.example:8448")));
        assert!(!allowed_by(&event, &server("a.bad.example")));
    }

    #[test]
    fn an_empty_allow_list_denies_everyone_and_ip_literals_can_be_refused() {
        assert!(!allowed_by(&acl(serde_json::json!({ "deny": [] })), &server("good.example")));
        let event = acl(serde_json::json!({ "allow": ["*"], "allow_ip_literals": false }));
        assert!(!allowed_by(&event, &server("127.0.0.1:8448")));
        assert!(allowed_by(&event, &server("good.example")));
    }
}
