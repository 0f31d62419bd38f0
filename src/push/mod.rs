//! Push (DESIGN §4a): users' push rules, the notifications they produce for every new event
//! (`event_push_actions`), which drive `/sync`'s unread counts and `GET /notifications`, and
//! the pushers that deliver them to push gateways.

mod delivery;
pub(crate) mod evaluate;
pub(crate) mod gateway;
pub(crate) mod notifications;
pub(crate) mod pushers;
pub(crate) mod rules;
pub(crate) mod ruleset;
pub(crate) mod sender;

pub use evaluate::record_notifications;
