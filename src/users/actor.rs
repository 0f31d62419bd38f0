//! Who asks for an operation. Most requests come from a user through one of their devices (an
//! access token, a [`Session`]); operators act on the server without being a device of anyone —
//! the `hearth` CLI today, the admin API and moderation tools next. Domain functions that
//! operators may call take an [`Actor`], so the same rules serve both and the operator's path
//! never has to invent a session.

use crate::users::Session;
use ruma::UserId;

#[derive(Clone, Copy, Debug)]
pub(crate) enum Actor<'a> {
    /// A user, through one of their devices.
    Device(&'a Session),
    /// The server's operator: every power over the server's own data, and no device.
    Operator,
}

impl Actor<'_> {
    /// The acting user, if a user acts.
    pub(crate) fn user_id(&self) -> Option<&UserId> {
        match self {
            Actor::Device(session) => Some(&session.user_id),
            Actor::Operator => None,
        }
    }

    /// Whether the actor may manage what belongs to the server as a whole: an operator, or a
    /// server admin's device.
    pub(crate) fn is_admin(&self) -> bool {
        match self {
            Actor::Device(session) => session.is_admin,
            Actor::Operator => true,
        }
    }

    /// Whether the actor may read and change `user`'s own data: the user, or an operator.
    pub(crate) fn may_act_for(&self, user: &UserId) -> bool {
        match self {
            Actor::Device(session) => session.user_id == user,
            Actor::Operator => true,
        }
    }

    /// For logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            Actor::Device(session) => session.user_id.to_string(),
            Actor::Operator => "the operator".to_owned(),
        }
    }
}
