//! What the media issue's users do with a standard client (`matrix-sdk`): set an avatar, send a
//! photo and a video; the other member sees the avatar, the thumbnails and opens the files,
//! through the authenticated media endpoints (the only ones that serve new media, by the
//! freeze) — with media on local disk, and in an S3-compatible store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;
use crate::media_support;

use common::*;
use matrix_sdk::Client;
use matrix_sdk::attachment::{AttachmentConfig, Thumbnail};
use matrix_sdk::media::{MediaFormat, MediaRequestParameters, MediaThumbnailSettings};
use matrix_sdk::ruma::api::client::room::create_room::v3::{Request as CreateRoom, RoomPreset};
use matrix_sdk::ruma::events::room::MediaSource;
use matrix_sdk::ruma::{OwnedMxcUri, uint};
use media_support::s3::{start_s3, store_media_in};
use media_support::*;
use reqwest::StatusCode;

async fn logged_in(server: &TestServer, user: &str) -> (Client, TestUser) {
    let registered = server.register(user, "pw").await;
    let client = Client::builder().homeserver_url(&server.base_url).build().await.expect("build a matrix-sdk client");
    client.matrix_auth().login_username(user, "pw").send().await.expect("matrix-sdk logs in");
    (client, registered)
}

#[tokio::test]
async fn an_avatar_a_photo_and_a_video_reach_the_other_client() {
    let server = TestServer::start().await;
    avatar_photo_and_video(&server).await;
}

#[tokio::test]
async fn the_same_with_media_in_an_s3_store() {
    let s3 = start_s3().await;
    let endpoint = s3.endpoint.clone();
    let server = TestServer::start_with(move |config| store_media_in(config, endpoint)).await;
    avatar_photo_and_video(&server).await;
}

async fn avatar_photo_and_video(server: &TestServer) {
    let (alice, alice_http) = logged_in(server, "alice").await;
    let (bob, bob_http) = logged_in(server, "bob").await;

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
    let event = read_event(server, &bob_http, room_id.as_str(), sent.event_id.as_str()).await;
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

    // A video, with the thumbnail alice's client made for it.
    let video: Vec<u8> =
        b"\0\0\0\x18ftypmp42".iter().copied().chain((0..300_000u32).map(|i| (i % 253) as u8)).collect();
    let poster = picture(320, 180, image::ImageFormat::Jpeg);
    let thumbnail = Thumbnail {
        size: u32::try_from(poster.len()).unwrap().into(),
        data: poster.clone(),
        content_type: mime::IMAGE_JPEG,
        width: uint!(320),
        height: uint!(180),
    };
    let sent = alice_room
        .send_attachment(
            "clip.mp4",
            &"video/mp4".parse().unwrap(),
            video.clone(),
            AttachmentConfig::new().thumbnail(Some(thumbnail)),
        )
        .await
        .expect("alice sends a video");
    let event = read_event(server, &bob_http, room_id.as_str(), sent.event_id.as_str()).await;
    assert_eq!(event["content"]["msgtype"], "m.video", "{event}");
    let video_url = event["content"]["url"].as_str().expect("the video's url").to_owned();
    let poster_url = event["content"]["info"]["thumbnail_url"].as_str().expect("the video's thumbnail").to_owned();
    let get = |url: String| {
        let bob = bob.clone();
        async move {
            let source = MediaSource::Plain(OwnedMxcUri::from(url));
            bob.media().get_media_content(&MediaRequestParameters { source, format: MediaFormat::File }, false).await
        }
    };
    assert!(get(poster_url).await.expect("bob's client gets the video's thumbnail") == poster);
    assert!(get(video_url.clone()).await.expect("bob's client gets the video") == video, "the video arrives unchanged");
    let (status, headers, _) =
        fetch(server, &format!("/_matrix/client/v1/media/download/{}", &video_url["mxc://".len()..]), bob_http.token())
            .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "video/mp4");

    // An avatar: alice's profile and her membership in the room name it, and bob's client
    // gets it as a thumbnail, the way room lists show avatars.
    let avatar = picture(256, 256, image::ImageFormat::Png);
    let avatar_url = alice.account().upload_avatar(&mime::IMAGE_PNG, avatar).await.expect("alice sets an avatar");
    let (status, profile) = server
        .get(&format!("/_matrix/client/v3/profile/{}", encode(alice_http.user_id.as_str())), bob_http.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{profile}");
    assert_eq!(profile["avatar_url"], avatar_url.as_str());
    let (status, member) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                encode(room_id.as_str()),
                encode(&alice_http.user_id)
            ),
            bob_http.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{member}");
    assert_eq!(member["avatar_url"], avatar_url.as_str());
    let small = bob
        .media()
        .get_media_content(
            &MediaRequestParameters {
                source: MediaSource::Plain(avatar_url),
                format: MediaFormat::Thumbnail(MediaThumbnailSettings::new(uint!(32), uint!(32))),
            },
            false,
        )
        .await
        .expect("bob's client gets the avatar's thumbnail");
    let (width, height) = dimensions(&small);
    assert!(width < 256 && width == height, "a square thumbnail of the avatar: {width}x{height}");
}

/// The event as a client reads it (`GET /rooms/{roomId}/event/{eventId}`).
async fn read_event(server: &TestServer, user: &TestUser, room_id: &str, event_id: &str) -> serde_json::Value {
    let path = format!("/_matrix/client/v3/rooms/{}/event/{}", encode(room_id), encode(event_id));
    let (status, event) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{event}");
    event
}
