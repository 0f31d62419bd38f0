-- Each user's server-notices room (creators/notices.rs): where the server tells a user what
-- needs their attention (a declined tip's billing link), from the reserved `_server_notices`
-- account. One per user, created on the first notice.
CREATE TABLE server_notice_rooms (
    user_id TEXT PRIMARY KEY REFERENCES users (user_id) ON DELETE CASCADE,
    room_id TEXT NOT NULL
);
