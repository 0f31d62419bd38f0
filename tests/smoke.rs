mod common;
use common::*;
use reqwest::StatusCode;

#[tokio::test]
async fn versions_answer() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body["versions"].as_array().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn register_and_whoami() {
    let server = TestServer::start().await;
    let alice = server.register("alice", "correct horse").await;
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:hearth.test");
}
