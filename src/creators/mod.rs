//! Creator features (issue #21): the creator flag, tips with a billing webhook, broadcast lists. They ride on
//! Matrix (a profile field, `m.room.message` with a custom msgtype) so standard clients keep
//! working; `http/hearth/` serves the namespaced API (`/_hearth/client/v1/...`, docs/API.md).

pub mod billing;
pub(crate) mod broadcast;
pub mod flag;
pub(crate) mod notices;
pub mod tips;
