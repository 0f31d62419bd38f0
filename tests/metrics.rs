//! `GET /metrics` on its own listener: Prometheus' text format, parsed as Prometheus parses
//! it, with the series an operator watches moving as the server works.
#![allow(unreachable_pub)] // a binary has no outside: `pub` here only shares between its modules
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

mod common;
use common::*;
use prometheus_parse::{Sample, Scrape, Value as Metric};
use reqwest::StatusCode;
use serde_json::json;

const PASSWORD: &str = "correct horse battery";

/// Serves the metrics of `server` on an ephemeral port; returns its base URL.
async fn metrics_listener(server: &TestServer) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let state = server.state.clone();
    tokio::spawn(async move { hearth::server::serve_metrics_on(listener, state, std::future::pending()).await });
    url
}

async fn scrape(url: &str) -> Scrape {
    let response = reqwest::get(format!("{url}/metrics")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = response.text().await.unwrap();
    Scrape::parse(text.lines().map(|line| Ok(line.to_owned()))).expect("Prometheus parses /metrics")
}

fn samples<'a>(scrape: &'a Scrape, name: &'a str) -> impl Iterator<Item = &'a Sample> + 'a {
    scrape.samples.iter().filter(move |sample| sample.metric == name)
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Metric::Counter(value) | Metric::Gauge(value) | Metric::Untyped(value) => *value,
        other => panic!("{}: not a single value: {other:?}", sample.metric),
    }
}

/// The value of the one sample of `name` whose labels include `labels`.
fn find(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(scrape, name)
        .find(|sample| labels.iter().all(|(key, want)| sample.labels.get(key) == Some(*want)))
        .map(value)
}

#[tokio::test]
async fn metrics_are_served_in_prometheus_format_and_follow_the_server() {
    let server = TestServer::start().await;
    let url = metrics_listener(&server).await;
    let alice = server.register("alice", PASSWORD).await;
    let room = server.create_room(&alice, json!({})).await;
    let before = scrape(&url).await;
    let persisted_before = find(&before, "hearth_events_persisted_total", &[]).unwrap_or(0.0);
    let whoami_route = [("method", "GET"), ("route", "/_matrix/client/v3/account/whoami"), ("status", "200")];
    let whoami_before = find(&before, "hearth_http_requests_total", &whoami_route).unwrap_or(0.0);

    for _ in 0..3 {
        assert_eq!(server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0, StatusCode::OK);
    }
    server.send_text(&alice, &room, "m1", "hello").await;
    server.send_text(&alice, &room, "m2", "again").await;
    assert_eq!(server.get("/no/such/path", None).await.0, StatusCode::NOT_FOUND);
    sqlx::query(
        "INSERT INTO federation_destinations (destination, failures, backoff_ms) VALUES ('down.example', 4, 1000)",
    )
    .execute(&server.state.pool)
    .await
    .unwrap();

    let after = scrape(&url).await;
    // Requests by route template and status; unknown paths under one label.
    assert_eq!(find(&after, "hearth_http_requests_total", &whoami_route).unwrap() - whoami_before, 3.0);
    assert!(find(&after, "hearth_http_requests_total", &[("route", "unmatched"), ("status", "404")]).unwrap() >= 1.0);
    assert!(
        samples(&after, "hearth_http_requests_total").all(|sample| !sample
            .labels
            .get("route")
            .unwrap()
            .contains("alice")),
        "routes are templates, not paths"
    );
    // Latency histograms, with buckets.
    let histogram = samples(&after, "hearth_http_request_duration_seconds")
        .find(|sample| sample.labels.get("route") == Some("/_matrix/client/v3/account/whoami"))
        .expect("a latency histogram for whoami");
    match &histogram.value {
        Metric::Histogram(buckets) => {
            assert!(buckets.len() >= 10, "{buckets:?}");
            assert!(buckets.last().unwrap().count >= 3.0, "{buckets:?}");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(find(&after, "hearth_events_persisted_total", &[]).unwrap() - persisted_before, 2.0);
    // Sampled at the scrape.
    assert_eq!(find(&after, "hearth_federation_queue_depth", &[("destination", "down.example")]), Some(0.0));
    assert_eq!(find(&after, "hearth_federation_consecutive_failures", &[("destination", "down.example")]), Some(4.0));
    assert!(find(&after, "hearth_db_pool_max_connections", &[]).unwrap() >= 1.0);
    assert!(find(&after, "hearth_db_pool_connections", &[("state", "idle")]).is_some());
    // An idle pool hands the scrape a connection at once.
    let wait = find(&after, "hearth_db_pool_acquire_wait_seconds", &[]).unwrap();
    assert!((0.0..1.0).contains(&wait), "{wait}");
    assert!(find(&after, "hearth_sync_waiters", &[]).is_some());
    assert!(find(&after, "hearth_process_resident_memory_bytes", &[]).unwrap() > 1_000_000.0);
    assert!(find(&after, "hearth_process_cpu_seconds", &[]).unwrap() > 0.0);
}

/// The metrics are not on the public listener.
#[tokio::test]
async fn metrics_are_not_served_on_the_client_listener() {
    let server = TestServer::start().await;
    let response = server.get("/metrics", None).await;
    assert_error(&response, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
}

#[test]
fn a_bad_metrics_address_is_refused_naming_the_key() {
    let mut config = test_config();
    config.metrics.listen = vec!["nowhere".to_owned()];
    let error = config.validate().unwrap_err().to_string();
    assert!(error.contains("metrics.listen"), "{error}");
}
