//! What every admin handler takes: the authenticated admin (checked before anything else of
//! the request is read), its path arguments, query and JSON body, each refused with the spec's
//! error JSON. Synapse's admin API has no ruma types, so the bodies are parsed with serde
//! (`http::plain`).

use crate::error::{Error, Result};
use crate::http::ruma::{authenticate, client_info};
use crate::state::AppState;
use crate::users::Session;
use crate::users::actor::Actor;
use axum::extract::FromRequestParts;
use http::request::Parts;

pub(super) use crate::http::plain::{Args, Json, Query};

/// An access token of a server admin. Extracted first in every admin handler: a request
/// without one is refused (`M_MISSING_TOKEN`, `M_UNKNOWN_TOKEN`, or `M_FORBIDDEN` for a
/// non-admin) before its path, query or body is looked at.
pub(super) struct Admin {
    pub session: Session,
    pub request_id: String,
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let client = client_info(parts);
        let session = authenticate(parts, state, &client, true).await?.ok_or_else(Error::missing_token)?;
        tracing::Span::current().record("user", session.user_id.as_str());
        if !session.is_admin {
            return Err(Error::forbidden("You are not a server admin"));
        }
        let request_id =
            parts.headers.get("x-request-id").and_then(|value| value.to_str().ok()).unwrap_or("-").to_owned();
        Ok(Admin { session, request_id })
    }
}

impl Admin {
    /// Records the action in the audit log (see [`crate::admin::audit`]).
    pub(super) fn audit(&self, action: &str, target: &str) {
        crate::admin::audit(self.actor(), action, target, &self.request_id);
    }

    /// The admin as the domain's admin operations take them: through their device.
    pub(super) fn actor(&self) -> Actor<'_> {
        Actor::Device(&self.session)
    }

    pub(super) fn user_id(&self) -> &ruma::UserId {
        &self.session.user_id
    }
}
