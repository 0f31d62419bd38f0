//! A room's `required_state`: which state events the client asks for, as `(type, state_key)`
//! pairs where `*` matches any type or key, `$ME` is the user's own key, and
//! `["m.room.member", "$LAZY"]` asks for the members who sent the timeline's events.

use crate::db;
use crate::db::state::StateEntry;
use crate::error::Result;
use crate::store::Store;
use ruma::UserId;
use std::collections::HashSet;

const WILDCARD: &str = "*";
const ME: &str = "$ME";
const LAZY: &str = "$LAZY";
const MEMBER: &str = "m.room.member";

/// The pairs asked for, resolved for one user.
#[derive(PartialEq, Eq)]
pub(super) struct RequiredState {
    /// `["*", "*"]`: the whole state.
    everything: bool,
    /// `[type, "*"]`: every key of these types.
    all_keys_of: HashSet<String>,
    /// `["*", key]`: this key of every type.
    key_of_any_type: HashSet<String>,
    exact: HashSet<(String, String)>,
    /// `["m.room.member", "$LAZY"]`.
    lazy_members: bool,
}

impl RequiredState {
    pub(super) fn of(pairs: &[(String, String)], user: &UserId) -> RequiredState {
        let mut required = RequiredState {
            everything: false,
            all_keys_of: HashSet::new(),
            key_of_any_type: HashSet::new(),
            exact: HashSet::new(),
            lazy_members: false,
        };
        for (event_type, state_key) in pairs {
            let state_key = if state_key == ME { user.as_str() } else { state_key.as_str() };
            match (event_type.as_str(), state_key) {
                (WILDCARD, WILDCARD) => required.everything = true,
                (WILDCARD, key) => _ = required.key_of_any_type.insert(key.to_owned()),
                (MEMBER, LAZY) => required.lazy_members = true,
                (event_type, WILDCARD) => _ = required.all_keys_of.insert(event_type.to_owned()),
                (event_type, key) => _ = required.exact.insert((event_type.to_owned(), key.to_owned())),
            }
        }
        required
    }

    /// Whether anything at all is asked for.
    fn is_empty(&self) -> bool {
        !self.everything
            && !self.lazy_members
            && self.all_keys_of.is_empty()
            && self.key_of_any_type.is_empty()
            && self.exact.is_empty()
    }

    /// Whether a wildcard asks for keys only the whole state can tell.
    fn has_wildcards(&self) -> bool {
        self.everything || !self.all_keys_of.is_empty() || !self.key_of_any_type.is_empty()
    }

    fn matches(&self, entry: &StateEntry, lazy: &HashSet<&str>) -> bool {
        self.everything
            || self.all_keys_of.contains(&entry.event_type)
            || self.key_of_any_type.contains(&entry.state_key)
            || self.exact.contains(&(entry.event_type.clone(), entry.state_key.clone()))
            || (entry.event_type == MEMBER && lazy.contains(entry.state_key.as_str()))
    }

    /// The exact pairs to read, with the lazily loaded members of `senders`.
    fn keys(&self, lazy: &HashSet<&str>) -> Vec<(String, String)> {
        let lazy = lazy.iter().map(|sender| (MEMBER.to_owned(), (*sender).to_owned()));
        self.exact.iter().cloned().chain(lazy).collect()
    }

    /// The state entries of `snapshot` asked for that the client lacks, where the timeline's
    /// events came from `senders`. `before` is what the client had: the state asked for then,
    /// as of that snapshot (`None`: nothing). Asked for as before, that is what changed
    /// since; asked for otherwise (an app opening or closing a room changes the ask), it is
    /// what is asked for now and was not then, and what changed — as Synapse sends it.
    pub(super) async fn read_since(
        &self,
        pool: &Store,
        snapshot: i64,
        before: Option<&(RequiredState, i64)>,
        senders: &HashSet<&str>,
    ) -> Result<Vec<StateEntry>> {
        let Some((asked_before, before_snapshot)) = before else {
            return self.read(pool, snapshot, None, senders).await;
        };
        if asked_before == self {
            return self.read(pool, snapshot, Some(*before_snapshot), senders).await;
        }
        let mut entries = self.read(pool, snapshot, None, senders).await?;
        let changed: HashSet<i64> = match *before_snapshot == snapshot {
            true => HashSet::new(),
            false => db::state::snapshot_changes(pool, *before_snapshot, snapshot, None)
                .await?
                .into_iter()
                .map(|entry| entry.state_key_nid)
                .collect(),
        };
        // Which lazily loaded members were sent is not kept: those are sent again.
        let no_senders = HashSet::new();
        entries.retain(|entry| !asked_before.matches(entry, &no_senders) || changed.contains(&entry.state_key_nid));
        Ok(entries)
    }

    /// The state entries of `snapshot` asked for, where the timeline's events came from
    /// `senders`; with `since_snapshot`, only those changed since that snapshot (and the
    /// lazily loaded members whatever their age: the client may not have them).
    async fn read(
        &self,
        pool: &Store,
        snapshot: i64,
        since_snapshot: Option<i64>,
        senders: &HashSet<&str>,
    ) -> Result<Vec<StateEntry>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let lazy: HashSet<&str> = match self.lazy_members {
            true => senders.clone(),
            false => HashSet::new(),
        };
        let mut entries = match since_snapshot {
            Some(since) if since == snapshot => Vec::new(),
            Some(since) => db::state::snapshot_changes(pool, since, snapshot, None).await?,
            None if self.has_wildcards() => db::state::snapshot_state(pool, snapshot).await?,
            None => db::state::snapshot_state_for_keys(pool, snapshot, &self.keys(&lazy)).await?,
        };
        entries.retain(|entry| self.matches(entry, &lazy));
        if since_snapshot.is_some() && !lazy.is_empty() {
            let have: HashSet<i64> = entries.iter().map(|entry| entry.state_key_nid).collect();
            let members: Vec<(String, String)> =
                lazy.iter().map(|sender| (MEMBER.to_owned(), (*sender).to_owned())).collect();
            let members = db::state::snapshot_state_for_keys(pool, snapshot, &members).await?;
            entries.extend(members.into_iter().filter(|entry| !have.contains(&entry.state_key_nid)));
        }
        entries.sort_by(|a, b| (&a.event_type, &a.state_key).cmp(&(&b.event_type, &b.state_key)));
        Ok(entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(event_type: &str, state_key: &str) -> StateEntry {
        StateEntry {
            state_key_nid: 0,
            event_type: event_type.to_owned(),
            state_key: state_key.to_owned(),
            event_nid: 0,
            event_id: String::new(),
            json: String::new(),
            has_redaction: None,
        }
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(t, k)| ((*t).to_owned(), (*k).to_owned())).collect()
    }

    #[test]
    fn wildcards_me_and_lazy_pick_what_they_name() {
        let user = UserId::parse("@me:example.org").unwrap_or_else(|_| unreachable!());
        let required = RequiredState::of(
            &pairs(&[
                ("m.room.name", ""),
                ("m.space.child", "*"),
                ("*", "x"),
                ("m.room.member", "$ME"),
                (MEMBER, LAZY),
            ]),
            &user,
        );
        let lazy: HashSet<&str> = ["@sender:example.org"].into();
        assert!(required.matches(&entry("m.room.name", ""), &lazy));
        assert!(!required.matches(&entry("m.room.topic", ""), &lazy));
        assert!(required.matches(&entry("m.space.child", "!a:b"), &lazy));
        assert!(required.matches(&entry("anything", "x"), &lazy));
        assert!(required.matches(&entry(MEMBER, "@me:example.org"), &lazy));
        assert!(required.matches(&entry(MEMBER, "@sender:example.org"), &lazy));
        assert!(!required.matches(&entry(MEMBER, "@other:example.org"), &lazy));
        assert!(required.has_wildcards());
        let everything = RequiredState::of(&pairs(&[("*", "*")]), &user);
        assert!(everything.matches(&entry("m.room.topic", ""), &HashSet::new()));
        assert!(RequiredState::of(&[], &user).is_empty());
    }
}
