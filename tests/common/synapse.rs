//! A real Synapse as a federation peer (issue #16): installed from PyPI into the ignored build
//! area (`target/test-clients/synapse-venv`, from the pinned `tests/common/synapse/requirements.txt`,
//! reused while that file and the interpreter are unchanged), configured by the test and started
//! on loopback with a TLS certificate the test's CA issued. One Synapse per test binary (it takes
//! seconds to start), shared by that binary's tests; SQLite is its database.
//!
//! Synapse trusts the test CA for outbound federation (`federation_custom_ca_list`) and may
//! reach loopback (its IP blocklists are emptied); its rate limits are raised so tests never
//! wait on them, and users are registered with the shared secret (its admin API).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use super::install;
use hmac::{Hmac, Mac};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::time::{Duration, Instant};

const SHARED_SECRET: &str = "synapse-test-shared-secret";
/// Synapse starts in 2-3 s on an idle machine; the suite shares two cores with compilers.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// The PEM files Synapse serves federation with, issued by the CA the tests trust.
#[derive(Clone, Debug)]
pub struct SynapseTls {
    /// The CA Synapse trusts for its outbound federation (the one Hearth's certificate is from).
    pub ca_cert: PathBuf,
    /// A certificate for `localhost` and its key.
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running Synapse. It lives as long as the test binary: the supervisor thread that forked it
/// never ends, and the parent-death signal stops Synapse when the process exits.
pub struct Synapse {
    /// `localhost:<port>`: reached by the spec's discovery through its explicit port.
    pub server_name: String,
    /// `https://localhost:<port>`, for the client API.
    pub base_url: String,
    pub dir: PathBuf,
    ca_cert: Vec<u8>,
}

/// A Synapse account the tests act as.
#[derive(Clone, Debug)]
pub struct SynapseUser {
    pub user_id: String,
    pub access_token: String,
}

static SHARED: OnceLock<Synapse> = OnceLock::new();

/// The binary's Synapse, installed and started on first use (blocking; call it from
/// `spawn_blocking`). `tls` is asked for only the first time.
pub fn shared(tls: impl FnOnce() -> SynapseTls) -> &'static Synapse {
    SHARED.get_or_init(|| Synapse::start(&tls()).unwrap_or_else(|error| panic!("{error}")))
}

/// [`shared`] from async code.
pub async fn shared_async(tls: impl FnOnce() -> SynapseTls + Send + 'static) -> &'static Synapse {
    tokio::task::spawn_blocking(move || shared(tls)).await.expect("synapse start thread")
}

/// The venv's python with Synapse importable (installing it on first use).
pub fn synapse_python() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install_venv).clone()
}

fn install_venv() -> Result<PathBuf, String> {
    let python = "python3";
    // A venv belongs to the interpreter it was made with: a new one means a new venv.
    let interpreter =
        install::output(Command::new(python).args(["-c", "import sys; print(sys.executable, sys.version)"]))
            .map_err(|e| format!("the Synapse tests need Python 3 (`{python}`) with its venv module: {e}"))?;
    let requirements = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/common/synapse/requirements.txt");
    let dir = install::build_area().join("synapse-venv");
    install::install_once(
        "synapse",
        &dir,
        &install::hash_of(std::slice::from_ref(&requirements), &interpreter)?,
        |dir| {
            install::output(Command::new(python).args(["-m", "venv"]).arg(dir))?;
            install::output(
                Command::new(dir.join("bin/pip"))
                    .args(["install", "--disable-pip-version-check", "--no-input", "--quiet", "-r"])
                    .arg(&requirements),
            )
            .map(|_| ())
        },
    )?;
    Ok(dir.join("bin/python"))
}

impl Synapse {
    fn start(tls: &SynapseTls) -> Result<Synapse, String> {
        let python = synapse_python()?;
        let dir = std::env::temp_dir().join(format!("hearth-synapse-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("media")).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let port = super::ports::port_for_child();
        let server_name = format!("localhost:{port}");
        // Synapse's key file format is Hearth's (`ed25519 <version> <base64 seed>`).
        hearth::signing_key::SigningKey::load_or_generate(&dir.join("signing.key"))
            .map_err(|e| format!("Synapse's signing key: {e}"))?;
        let config = config(&dir, &server_name, port, tls);
        // YAML is a superset of JSON: the configuration is written as JSON.
        let config_path = dir.join("homeserver.yaml");
        fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("config json"))
            .map_err(|e| format!("write {}: {e}", config_path.display()))?;
        let log = fs::File::create(dir.join("synapse.log")).map_err(|e| format!("create the Synapse log: {e}"))?;
        let mut command = Command::new(&python);
        command
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&config_path)
            .current_dir(&dir)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log);
        // SAFETY: prctl is async-signal-safe; it runs in the forked child before exec.
        unsafe {
            use std::os::unix::process::CommandExt;
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        // The parent-death signal fires when the *thread* that forked the child ends: fork from
        // a thread that lives as long as Synapse does.
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("synapse-supervisor".into())
            .spawn(move || match command.spawn() {
                Ok(mut child) => {
                    let _ = started_tx.send(Ok(()));
                    let _ = exited_tx.send(child.wait());
                }
                Err(error) => {
                    let _ = started_tx.send(Err(error));
                }
            })
            .map_err(|e| format!("supervisor thread: {e}"))?;
        started_rx
            .recv()
            .map_err(|_| "the Synapse supervisor died".to_owned())?
            .map_err(|e| format!("start Synapse: {e}"))?;
        let ca_cert = fs::read(&tls.ca_cert).map_err(|e| format!("read {}: {e}", tls.ca_cert.display()))?;
        let synapse = Synapse { server_name, base_url: format!("https://localhost:{port}"), dir, ca_cert };
        let started = Instant::now();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
        loop {
            if let Ok(status) = exited_rx.try_recv() {
                return Err(format!("Synapse exited while starting ({status:?}):\n{}", synapse.log_tail()));
            }
            let ready = runtime.block_on(async { synapse.client().get(synapse.url("/health")).send().await });
            if ready.is_ok_and(|response| response.status().is_success()) {
                eprintln!("Synapse {} ready in {:.1} s", synapse.server_name, started.elapsed().as_secs_f64());
                return Ok(synapse);
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(format!("Synapse was not ready within {START_TIMEOUT:?}:\n{}", synapse.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A client that trusts the test CA. Made per call: a client's connections belong to the
    /// runtime that opened them, and each test has its own.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder().add_root_certificate(self.root_certificate()).build().expect("an https client")
    }

    /// The test CA that issued Synapse's certificate, for clients to trust.
    pub fn root_certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(&self.ca_cert).expect("the test CA is PEM")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The last lines of Synapse's log, for failure messages (its background database
    /// updates left out: they fill the log in the first minute and say nothing of federation).
    pub fn log_tail(&self) -> String {
        let log = fs::read_to_string(self.dir.join("synapse.log")).unwrap_or_default();
        let lines: Vec<&str> =
            log.lines().filter(|line| !line.contains("synapse.storage.background_updates")).collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// A client-API request as `token`; the status and the JSON body (`Null` if not JSON).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        super::send_json(&self.client(), method, &self.url(path), token, body).await
    }

    /// Registers `username` through the shared-secret admin API (Synapse's registration is closed).
    pub async fn register(&self, username: &str) -> SynapseUser {
        let (status, body) = self.request(Method::GET, "/_synapse/admin/v1/register", None, None).await;
        assert_eq!(status, StatusCode::OK, "Synapse registration nonce: {body}");
        let nonce = body["nonce"].as_str().expect("nonce").to_owned();
        let password = format!("{username}'s password");
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(SHARED_SECRET.as_bytes()).expect("hmac key");
        for (i, part) in [nonce.as_str(), username, password.as_str(), "notadmin"].into_iter().enumerate() {
            if i > 0 {
                mac.update(b"\0");
            }
            mac.update(part.as_bytes());
        }
        let mac = hex::encode(mac.finalize().into_bytes());
        let request = json!({"nonce": nonce, "username": username, "password": password, "admin": false, "mac": mac});
        let (status, body) = self.request(Method::POST, "/_synapse/admin/v1/register", None, Some(request)).await;
        assert_eq!(status, StatusCode::OK, "Synapse registration of {username}: {body}");
        SynapseUser {
            user_id: body["user_id"].as_str().expect("user_id").to_owned(),
            access_token: body["access_token"].as_str().expect("access_token").to_owned(),
        }
    }
}

/// Limits high enough that no test waits on one.
fn unlimited() -> Value {
    json!({"per_second": 10_000, "burst_count": 100_000})
}

/// Synapse's configuration for the tests (key names: Synapse's
/// docs/usage/configuration/config_documentation.md).
fn config(dir: &Path, server_name: &str, port: u16, tls: &SynapseTls) -> Value {
    json!({
        "server_name": server_name,
        "pid_file": dir.join("homeserver.pid"),
        "listeners": [{
            "port": port,
            "bind_addresses": ["127.0.0.1"],
            "type": "http",
            "tls": true,
            "x_forwarded": false,
            // `media`: the upload endpoint (`/_matrix/media/v3/upload`) lives there.
            "resources": [{"names": ["client", "federation", "media"], "compress": false}],
        }],
        "tls_certificate_path": tls.cert,
        "tls_private_key_path": tls.key,
        "federation_custom_ca_list": [tls.ca_cert],
        "federation_verify_certificates": true,
        // Everything runs on loopback, which Synapse refuses to reach by default.
        "ip_range_blacklist": [],
        "federation_ip_range_blacklist": [],
        "database": {"name": "sqlite3", "args": {"database": dir.join("homeserver.db")}},
        "media_store_path": dir.join("media"),
        "signing_key_path": dir.join("signing.key"),
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "report_stats": false,
        "enable_metrics": false,
        "url_preview_enabled": false,
        "presence": {"enabled": true},
        "enable_registration": false,
        "registration_shared_secret": SHARED_SECRET,
        "macaroon_secret_key": "synapse-test-macaroon-secret",
        "form_secret": "synapse-test-form-secret",
        "room_list_publication_rules": [{"action": "allow"}],
        // Other servers (Hearth) may browse its public rooms.
        "allow_public_rooms_over_federation": true,
        "rc_message": unlimited(),
        "rc_registration": unlimited(),
        "rc_login": {"address": unlimited(), "account": unlimited(), "failed_attempts": unlimited()},
        "rc_joins": {"local": unlimited(), "remote": unlimited()},
        "rc_joins_per_room": unlimited(),
        "rc_invites": {"per_room": unlimited(), "per_user": unlimited(), "per_issuer": unlimited()},
        "rc_room_creation": unlimited(),
        "rc_admin_redaction": unlimited(),
        "rc_key_requests": unlimited(),
        "rc_profile": unlimited(),
        "rc_federation": {"window_size": 1000, "sleep_limit": 10_000, "sleep_delay": 1, "reject_limit": 10_000, "concurrent": 100},
    })
}
