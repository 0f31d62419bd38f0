//! Push (DESIGN §4a): users' push rules, and the notifications they produce for every new
//! event (`event_push_actions`), which drive `/sync`'s unread counts, `GET /notifications`
//! and the pushers.

pub mod evaluate;
pub mod notifications;
pub mod rules;
pub mod ruleset;

pub use evaluate::record_notifications;
