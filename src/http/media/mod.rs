//! The media repository's HTTP edge: uploads (`/_matrix/media/v3/upload`, `/v1/create`),
//! downloads and thumbnails through the authenticated `/_matrix/client/v1/media/...` endpoints
//! and the deprecated unauthenticated `/_matrix/media/v3/...` ones, config and previews.
//!
//! Upload bodies are not JSON and may be far larger than the JSON limit, so they bypass the
//! ruma extractor's buffering ([`upload::UploadRequest`] streams them); downloads are streamed
//! back with the headers that keep a browser from running what it fetched ([`respond`]).

pub(crate) mod download;
mod legacy;
mod range;
pub(crate) mod respond;
mod upload;

use crate::http::ruma::{BodyFormat, RumaRouter, register};
use crate::state::AppState;
use axum::Router;
#[allow(deprecated)] // the legacy endpoints are still served
use ruma::api::client::{authenticated_media, media};

#[allow(deprecated)] // the legacy endpoints are still served
pub(crate) fn routes(router: Router<AppState>) -> Router<AppState> {
    let router = register::<media::create_content::v3::Request, _, _>(router, upload::upload, false, BodyFormat::Raw);
    let router = register::<media::create_content_async::v3::Request, _, _>(
        router,
        upload::upload_pending,
        false,
        BodyFormat::Raw,
    );
    router
        .ruma::<media::create_mxc_uri::v1::Request, _, _>(upload::create)
        .ruma_guest::<authenticated_media::get_media_config::v1::Request, _, _>(download::config)
        .ruma::<media::get_media_config::v3::Request, _, _>(legacy::legacy_config)
        .ruma_guest::<authenticated_media::get_content::v1::Request, _, _>(download::download)
        .ruma_guest::<authenticated_media::get_content_as_filename::v1::Request, _, _>(download::download_as)
        .ruma_guest::<authenticated_media::get_content_thumbnail::v1::Request, _, _>(download::thumbnail)
        .ruma::<media::get_content::v3::Request, _, _>(legacy::legacy_download)
        .ruma::<media::get_content_as_filename::v3::Request, _, _>(legacy::legacy_download_as)
        .ruma::<media::get_content_thumbnail::v3::Request, _, _>(legacy::legacy_thumbnail)
        .ruma_guest::<authenticated_media::get_media_preview::v1::Request, _, _>(download::preview)
        .ruma::<media::get_media_preview::v3::Request, _, _>(legacy::legacy_preview)
}
