//! A real S3-protocol server for the media tests: moto's `moto_server`, installed from PyPI
//! into `target/test-clients/s3-venv` on first use and started by the test that needs it.

#[path = "../clients/install.rs"]
mod install;

use hearth::config::Config;
use std::time::Duration;

pub const BUCKET: &str = "hearth-media";

/// A running `moto_server`, stopped when dropped.
pub struct S3Server {
    pub endpoint: String,
    _process: tokio::process::Child,
}

pub async fn start_s3() -> S3Server {
    let bin = tokio::task::spawn_blocking(install::s3_server).await.unwrap().expect("install moto_server");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let process = tokio::process::Command::new(bin.join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start moto_server");
    let endpoint = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.put(format!("{endpoint}/{BUCKET}")).send().await.is_ok_and(|r| r.status().is_success()) {
            return S3Server { endpoint, _process: process };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not come up on {endpoint}");
}

/// Points a test server's media store at the S3 server at `endpoint`.
pub fn store_media_in(config: &mut Config, endpoint: String) {
    config.media.backend = "s3".to_owned();
    config.media.s3.bucket = BUCKET.to_owned();
    config.media.s3.endpoint = Some(endpoint);
    config.media.s3.region = "us-east-1".to_owned();
    config.media.s3.access_key_id = Some("hearth".to_owned());
    config.media.s3.secret_access_key = Some("secret".to_owned());
}
