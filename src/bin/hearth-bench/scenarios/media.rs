//! `media`: one user uploads N files of S MiB one after another (`POST /_matrix/media/v3/upload`),
//! downloads each back through the authenticated endpoint (`GET /_matrix/client/v1/media/download`),
//! then C users upload C more files of S MiB at once. MiB/s and per-file latency for each
//! phase; with `--server-pid`, the server's resident memory sampled every 20 ms during the
//! concurrent phase, whose growth over the start says whether uploads are held in memory.
//!
//! Every file differs (a different length of one random buffer: servers store identical
//! content once, which would measure nothing), and every download must give back exactly the
//! uploaded bytes (the validity check).

use crate::cli::ServerPids;
use crate::client::MatrixClient;
use crate::process::{self, Memory};
use crate::progress::Progress;
use crate::provisioning::{BenchUser, Registration, RunPrefix, register_user};
use crate::report::{FigureRow, LATENCY_HEADER, ServerRun, latency_columns};
use crate::scenarios::{Scenario, ServerContext};
use crate::stats::Latency;
use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use serde::Serialize;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::task::JoinSet;

const MIB: f64 = 1024.0 * 1024.0;

#[derive(Clone, Debug, Serialize)]
pub struct MediaParameters {
    pub files: u32,
    pub size_mib: u32,
    pub concurrency: u32,
    #[serde(flatten)]
    pub pids: ServerPids,
}

/// One phase's transfer figures.
#[derive(Clone, Debug, Serialize)]
pub struct TransferPhase {
    pub name: &'static str,
    pub concurrency: u32,
    pub files: u32,
    pub bytes: u64,
    pub elapsed_s: f64,
    pub mib_per_s: f64,
    pub latency_ms: Latency,
}

/// The server's memory around the concurrent uploads.
#[derive(Clone, Debug, Serialize)]
pub struct UploadMemory {
    pub pid: u32,
    pub before: Memory,
    /// The largest resident set sampled while the uploads ran.
    pub peak_rss_kib: u64,
    /// (peak − before) in MiB: what C uploads of S MiB at once cost the server.
    pub growth_mib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MediaRun {
    pub homeserver: String,
    pub phases: Vec<TransferPhase>,
    pub memory: Option<UploadMemory>,
    /// Every download gave back exactly the uploaded bytes.
    pub valid: bool,
}

pub struct MediaScenario(pub MediaParameters);

impl Scenario for MediaScenario {
    type Parameters = MediaParameters;
    type Run = MediaRun;
    const NAME: &'static str = "media";

    fn parameters(&self) -> &MediaParameters {
        &self.0
    }

    fn headline(&self) -> String {
        let MediaParameters { files, size_mib, concurrency, .. } = &self.0;
        format!(
            "media: {files} uploads of {size_mib} MiB one after another, their downloads, then {concurrency} \
             uploads of {size_mib} MiB at once"
        )
    }

    fn prepare(&self) -> Result<()> {
        for pid in self.0.pids.all() {
            process::memory_of(pid)?;
        }
        Ok(())
    }

    async fn run(&self, server: ServerContext<'_>) -> Result<MediaRun> {
        run(server.client, server.registration, server.prefix, &self.0, self.0.pids.of(server.comparison)).await
    }
}

impl ServerRun for MediaRun {
    fn homeserver(&self) -> &str {
        &self.homeserver
    }

    fn valid(&self) -> bool {
        self.valid
    }

    fn write_table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "  {:<20}{:>8}{:>7}{:>10}{:>10}{LATENCY_HEADER}",
            "phase", "clients", "files", "seconds", "MiB/s"
        );
        for phase in &self.phases {
            let _ = writeln!(
                out,
                "  {:<20}{:>8}{:>7}{:>10.2}{:>10.1}{}",
                phase.name,
                phase.concurrency,
                phase.files,
                phase.elapsed_s,
                phase.mib_per_s,
                latency_columns(&phase.latency_ms)
            );
        }
        if let Some(memory) = &self.memory {
            let _ = writeln!(
                out,
                "  server memory during the concurrent uploads: RSS {:.1} MiB before, peak {:.1} MiB, growth {:.1} MiB",
                memory.before.rss_kib as f64 / 1024.0,
                memory.peak_rss_kib as f64 / 1024.0,
                memory.growth_mib
            );
        }
        let _ = writeln!(out, "  every download equal to its upload: {}", if self.valid { "yes" } else { "NO" });
    }

    fn comparable(&self) -> Vec<FigureRow> {
        let mut rows: Vec<FigureRow> = self
            .phases
            .iter()
            .map(|phase| FigureRow {
                name: phase.name.to_owned(),
                figures: vec![
                    ("mib_per_s", phase.mib_per_s),
                    ("p50", phase.latency_ms.p50),
                    ("p95", phase.latency_ms.p95),
                    ("max", phase.latency_ms.max),
                ],
            })
            .collect();
        if let Some(memory) = &self.memory {
            rows.push(FigureRow { name: "upload memory".to_owned(), figures: vec![("growth_mib", memory.growth_mib)] });
        }
        rows
    }
}

/// An uploader: a user and the plain HTTP client that sends raw bodies.
#[derive(Clone)]
struct Uploader {
    client: MatrixClient,
    http: reqwest::Client,
    user: Arc<BenchUser>,
}

impl Uploader {
    /// Uploads `body`; returns the `server/media_id` of its mxc URI.
    async fn upload(&self, body: Bytes, name: &str) -> Result<String> {
        let mut url = self.client.url(&["_matrix", "media", "v3", "upload"])?;
        url.query_pairs_mut().append_pair("filename", name);
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.user.access_token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body)
            .send()
            .await
            .context("upload")?;
        let status = response.status();
        let answer: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("POST /_matrix/media/v3/upload answered {status}: {answer}");
        }
        answer["content_uri"]
            .as_str()
            .and_then(|uri| uri.strip_prefix("mxc://"))
            .map(str::to_owned)
            .ok_or_else(|| anyhow!("the upload answer has no mxc content_uri: {answer}"))
    }

    async fn download(&self, media: &str) -> Result<Bytes> {
        let (server_name, media_id) = media.split_once('/').ok_or_else(|| anyhow!("not server/id: {media}"))?;
        let url = self.client.url(&["_matrix", "client", "v1", "media", "download", server_name, media_id])?;
        let response = self.http.get(url).bearer_auth(&self.user.access_token).send().await.context("download")?;
        let status = response.status();
        if !status.is_success() {
            bail!(
                "GET /_matrix/client/v1/media/download answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
        response.bytes().await.context("read a download")
    }
}

async fn run(
    client: &MatrixClient,
    registration: &Registration,
    prefix: &RunPrefix,
    parameters: &MediaParameters,
    pid: Option<u32>,
) -> Result<MediaRun> {
    let &MediaParameters { files, size_mib, concurrency, .. } = parameters;
    let server = client.base().to_string();
    client.check_reachable().await?;
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(600)).build().context("cannot build the HTTP client")?;
    eprintln!("{server}: registering {concurrency} users");
    let mut uploaders = Vec::with_capacity(concurrency as usize);
    for index in 0..concurrency.max(1) {
        let user = register_user(client, registration, &prefix.localpart(&format!("media{index}"))).await?;
        uploaders.push(Uploader { client: client.clone(), http: http.clone(), user: Arc::new(user) });
    }
    let size = usize::try_from(size_mib).unwrap_or(usize::MAX).saturating_mul(1024 * 1024);
    let buffer = random_bytes(size + files.max(concurrency) as usize + 1);
    // File `index` is the buffer's first `size - index` bytes: all different, none copied.
    let file = |index: u32| buffer.slice(0..size.saturating_sub(index as usize).max(1));
    let first = uploaders.first().ok_or_else(|| anyhow!("no uploader"))?.clone();

    eprintln!("{server}: uploading {files} files of {size_mib} MiB one after another");
    let progress = Progress::start("sequential uploads".to_owned(), u64::from(files));
    let (mut samples, mut uploaded, mut bytes) = (Vec::new(), Vec::new(), 0u64);
    let started = Instant::now();
    for index in 0..files {
        let body = file(index);
        bytes += body.len() as u64;
        let took = Instant::now();
        uploaded.push((index, first.upload(body, &format!("bench-{index}.bin")).await?));
        samples.push(took.elapsed());
        progress.advance();
    }
    let upload_phase = phase("upload", 1, started.elapsed(), &samples, bytes);
    progress.finish().await;

    eprintln!("{server}: downloading them");
    let progress = Progress::start("sequential downloads".to_owned(), u64::from(files));
    let (mut samples, mut bytes, mut valid) = (Vec::new(), 0u64, true);
    let started = Instant::now();
    for (index, media) in &uploaded {
        let took = Instant::now();
        let got = first.download(media).await?;
        samples.push(took.elapsed());
        bytes += got.len() as u64;
        valid &= got == file(*index);
        progress.advance();
    }
    let download_phase = phase("download", 1, started.elapsed(), &samples, bytes);
    progress.finish().await;

    eprintln!("{server}: {concurrency} uploads of {size_mib} MiB at once");
    let before = pid.map(process::memory_of).transpose()?;
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = pid.map(|pid| tokio::spawn(sample_peak(pid, sampling.clone())));
    let mut tasks = JoinSet::new();
    let started = Instant::now();
    for (index, uploader) in uploaders.iter().enumerate() {
        let (uploader, body) = (uploader.clone(), file(files + u32::try_from(index).unwrap_or(0)));
        tasks.spawn(async move {
            let length = body.len() as u64;
            let took = Instant::now();
            uploader.upload(body, "bench-concurrent.bin").await.map(|_| (took.elapsed(), length))
        });
    }
    let (mut samples, mut bytes) = (Vec::new(), 0u64);
    while let Some(joined) = tasks.join_next().await {
        let (took, length) = joined.map_err(|error| anyhow!("an upload task ended abnormally: {error}"))??;
        samples.push(took);
        bytes += length;
    }
    let concurrent_phase = phase("concurrent upload", concurrency, started.elapsed(), &samples, bytes);
    sampling.store(false, Ordering::Relaxed);
    let peak = match sampler {
        Some(sampler) => Some(sampler.await.map_err(|error| anyhow!("memory sampler: {error}"))??),
        None => None,
    };
    let memory = match (pid, before, peak) {
        (Some(pid), Some(before), Some(peak_rss_kib)) => Some(UploadMemory {
            pid,
            before,
            peak_rss_kib,
            growth_mib: (peak_rss_kib as f64 - before.rss_kib as f64) / 1024.0,
        }),
        _ => None,
    };
    Ok(MediaRun { homeserver: server, phases: vec![upload_phase, download_phase, concurrent_phase], memory, valid })
}

fn phase(name: &'static str, concurrency: u32, elapsed: Duration, samples: &[Duration], bytes: u64) -> TransferPhase {
    let elapsed_s = elapsed.as_secs_f64();
    TransferPhase {
        name,
        concurrency,
        files: u32::try_from(samples.len()).unwrap_or(u32::MAX),
        bytes,
        elapsed_s,
        mib_per_s: if elapsed_s > 0.0 { bytes as f64 / MIB / elapsed_s } else { 0.0 },
        latency_ms: Latency::from_samples(samples),
    }
}

/// The largest resident set of `pid` seen every 20 ms while `running`.
async fn sample_peak(pid: u32, running: Arc<AtomicBool>) -> Result<u64> {
    let mut peak = 0;
    while running.load(Ordering::Relaxed) {
        peak = peak.max(process::memory_of(pid)?.rss_kib);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(peak.max(process::memory_of(pid)?.rss_kib))
}

/// Incompressible bytes (xorshift64*), so that no layer can shrink the transfer.
fn random_bytes(length: usize) -> Bytes {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    let mut out = Vec::with_capacity(length + 8);
    while out.len() < length {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(length);
    Bytes::from(out)
}
