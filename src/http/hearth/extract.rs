//! The caller of a `/_hearth/client/v1` endpoint: a signed-in, non-guest user, checked before
//! anything else of the request is read.

use crate::error::{Error, Result};
use crate::http::ruma::{authenticate, client_info};
use crate::state::AppState;
use crate::users::Session;
use axum::extract::FromRequestParts;
use http::request::Parts;

pub(super) struct Member(pub Session);

impl FromRequestParts<AppState> for Member {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self> {
        let client = client_info(parts);
        let session = authenticate(parts, state, &client, true).await?.ok_or_else(Error::missing_token)?;
        tracing::Span::current().record("user", session.user_id.as_str());
        if session.is_guest {
            return Err(Error::guest_access_forbidden("Guests cannot use this endpoint"));
        }
        Ok(Member(session))
    }
}
