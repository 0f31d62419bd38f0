//! Upload handlers. The body is handed to the domain as a stream; only the headers and the
//! query are read here.

use crate::error::{Error, Result};
use crate::http::ruma::{Authed, RumaResponse, authenticate, client_info};
use crate::media::upload::{Body, UploadMeta, too_large};
use crate::ratelimit::Action;
use crate::state::AppState;
use crate::users::Session;
use axum::extract::{FromRequest, FromRequestParts, Query, RawPathParams, Request};
use axum::response::IntoResponse;
use futures_util::StreamExt;
use http_body_util::BodyStream;
use ruma::api::client::media::{create_content, create_mxc_uri};
use ruma::{MilliSecondsSinceUnixEpoch, OwnedServerName, UInt};
use std::time::Duration;

/// An upload request: an authenticated user, what they said about the file, the path's
/// parameters, and the body still unread.
pub(super) struct UploadRequest {
    session: Session,
    meta: UploadMeta,
    path: Vec<String>,
    body: axum::body::Body,
}

#[derive(serde::Deserialize)]
struct UploadQuery {
    filename: Option<String>,
}

impl FromRequest<AppState> for UploadRequest {
    type Rejection = Error;

    async fn from_request(request: Request, state: &AppState) -> Result<Self> {
        let (mut parts, body) = request.into_parts();
        let client = client_info(&parts);
        let session = authenticate(&parts, state, &client, true).await?.ok_or_else(Error::missing_token)?;
        tracing::Span::current().record("user", session.user_id.as_str());
        if session.is_guest {
            return Err(Error::guest_access_forbidden("Guest accounts cannot upload media"));
        }
        state.rate_limits.check_user(Action::MediaUpload, &session.user_id)?;
        let path = match RawPathParams::from_request_parts(&mut parts, state).await {
            Ok(params) => params.iter().map(|(_, value)| value.to_owned()).collect(),
            Err(_) => return Err(Error::invalid_param("A path parameter is not valid UTF-8")),
        };
        let query = Query::<UploadQuery>::try_from_uri(&parts.uri)
            .map_err(|error| Error::invalid_param(format!("Invalid query parameters: {error}")))?;
        let content_type = match parts.headers.get(http::header::CONTENT_TYPE) {
            Some(value) => {
                Some(value.to_str().map_err(|_| Error::invalid_param("The Content-Type is not ASCII"))?.to_owned())
            }
            None => None,
        };
        // A body declared too large is refused before any of it is read (the rest is drained
        // by `http::linger`, so the client reads this answer).
        let limit = state.media.max_upload_size();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.parse::<u64>().ok());
        if declared.is_some_and(|length| length > limit) {
            return Err(too_large(limit));
        }
        let meta = UploadMeta { content_type, filename: query.0.filename.filter(|name| !name.is_empty()) };
        Ok(UploadRequest { session, meta, path, body })
    }
}

impl UploadRequest {
    fn body(
        self,
        state: &AppState,
    ) -> (
        Session,
        UploadMeta,
        Vec<String>,
        Body<impl futures_util::Stream<Item = std::result::Result<bytes::Bytes, axum::Error>> + Unpin>,
    ) {
        let pause = Duration::from_secs(state.config.limits.body_timeout_secs);
        let stream = BodyStream::new(self.body).filter_map(|frame| async move {
            match frame {
                Ok(frame) => frame.into_data().ok().map(Ok),
                Err(error) => Some(Err(error)),
            }
        });
        (self.session, self.meta, self.path, Body { stream: Box::pin(stream), pause })
    }
}

/// `POST /_matrix/media/v3/upload`
pub(super) async fn upload(state: axum::extract::State<AppState>, request: UploadRequest) -> Result<impl IntoResponse> {
    let (session, meta, _, body) = request.body(&state);
    let uri = state.media.upload(&state.pool, &state.server_name, &session.user_id, meta, body).await?;
    Ok(RumaResponse(create_content::v3::Response::new(uri)))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`
pub(super) async fn upload_pending(
    state: axum::extract::State<AppState>,
    request: UploadRequest,
) -> Result<impl IntoResponse> {
    let (session, meta, path, body) = request.body(&state);
    let [server_name, media_id] = path.as_slice() else {
        return Err(Error::invalid_param("The path names a server and a media id"));
    };
    let server_name = OwnedServerName::try_from(server_name.as_str())
        .map_err(|error| Error::invalid_param(format!("Invalid server name: {error}")))?;
    state
        .media
        .upload_pending(&state.pool, &state.server_name, &server_name, media_id, &session.user_id, meta, body)
        .await?;
    // ruma's response type for this endpoint has no constructor; its body is `{}`.
    Ok(axum::Json(serde_json::json!({})))
}

/// `POST /_matrix/media/v1/create`
pub(super) async fn create(
    state: axum::extract::State<AppState>,
    request: Authed<create_mxc_uri::v1::Request>,
) -> Result<RumaResponse<create_mxc_uri::v1::Response>> {
    state.rate_limits.check_user(Action::MediaUpload, &request.session.user_id)?;
    let (uri, expires_at) =
        state.media.create_pending(&state.pool, &state.server_name, &request.session.user_id).await?;
    let mut response = create_mxc_uri::v1::Response::new(uri);
    response.unused_expires_at =
        UInt::new(u64::try_from(expires_at).unwrap_or_default()).map(MilliSecondsSinceUnixEpoch);
    Ok(RumaResponse(response))
}
