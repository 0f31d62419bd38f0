//! Hearth driven by the real `matrix-sdk` client (what Element X and other rust-sdk clients use).
//! matrix-sdk speaks ruma 0.16 while Hearth uses ruma 0.17, so ids are compared as strings.

mod common;
use common::*;
use matrix_sdk::Client;
use matrix_sdk::ruma::api::error::ErrorKind;
use reqwest::StatusCode;

async fn client_for(server: &TestServer) -> Client {
    Client::builder().homeserver_url(&server.base_url).build().await.expect("build a matrix-sdk client")
}

#[tokio::test]
async fn login_whoami_and_display_name() {
    let server = TestServer::start().await;
    server.register("alice", "pw").await;

    let client = client_for(&server).await;
    let response = client
        .matrix_auth()
        .login_username("alice", "pw")
        .initial_device_display_name("matrix-sdk test")
        .send()
        .await
        .expect("matrix-sdk logs in");
    assert_eq!(response.user_id.as_str(), "@alice:hearth.test");
    assert!(client.matrix_auth().logged_in(), "the client holds a session");
    assert_eq!(client.user_id().map(|id| id.to_string()).as_deref(), Some("@alice:hearth.test"));
    let device_id = client.device_id().expect("the session has a device").to_string();
    assert_eq!(device_id, response.device_id.as_str());

    let whoami = client.whoami().await.expect("whoami");
    assert_eq!(whoami.user_id.as_str(), "@alice:hearth.test");
    assert_eq!(whoami.device_id.as_ref().map(|id| id.as_str()), Some(device_id.as_str()));

    // The device the SDK created is visible with the name it gave.
    let devices = client.devices().await.expect("list devices");
    let ours = devices.devices.iter().find(|d| d.device_id.as_str() == device_id).expect("our device is listed");
    assert_eq!(ours.display_name.as_deref(), Some("matrix-sdk test"));

    let account = client.account();
    // A new account starts with its localpart as display name (as Synapse does).
    assert_eq!(account.get_display_name().await.expect("read display name").as_deref(), Some("alice"));
    account.set_display_name(Some("Alice A.")).await.expect("set display name");
    assert_eq!(account.get_display_name().await.expect("read display name").as_deref(), Some("Alice A."));

    // Other clients see it over plain HTTP, without authentication.
    let (status, body) = server.get("/_matrix/client/v3/profile/@alice:hearth.test/displayname", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice A.");

    // Logging out through the SDK ends the session on the server.
    let token = client.access_token().expect("access token");
    client.logout().await.expect("log out");
    let response = server.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn wrong_password_is_forbidden() {
    let server = TestServer::start().await;
    server.register("alice", "pw").await;

    let client = client_for(&server).await;
    let error = client.matrix_auth().login_username("alice", "not the password").send().await.expect_err("login fails");
    let api_error = error.as_client_api_error().unwrap_or_else(|| panic!("a Matrix error response, got {error:?}"));
    assert_eq!(api_error.status_code.as_u16(), 403, "{error:?}");
    assert!(matches!(error.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {error:?}");
    assert!(!client.matrix_auth().logged_in(), "no session after a failed login");

    // An unknown user is indistinguishable from a wrong password.
    let error = client.matrix_auth().login_username("nobody", "pw").send().await.expect_err("login fails");
    assert!(matches!(error.client_api_error_kind(), Some(ErrorKind::Forbidden)), "M_FORBIDDEN, got {error:?}");
}
