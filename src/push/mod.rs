//! Push (DESIGN §4a): users' push rules, the notifications they produce for every new event
//! (`event_push_actions`), which drive `/sync`'s unread counts and `GET /notifications`, and
//! the pushers that deliver them to push gateways.

mod delivery;
pub mod evaluate;
pub mod gateway;
pub mod notifications;
pub mod pushers;
pub mod rules;
pub mod ruleset;
pub mod sender;

pub use evaluate::record_notifications;
