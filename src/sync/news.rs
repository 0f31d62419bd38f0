//! Which parts of a sync window can hold anything, learnt in one query before the sections
//! are built: an incremental sync then reads only the streams that moved. A long-poll that
//! wakes for a message in one room used to run a dozen empty queries (account data, to-device,
//! presence, device lists, typing, receipts, ...) before building that room.

use crate::db;
use crate::db::sync::{MembershipRow, WindowNews};
use crate::error::Result;
use crate::store::Store;
use crate::sync::types::SyncWindow;
use ruma::events::room::member::MembershipState;
use ruma::{DeviceId, UserId};
use std::collections::HashSet;

/// What the window holds, as far as the client asked for it.
pub struct News {
    /// `None` on an initial sync, where every section is read.
    found: Option<WindowNews>,
    wanted: Wanted,
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
        let Some(since) = window.since else { return Ok(News { found: None, wanted }) };
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
        let device = device.map(DeviceId::as_str);
        let found = db::sync::window_news(pool, user.as_str(), device, &rooms, since, window.upto).await?;
        Ok(News { found: Some(found), wanted })
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
