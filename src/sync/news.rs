//! Which parts of a sync window can hold anything, learnt in one query before the sections
//! are built: an incremental sync then reads only the streams that moved. A long-poll that
//! wakes for a message in one room used to run a dozen empty queries (account data, to-device,
//! presence, device lists, typing, receipts, ...) before building that room.

use crate::db;
use crate::db::push_actions::UnreadRow;
use crate::db::sync::{MembershipRow, WindowNews};
use crate::db::unread::ReadPositions;
use crate::error::Result;
use crate::store::Store;
use crate::sync::types::SyncWindow;
use ruma::events::room::member::MembershipState;
use ruma::{DeviceId, UserId};
use std::collections::{HashMap, HashSet};

/// What the window holds, as far as the client asked for it.
pub struct News {
    /// `None` on an initial sync, where every section is read.
    found: Option<WindowNews>,
    wanted: Wanted,
    /// The user's read positions in the rooms with events in the window, as the news read them.
    read_positions: HashMap<String, ReadPositions>,
    /// The window's start, on an incremental sync.
    since: Option<i64>,
}

/// The user's push action rows of one room in the window `(since, upto]`: all of them, as the
/// news read them.
pub struct WindowRows {
    pub since: i64,
    pub rows: Vec<UnreadRow>,
}

/// The sections a sync filter lets anything through: one the filter empties whatever it
/// holds is not read at all (a client that filters out presence must not pay for reading it).
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub account_data: bool,
    pub room_account_data: bool,
    pub presence: bool,
    pub typing: bool,
    pub receipts: bool,
}

/// What the presence section may hold: presence changed in the window, and memberships did
/// (which can bring users newly sharing a room, whose presence is sent changed or not).
#[derive(Clone, Copy, Debug)]
pub struct PresenceNews {
    pub changed: bool,
    pub members_changed: bool,
}

impl PresenceNews {
    pub fn any(self) -> bool {
        self.changed || self.members_changed
    }
}

impl Wanted {
    pub const ALL: Wanted =
        Wanted { account_data: true, room_account_data: true, presence: true, typing: true, receipts: true };
}

impl News {
    /// The news of `window` for the user, whose memberships (as `room_memberships` holds them
    /// now) are given.
    pub async fn of(
        pool: &Store,
        user: &UserId,
        device: Option<&DeviceId>,
        memberships: &[MembershipRow],
        window: SyncWindow,
        wanted: Wanted,
    ) -> Result<News> {
        let Some(query) = Self::query((user, device), (memberships, None), window) else {
            return Ok(News::initial(wanted));
        };
        let found = db::sync::window_news(pool, std::slice::from_ref(&query)).await?.pop();
        Ok(News::found(found.unwrap_or_default(), wanted, query.after))
    }

    /// [`News::of`] with memberships known through a position rather than read now: the news
    /// then also says whether they moved since ([`News::memberships_moved`]). The syncs asking
    /// at once (those one message woke) are answered together (`news_batch`).
    pub async fn checking(
        pool: &Store,
        (user, device): (&UserId, Option<&DeviceId>),
        known: (&[MembershipRow], Option<i64>),
        window: SyncWindow,
        wanted: Wanted,
    ) -> Result<News> {
        let Some(query) = Self::query((user, device), known, window) else {
            return Ok(News::initial(wanted));
        };
        let since = query.after;
        let found = crate::sync::news_batch::window_news(pool, query).await?;
        Ok(News::found(found, wanted, since))
    }

    /// What to ask the database for an incremental window (`None` for an initial sync, which
    /// reads every section).
    fn query(
        (user, device): (&UserId, Option<&DeviceId>),
        (memberships, memberships_through): (&[MembershipRow], Option<i64>),
        window: SyncWindow,
    ) -> Option<db::sync::NewsQuery> {
        let since = window.since?;
        // The rooms whose events can reach this window: those the user is in, and those whose
        // membership changed after `since` (a room left since may still be joined at `upto`).
        let rooms: Vec<String> = memberships
            .iter()
            .filter(|row| {
                row.membership != MembershipState::Leave && row.membership != MembershipState::Ban
                    || row.stream_position > since
            })
            .map(|row| row.room_id.clone())
            .collect();
        Some(db::sync::NewsQuery {
            user_id: user.to_string(),
            device_id: device.map(|device| device.as_str().to_owned()),
            rooms,
            after: since,
            upto: window.upto,
            memberships_through,
        })
    }

    fn initial(wanted: Wanted) -> News {
        News { found: None, wanted, read_positions: HashMap::new(), since: None }
    }

    fn found(mut found: WindowNews, wanted: Wanted, since: i64) -> News {
        let read_positions = db::unread::group_read_positions(std::mem::take(&mut found.read_positions));
        News { found: Some(found), wanted, read_positions, since: Some(since) }
    }

    /// Whether the memberships the news was given are out of date (then look again with
    /// memberships read afresh: this news may be missing rooms).
    pub fn memberships_moved(&self) -> bool {
        self.found.as_ref().is_some_and(|news| news.memberships_moved)
    }

    pub fn account_data(&self) -> bool {
        (self.wanted.account_data || self.wanted.room_account_data) && self.flag(|news| news.account_data)
    }

    pub fn presence(&self) -> PresenceNews {
        PresenceNews {
            changed: self.wanted.presence && self.flag(|news| news.presence),
            members_changed: self.wanted.presence && self.flag(|news| news.member_changes),
        }
    }

    /// Device lists change with keys and with who shares a room with the user.
    pub fn device_lists(&self) -> bool {
        self.flag(|news| news.device_list_changes || news.member_changes)
    }

    pub fn to_device(&self) -> bool {
        self.flag(|news| news.to_device)
    }

    /// Of the user's joined rooms, those with timeline events in the window (`None`: all may).
    pub fn rooms_with_events(&self) -> Option<&[String]> {
        self.rooms(true, |news| &news.rooms_with_events)
    }

    /// Rooms whose typing set changed (`None`: all may).
    pub fn rooms_with_typing(&self) -> Option<&[String]> {
        self.rooms(self.wanted.typing, |news| &news.rooms_with_typing)
    }

    /// Rooms with receipts the user may see (`None`: all may).
    pub fn rooms_with_receipts(&self) -> Option<&[String]> {
        self.rooms(self.wanted.receipts, |news| &news.rooms_with_receipts)
    }

    /// The device's key counts, when the news read them (`None`: read them yourself).
    pub fn key_counts(&self) -> Option<&crate::db::e2ee_keys::DeviceKeyCounts> {
        self.found.as_ref().map(|news| &news.key_counts)
    }

    /// The users the user ignores, when the news read them (`None`: read them yourself).
    pub fn ignored_users(&self) -> Option<HashSet<String>> {
        let news = self.found.as_ref()?;
        Some(crate::users::ignore::ignored_in(news.ignored_user_list.as_ref().and_then(|list| list.as_value())))
    }

    /// The user's read positions in `room_id` when the news read them: it does for the rooms
    /// with events in the window (`None`: read them yourself; no entry in a room the news read
    /// means no membership row there).
    pub fn read_positions(&self, room_id: &str) -> Option<Option<&ReadPositions>> {
        let news = self.found.as_ref()?;
        news.rooms_with_events.iter().any(|room| room == room_id).then(|| self.read_positions.get(room_id))
    }

    /// The user's push action rows of `room_id` in the window, when the news read all of them.
    pub fn unread_rows(&self, room_id: &str) -> Option<WindowRows> {
        let (news, since) = (self.found.as_ref()?, self.since?);
        // Rows were read for the rooms with events only (those are the rooms that can have any).
        let active = news.rooms_with_events.iter().any(|room| room == room_id);
        if !active || news.unread_rows.len() > db::sync::WINDOW_UNREAD_ROWS {
            return None;
        }
        let rows = news.unread_rows.iter().filter(|row| row.room_id == room_id).map(|row| row.row.clone()).collect();
        Some(WindowRows { since, rows })
    }

    fn rooms(&self, wanted: bool, read: impl Fn(&WindowNews) -> &Vec<String>) -> Option<&[String]> {
        if !wanted {
            return Some(&[]);
        }
        self.found.as_ref().map(|news| read(news).as_slice())
    }

    fn flag(&self, read: impl Fn(&WindowNews) -> bool) -> bool {
        self.found.as_ref().is_none_or(read)
    }
}
