//! Prometheus metrics (DESIGN §8), served on a listener of their own (`metrics.listen`, off by
//! default) so that they never sit on the public port.
//!
//! Counters and histograms are recorded where things happen, through the `metrics` facade:
//! requests (by method, route template and status, with their latency), events persisted,
//! push deliveries. What is a state rather than an event — `/sync` waiters, the database
//! pool, federation queues, the process's memory and CPU — is sampled when Prometheus scrapes.
//! One recorder serves the whole process (several servers in one test process share it).

use crate::state::AppState;
use axum::Router;
use axum::extract::{MatchedPath, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets (seconds): from a cached read to a long-polling `/sync`.
const LATENCY_BUCKETS: &[f64] = &[0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

static RECORDER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();

/// The process's recorder, installed on first use; `None` if another recorder was installed
/// first (then nothing is recorded here, and `/metrics` says so).
pub(crate) fn recorder() -> Option<&'static PrometheusHandle> {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".to_owned()), LATENCY_BUCKETS)
                .map_err(|error| tracing::warn!(%error, "metrics buckets refused"))
                .ok()?;
            builder.install_recorder().map_err(|error| tracing::warn!(%error, "no metrics recorder")).ok()
        })
        .as_ref()
}

/// Counts and times every request by method, route template and status (started before the
/// handler, finished with its response; `http::edges` runs it). Paths that match no route
/// count as `unmatched`, so that scanners cannot grow the label set.
pub(crate) struct RequestTimer {
    started: Instant,
    route: String,
    method: String,
}

impl RequestTimer {
    pub(crate) fn start(request: &Request) -> RequestTimer {
        let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
        RequestTimer { started: Instant::now(), route, method: request.method().as_str().to_owned() }
    }

    pub(crate) fn finish(self, response: &Response) {
        let labels =
            [("method", self.method), ("route", self.route), ("status", response.status().as_u16().to_string())];
        metrics::counter!("hearth_http_requests_total", &labels).increment(1);
        metrics::histogram!("hearth_http_request_duration_seconds", &labels)
            .record(self.started.elapsed().as_secs_f64());
    }
}

/// Counts events committed to rooms (local and received over federation alike).
pub(crate) fn events_persisted(count: usize) {
    metrics::counter!("hearth_events_persisted_total").increment(u64::try_from(count).unwrap_or(u64::MAX));
}

/// Counts one attempt to deliver a push notification to a gateway.
pub(crate) fn push_delivery(accepted: bool) {
    let outcome = if accepted { "accepted" } else { "failed" };
    metrics::counter!("hearth_push_deliveries_total", "outcome" => outcome).increment(1);
}

/// The metrics listener's routes: `GET /metrics`.
pub(crate) fn router(state: AppState) -> Router {
    recorder();
    Router::new().route("/metrics", get(scrape)).with_state(state)
}

/// `GET /metrics`: samples the states, then renders everything in Prometheus' text format.
async fn scrape(State(state): State<AppState>) -> Response {
    let Some(recorder) = recorder() else {
        return (http::StatusCode::SERVICE_UNAVAILABLE, "another metrics recorder is installed\n").into_response();
    };
    sample(&state).await;
    ([(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], recorder.render()).into_response()
}

async fn sample(state: &AppState) {
    let waiters = state.streams.notifier.registrations();
    metrics::gauge!("hearth_sync_waiters").set(waiters as f64);

    let pool = &state.pool;
    let idle = pool.num_idle() as f64;
    metrics::gauge!("hearth_db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("hearth_db_pool_connections", "state" => "in_use").set(f64::from(pool.size()) - idle);
    metrics::gauge!("hearth_db_pool_max_connections").set(f64::from(pool.options().get_max_connections()));
    // sqlx reports neither its queue of waiters nor their waits, so the scrape waits for a
    // connection itself, as any request would at this moment: near zero while the pool has
    // room, up to the acquire timeout when it is exhausted.
    let started = Instant::now();
    match pool.acquire().await {
        Ok(connection) => {
            metrics::gauge!("hearth_db_pool_acquire_wait_seconds").set(started.elapsed().as_secs_f64());
            drop(connection);
        }
        Err(error) => {
            metrics::gauge!("hearth_db_pool_acquire_wait_seconds").set(started.elapsed().as_secs_f64());
            tracing::warn!(%error, "metrics: no database connection within the pool's timeout");
        }
    }

    match crate::db::federation_queue::status(pool).await {
        Ok(destinations) => {
            for destination in destinations {
                let name = destination.destination;
                metrics::gauge!("hearth_federation_queue_depth", "destination" => name.clone())
                    .set(destination.depth as f64);
                metrics::gauge!("hearth_federation_consecutive_failures", "destination" => name)
                    .set(f64::from(destination.failures.unwrap_or(0)));
            }
        }
        Err(error) => tracing::warn!(%error, "metrics: could not read the federation queues"),
    }

    if let Some(process) = process_usage() {
        metrics::gauge!("hearth_process_resident_memory_bytes").set(process.resident_bytes);
        metrics::gauge!("hearth_process_cpu_seconds").set(process.cpu_seconds);
    }
}

struct ProcessUsage {
    resident_bytes: f64,
    cpu_seconds: f64,
}

/// The process's resident memory and CPU time so far, from `/proc/self` (Linux).
fn process_usage() -> Option<ProcessUsage> {
    // SAFETY: sysconf only reads configuration values.
    let (page_size, ticks) = unsafe { (libc::sysconf(libc::_SC_PAGESIZE), libc::sysconf(libc::_SC_CLK_TCK)) };
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let resident_pages: f64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, and ends at the last ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user_ticks: f64 = fields.get(11)?.parse().ok()?;
    let system_ticks: f64 = fields.get(12)?.parse().ok()?;
    Some(ProcessUsage {
        resident_bytes: resident_pages * page_size as f64,
        cpu_seconds: (user_ticks + system_ticks) / ticks as f64,
    })
}
