#![recursion_limit = "256"]
//! A photo sent from one `matrix-sdk` client and opened by another, thumbnail first, through
//! the authenticated media endpoints (the only ones that serve new media, by the freeze).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
mod media_support;

use common::*;
use matrix_sdk::Client;
use matrix_sdk::attachment::AttachmentConfig;
use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::{OwnedMxcUri, uint};
use media_support::*;
use reqwest::StatusCode;

async fn logged_in(server: &TestServer, user: &str) -> (Client, TestUser) {
    let registered = server.register(user, "pw").await;
    let client = Client::builder().homeserver_url(&server.base_url).build().await.expect("build a matrix-sdk client");
    client.matrix_auth().login_username(user, "pw").send().await.expect("matrix-sdk logs in");
    (client, registered)
}

#[tokio::test]
async fn a_photo_sent_by_one_client_is_opened_by_another() {
    let server = TestServer::start().await;
    let (alice, _) = logged_in(&server, "alice").await;
    let (bob, bob_http) = logged_in(&server, "bob").await;

    let mut request = CreateRoom::new();
    request.preset = Some(RoomPreset::PrivateChat);
    let alice_room = alice.create_room(request).await.expect("create a room");
    let room_id = alice_room.room_id().to_owned();
    alice_room.invite_user_by_id(bob.user_id().unwrap()).await.expect("invite bob");
    bob.join_room_by_id(&room_id).await.expect("bob joins");

    let photo = picture(640, 480, image::ImageFormat::Jpeg);
    let sent = alice_room
        .send_attachment("holiday.jpg", &mime::IMAGE_JPEG, photo.clone(), AttachmentConfig::new())
        .await
        .expect("alice sends a photo");

    // Bob reads the event as any client does, and finds the photo's mxc URI in it.
    let (status, event) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{}/event/{}", encode(room_id.as_str()), encode(sent.event_id.as_str())),
            bob_http.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{event}");
    assert_eq!(event["content"]["msgtype"], "m.image");
    assert_eq!(event["content"]["body"], "holiday.jpg");
    let url = event["content"]["url"].as_str().expect("an unencrypted image has a url").to_owned();
    assert!(url.starts_with("mxc://hearth.test/"), "{url}");

    // Bob's client fetches a thumbnail, then the photo.
    let source = MediaSource::Plain(OwnedMxcUri::from(url));
    let thumbnail = bob
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source: source.clone(),
                format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(uint!(96), uint!(96))),
            },
            false,
        )
        .await
        .expect("bob's client gets a thumbnail");
    let (width, height) = dimensions(&thumbnail);
    assert!(width >= 96 && height >= 96 && width < 640, "a thumbnail, not the photo: {width}x{height}");
    assert_eq!(width * 3, height * 4, "with the photo's shape");
    let file = bob
        .media()
        .get_media_content(&MediaRequestParameters { source, format: MediaFormat::File }, false)
        .await
        .expect("bob's client gets the photo");
    assert!(file == photo, "the photo arrives unchanged");
}
