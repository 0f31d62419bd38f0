//! The inbound PDU pipeline: what another server sends (or answers with) is checked in the
//! spec's order — format, signatures, content hash (`check`), then auth against its auth
//! events, the state before it and the current state (`accept`) — and stored through the same
//! path as local events. What is missing to judge a PDU is fetched (`fetching`: missing events;
//! `state_fetch`: auth chains and the state before unfillable gaps) and kept through the one
//! outlier writer (`outliers`), which also keeps rejected events so they are never judged again.

pub mod accept;
pub mod check;
pub mod edus;
pub mod fetching;
pub mod outliers;
pub mod serve;
pub mod state_fetch;
pub mod transaction;

pub use accept::{
    Accepted, FetchedParentState, MissingPrevEvents, accept_with_known_parents, accept_with_parent_states,
};
pub use check::{CheckedPdu, check_pdu_with_keys, parse_pdu, signing_keys_wanted, verify_pdu};
pub use fetching::{accept_pdu, check_pdu};
pub use outliers::{StoredOutliers, check_fetched, store_outliers};
