//! The `hearth` binary as an operator meets it: `hearth serve` on the embedded default (a
//! private PostgreSQL cluster in the data directory), its lock, its signals, crash recovery,
//! `hearth config check` and the account tools. Every test runs the real binary in a fresh
//! directory under /tmp (the `postgres` user the cluster runs as cannot enter /root).
//!
//! Only `zero_config_serve_tools_and_restart` uses the default port 8008; every other test
//! passes a free port in `HEARTH_LISTEN`, so the tests can run in parallel.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // tests may fail loudly

use crate::common;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use reqwest::StatusCode;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

const HEARTH: &str = env!("CARGO_BIN_EXE_hearth");
/// Generous: initdb and migrations on a busy 2-core machine.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a stop (SIGTERM/SIGINT) or a crash clean-up may take.
const STOP_DEADLINE: Duration = Duration::from_secs(10);
const TOOL_DEADLINE: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------------------------

/// A fresh directory under /tmp that the `postgres` user can enter.
fn temp_dir() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("hearth-bin-").tempdir_in("/tmp").expect("create temp dir");
    // Explicit, so that a restrictive umask cannot hide the cluster from the `postgres` user.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod temp dir");
    dir
}

/// A port nobody listens on right now, that no port-0 bind can take before `hearth serve` binds it.
fn free_port() -> u16 {
    common::ports::port_for_child()
}

/// `hearth` with the developer's `HEARTH_*`/`RUST_LOG` variables removed.
fn hearth_command(cwd: &Path, env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(HEARTH);
    command.current_dir(cwd).stdin(Stdio::null());
    for (name, _) in std::env::vars_os() {
        let bytes = name.as_bytes();
        if bytes.starts_with(b"HEARTH_") || bytes == b"RUST_LOG" {
            command.env_remove(&name);
        }
    }
    command.envs(env.iter().copied());
    command
}

/// Runs a tool command to completion (killed after a deadline).
fn run_tool(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut child = hearth_command(cwd, env)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn hearth");
    // Pipes are drained by threads so that a chatty tool cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut buffer);
        buffer
    });
    let err = std::thread::spawn(move || {
        let mut buffer = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut buffer);
        buffer
    });
    let status = match wait_with_deadline(&mut child, TOOL_DEADLINE) {
        Some(status) => status,
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`hearth {}` did not finish within {TOOL_DEADLINE:?}", args.join(" "));
        }
    };
    Output { status, stdout: out.join().expect("stdout reader"), stderr: err.join().expect("stderr reader") }
}

fn wait_with_deadline(child: &mut Child, deadline: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = child.try_wait().expect("poll child") {
            return Some(status);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[track_caller]
fn assert_success(output: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// A running `hearth serve`. Dropping it (on success or on a failed assertion) kills the server
/// with SIGKILL and waits until its PostgreSQL has gone too, so nothing outlives the test.
struct Server {
    child: Child,
    base_url: String,
    log: PathBuf,
    cluster: PathBuf,
}

impl Server {
    /// Spawns `hearth serve` in `cwd`; its output goes to a log file beside the data directory.
    fn spawn(cwd: &Path, cluster: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = cwd.join(format!("serve-{n}.log"));
        let file = fs::File::create(&log).expect("create server log");
        let child = hearth_command(cwd, env)
            .arg("serve")
            .stdout(file.try_clone().expect("clone log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn hearth serve");
        Server { child, base_url: format!("http://127.0.0.1:{port}"), log, cluster: cluster.to_owned() }
    }

    /// Spawns and waits until `/versions` answers.
    async fn start(cwd: &Path, cluster: &Path, port: u16, env: &[(&str, &str)]) -> Server {
        let mut server = Server::spawn(cwd, cluster, port, env);
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&mut self) {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("http client");
        let url = format!("{}/_matrix/client/versions", self.base_url);
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("poll server") {
                panic!("hearth serve exited during start-up ({status}); its output:\n{}", self.log());
            }
            if let Ok(response) = http.get(&url).send().await
                && response.status() == StatusCode::OK
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "hearth serve did not answer within {START_DEADLINE:?}:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll server").is_none()
    }

    /// Sends `signal` and waits for the process to exit.
    fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        kill(self.pid(), signal).expect("signal the server");
        self.wait_exit()
    }

    fn wait_exit(&mut self) -> ExitStatus {
        match wait_with_deadline(&mut self.child, STOP_DEADLINE) {
            Some(status) => status,
            None => panic!("hearth did not exit within {STOP_DEADLINE:?}; its output:\n{}", self.log()),
        }
    }

    fn http(&self) -> Http {
        Http { client: reqwest::Client::new(), base_url: self.base_url.clone() }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // The postmaster stops on its parent-death signal; make sure, so that the temp
        // directory can go and no cluster outlives the test.
        if !wait_until(STOP_DEADLINE, || postmasters(&self.cluster).is_empty()) {
            for pid in postmasters(&self.cluster) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
    }
}

fn wait_until(deadline: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + deadline;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------------
// What /proc says about PostgreSQL
// ---------------------------------------------------------------------------------------------

fn cmdline(pid: i32) -> Vec<Vec<u8>> {
    fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap_or_default()
        .split(|byte| *byte == 0)
        .filter(|arg| !arg.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// Live processes started as `postgres -D <cluster>` (the postmaster keeps its command line;
/// its children rename themselves; a zombie has none).
fn postmasters(cluster: &Path) -> Vec<i32> {
    let cluster = cluster.as_os_str().as_bytes();
    let Ok(entries) = fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| cmdline(*pid).windows(2).any(|pair| pair[0] == b"-D" && pair[1] == cluster))
        .collect()
}

/// The postmaster's pid as PostgreSQL records it.
fn recorded_postmaster(cluster: &Path) -> i32 {
    let text = fs::read_to_string(cluster.join("postmaster.pid")).expect("postmaster.pid exists while serving");
    text.lines().next().and_then(|line| line.trim().parse().ok()).expect("postmaster.pid starts with a pid")
}

fn socket_inodes(pid: i32) -> HashSet<u64> {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the postmaster's file descriptors")
        .flatten()
        .filter_map(|entry| {
            let target = fs::read_link(entry.path()).ok()?;
            target.to_str()?.strip_prefix("socket:[")?.strip_suffix(']')?.parse().ok()
        })
        .collect()
}

/// Paths of the unix sockets with these inodes (`/proc/net/unix`: `… Inode Path`).
fn unix_socket_paths(inodes: &HashSet<u64>) -> Vec<PathBuf> {
    fs::read_to_string("/proc/net/unix")
        .expect("read /proc/net/unix")
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let inode: u64 = fields.get(6)?.parse().ok()?;
            inodes.contains(&inode).then(|| fields.get(7).map(PathBuf::from)).flatten()
        })
        .collect()
}

/// Inodes of every TCP socket on the machine (`/proc/net/tcp{,6}`: inode is the 10th field).
fn tcp_socket_inodes() -> HashSet<u64> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|path| fs::read_to_string(path).ok())
        .flat_map(|text| {
            text.lines().skip(1).filter_map(|line| line.split_whitespace().nth(9)?.parse().ok()).collect::<Vec<u64>>()
        })
        .collect()
}

/// Asserts that a postmaster for `cluster` runs as `postgres`, listens on a unix socket inside
/// the cluster directory and has no TCP socket. Returns its pid.
#[track_caller]
fn assert_private_postmaster(cluster: &Path) -> i32 {
    let pid = recorded_postmaster(cluster);
    assert!(
        postmasters(cluster).contains(&pid),
        "postmaster.pid names {pid}, which is not a running `postgres -D {}`",
        cluster.display()
    );
    let exe = fs::read_link(format!("/proc/{pid}/exe")).expect("postmaster executable");
    assert!(exe.ends_with("postgres"), "the cluster is run by {}", exe.display());
    let postgres_uid = nix::unistd::User::from_name("postgres").expect("passwd").expect("postgres user").uid;
    let owner = fs::metadata(format!("/proc/{pid}")).expect("postmaster in /proc").uid();
    assert_eq!(owner, postgres_uid.as_raw(), "as root, Hearth runs PostgreSQL as the `postgres` user");

    let inodes = socket_inodes(pid);
    let paths = unix_socket_paths(&inodes);
    let socket = cluster.join(".s.PGSQL.5432");
    assert!(paths.contains(&socket), "the postmaster listens on {}; its unix sockets: {paths:?}", socket.display());
    assert!(paths.iter().all(|path| path.starts_with(cluster)), "unix sockets outside the cluster: {paths:?}");
    let tcp = tcp_socket_inodes();
    assert!(inodes.is_disjoint(&tcp), "the embedded PostgreSQL must not have a TCP socket");
    pid
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

struct Http {
    client: reqwest::Client,
    base_url: String,
}

impl Http {
    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        common::send_json(&self.client, method, &format!("{}{path}", self.base_url), token, body).await
    }

    async fn login(&self, user: &str, password: &str) -> (StatusCode, Value) {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        self.request(reqwest::Method::POST, "/_matrix/client/v3/login", None, Some(body)).await
    }

    /// Logs in and returns `(access_token, device_id)`.
    async fn login_ok(&self, user: &str, password: &str) -> (String, String) {
        let (status, body) = self.login(user, password).await;
        assert_eq!(status, StatusCode::OK, "login of {user} failed: {body}");
        let token = body["access_token"].as_str().expect("access_token").to_owned();
        let device = body["device_id"].as_str().expect("device_id").to_owned();
        (token, device)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(reqwest::Method::GET, path, token, None).await
    }
}

#[track_caller]
fn assert_error(response: &(StatusCode, Value), status: StatusCode, errcode: &str) {
    assert_eq!(response.0, status, "unexpected status; body: {}", response.1);
    assert_eq!(response.1["errcode"], errcode, "unexpected errcode; body: {}", response.1);
}

/// Configuration for a test that must not use the defaults' port: its own data directory
/// and a free port.
fn env_for(data_dir: &Path, port: u16) -> Vec<(String, String)> {
    vec![
        ("HEARTH_DATA_DIR".to_owned(), data_dir.display().to_string()),
        ("HEARTH_LISTEN".to_owned(), format!("127.0.0.1:{port}")),
    ]
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// The whole zero-configuration story in one test, because it alone owns port 8008.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_config_serve_tools_and_restart() {
    if let Err(error) = std::net::TcpListener::bind("127.0.0.1:8008") {
        panic!("this test needs 127.0.0.1:8008 (the zero-config default) free, but it is not: {error}");
    }
    let dir = temp_dir();
    let data = dir.path().join("hearth-data");
    let cluster = data.join("postgres");

    // An empty directory, no configuration, no environment.
    let mut server = Server::start(dir.path(), &cluster, 8008, &[]).await;
    assert!(cluster.join("PG_VERSION").is_file(), "the cluster is initialised in hearth-data/postgres");
    let key_path = data.join("signing.key");
    let signing_key = fs::read(&key_path).expect("hearth-data/signing.key is generated on first start");
    assert!(!signing_key.is_empty());
    let postmaster = assert_private_postmaster(&cluster);

    // The operator creates an account while the server runs.
    let output = run_tool(dir.path(), &[], &["user", "create", "alice", "--password", "pw"]);
    let stdout = assert_success(&output, "`hearth user create` beside a running server");
    assert!(stdout.contains("@alice:localhost"), "the tool names the new account: {stdout}");
    assert!(server.is_running(), "the tool must not disturb the server:\n{}", server.log());
    assert_eq!(recorded_postmaster(&cluster), postmaster, "the tool uses the server's PostgreSQL");

    // Alice uses it as a client would.
    let http = server.http();
    let (token, device) = http.login_ok("alice", "pw").await;
    let (status, body) = http.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    assert_eq!(body["device_id"], device.as_str());

    let displayname = "/_matrix/client/v3/profile/@alice:localhost/displayname";
    let response =
        http.request(reqwest::Method::PUT, displayname, Some(&token), Some(json!({"displayname": "Alice"}))).await;
    assert_eq!(response.0, StatusCode::OK, "{}", response.1);
    let (status, body) = http.get(displayname, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Alice");

    // A second session, listed and then deleted with password re-authentication.
    let (other_token, other_device) = http.login_ok("alice", "pw").await;
    let (status, body) = http.get("/_matrix/client/v3/devices", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let listed: HashSet<&str> =
        body["devices"].as_array().expect("devices").iter().filter_map(|d| d["device_id"].as_str()).collect();
    assert_eq!(listed, HashSet::from([device.as_str(), other_device.as_str()]));

    let device_path = format!("/_matrix/client/v3/devices/{other_device}");
    let (status, body) = http.request(reqwest::Method::DELETE, &device_path, Some(&token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "deleting a device needs re-authentication: {body}");
    let session = body["session"].as_str().expect("UIA session").to_owned();
    let auth = json!({"auth": {
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": "alice"},
        "password": "pw",
        "session": session,
    }});
    let (status, body) = http.request(reqwest::Method::DELETE, &device_path, Some(&token), Some(auth)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = http.get("/_matrix/client/v3/devices", Some(&token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["devices"].as_array().map(Vec::len), Some(1), "{body}");
    let response = http.get("/_matrix/client/v3/account/whoami", Some(&other_token)).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    let (status, body) = http.request(reqwest::Method::POST, "/_matrix/client/v3/logout", Some(&token), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = http.get("/_matrix/client/v3/account/whoami", Some(&token)).await;
    assert_error(&response, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");

    // SIGTERM (systemd, docker stop): a clean exit that takes PostgreSQL along. The client
    // still holds a keep-alive connection, as real clients do.
    let status = server.stop_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "SIGTERM is a clean stop:\n{}", server.log());
    assert!(postmasters(&cluster).is_empty(), "PostgreSQL stops with Hearth");
    assert!(!cluster.join("postmaster.pid").exists(), "PostgreSQL shut down cleanly");
    drop(server);

    // A second start reuses the cluster and the key.
    let pg_version = fs::metadata(cluster.join("PG_VERSION")).expect("PG_VERSION");
    let mut server = Server::start(dir.path(), &cluster, 8008, &[]).await;
    let again = fs::metadata(cluster.join("PG_VERSION")).expect("PG_VERSION");
    assert_eq!((again.ino(), again.mtime_nsec()), (pg_version.ino(), pg_version.mtime_nsec()), "no second initdb");
    assert_eq!(fs::read(&key_path).expect("signing key"), signing_key, "the signing key is kept");
    assert_private_postmaster(&cluster);
    let http = server.http();
    http.login_ok("alice", "pw").await;
    let (status, body) = http.get(displayname, None).await;
    assert_eq!((status, &body["displayname"]), (StatusCode::OK, &json!("Alice")), "{body}");

    // Ctrl-C in a terminal.
    let status = server.stop_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "SIGINT is a clean stop:\n{}", server.log());
    assert!(postmasters(&cluster).is_empty(), "PostgreSQL stops with Hearth");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_server_on_the_same_data_dir_is_refused() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let cluster = data.join("postgres");
    let (first_port, second_port) = (free_port(), free_port());
    let first_env = env_for(&data, first_port);
    let mut first = Server::start(dir.path(), &cluster, first_port, &borrowed(&first_env)).await;
    let postmaster = assert_private_postmaster(&cluster);

    let second_env = env_for(&data, second_port);
    let mut second = Server::spawn(dir.path(), &cluster, second_port, &borrowed(&second_env));
    let status = second.wait_exit();
    let output = second.log();
    assert!(!status.success(), "the second server must fail; its output:\n{output}");
    assert!(
        output.contains("data directory") && output.contains(&data.display().to_string()),
        "the error names the data directory: {output}"
    );
    assert!(output.contains("hearth.lock"), "the error names the lock: {output}");

    assert!(first.is_running(), "the first server keeps running:\n{}", first.log());
    let (status, _) = first.http().get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(recorded_postmaster(&cluster), postmaster, "the first server's PostgreSQL is untouched");
    assert!(postmasters(&cluster).contains(&postmaster), "the first server's PostgreSQL still runs");
    assert_eq!(first.stop_with(Signal::SIGTERM).code(), Some(0), "{}", first.log());
}

/// Writes a `postmaster.pid` as PostgreSQL does (pid, data dir, start time, port, socket
/// dir, listen address, shared memory key, status).
fn write_postmaster_pid(cluster: &Path, pid: u32) {
    let text = format!(
        "{pid}\n{}\n1700000000\n5432\n{}\n\n  5432001         0\nready   \n",
        cluster.display(),
        cluster.display()
    );
    fs::write(cluster.join("postmaster.pid"), text).expect("write postmaster.pid");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_recovery_and_stale_postmaster_pid() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let cluster = data.join("postgres");
    let port = free_port();
    let env = env_for(&data, port);
    let env = borrowed(&env);

    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    assert_success(&run_tool(dir.path(), &env, &["user", "create", "carol", "--password", "pw"]), "user create");
    let postmaster = assert_private_postmaster(&cluster);

    // A crash: Hearth dies without a chance to stop PostgreSQL, which must follow by itself.
    server.stop_with(Signal::SIGKILL);
    assert!(
        wait_until(STOP_DEADLINE, || postmasters(&cluster).is_empty()),
        "the embedded PostgreSQL (pid {postmaster}) outlived a crashed Hearth"
    );
    drop(server);

    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    server.http().login_ok("carol", "pw").await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    drop(server);

    // A postmaster.pid left by a crash, naming a process that no longer exists.
    let mut gone = Command::new("true").spawn().expect("spawn true");
    let dead_pid = gone.id();
    gone.wait().expect("wait for true");
    write_postmaster_pid(&cluster, dead_pid);
    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    assert_ne!(recorded_postmaster(&cluster), dead_pid as i32);
    server.http().login_ok("carol", "pw").await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    drop(server);

    // After a reboot the pid in a stale file may belong to an unrelated live process: Hearth
    // must neither refuse to start nor touch that process.
    let mut bystander = Bystander(Command::new("sleep").arg("120").spawn().expect("spawn sleep"));
    write_postmaster_pid(&cluster, bystander.0.id());
    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    assert!(bystander.0.try_wait().expect("poll bystander").is_none(), "Hearth killed an unrelated process");
    server.http().login_ok("carol", "pw").await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
}

/// An unrelated process, killed when the test ends however it ends.
struct Bystander(Child);

impl Drop for Bystander {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A stale `postmaster.pid` whose pid now belongs to *another* PostgreSQL (after a reboot,
/// e.g. the system's own cluster, or another Hearth's) must not make Hearth shut that one down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_postmaster_pid_of_another_cluster_is_left_alone() {
    let dir = temp_dir();
    let ours = dir.path().join("ours");
    let theirs = dir.path().join("theirs");
    let (our_port, their_port) = (free_port(), free_port());
    let our_env = env_for(&ours, our_port);
    let their_env = env_for(&theirs, their_port);

    // Initialise our cluster, then stop it cleanly.
    let mut server = Server::start(dir.path(), &ours.join("postgres"), our_port, &borrowed(&our_env)).await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    drop(server);

    let mut neighbour = Server::start(dir.path(), &theirs.join("postgres"), their_port, &borrowed(&their_env)).await;
    let their_postmaster = assert_private_postmaster(&theirs.join("postgres"));
    write_postmaster_pid(&ours.join("postgres"), their_postmaster as u32);

    let mut server = Server::start(dir.path(), &ours.join("postgres"), our_port, &borrowed(&our_env)).await;
    assert_private_postmaster(&ours.join("postgres"));
    assert!(neighbour.is_running(), "starting one Hearth stopped another:\n{}", neighbour.log());
    assert!(postmasters(&theirs.join("postgres")).contains(&their_postmaster), "the other PostgreSQL was stopped");
    let (status, _) = neighbour.http().get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    assert_eq!(neighbour.stop_with(Signal::SIGTERM).code(), Some(0), "{}", neighbour.log());
}

#[test]
fn config_check_version_and_help() {
    let dir = temp_dir();
    let cwd = dir.path();

    // The effective configuration, secrets masked.
    let secret = "s3cret-shared-value-7d1f";
    let output = run_tool(
        cwd,
        &[
            ("HEARTH_REGISTRATION__SHARED_SECRET", secret),
            ("HEARTH_SERVER_NAME", "example.org"),
            ("HEARTH_LISTEN", "127.0.0.1:8448, [::1]:8449"),
        ],
        &["config", "check"],
    );
    let stdout = assert_success(&output, "config check");
    assert!(!stdout.contains(secret), "the shared secret must be masked:\n{stdout}");
    assert!(!String::from_utf8_lossy(&output.stderr).contains(secret), "nor leak to stderr");
    let effective: toml::Value = toml::from_str(&stdout).expect("config check prints TOML");
    assert_eq!(effective["server_name"].as_str(), Some("example.org"));
    assert_eq!(effective["listen"], toml::Value::try_from(["127.0.0.1:8448", "[::1]:8449"]).expect("toml"));
    let shared_secret = effective["registration"]["shared_secret"].as_str().expect("a set secret is shown as set");
    assert!(!shared_secret.is_empty() && shared_secret.chars().all(|c| c == '*'), "masked: {shared_secret}");

    // With no configuration at all: the embedded defaults.
    let stdout = assert_success(&run_tool(cwd, &[], &["config", "check"]), "config check");
    let defaults: toml::Value = toml::from_str(&stdout).expect("config check prints TOML");
    assert_eq!(defaults["server_name"].as_str(), Some("localhost"));
    assert_eq!(defaults["listen"], toml::Value::try_from(["127.0.0.1:8008"]).expect("toml"));
    assert_eq!(
        defaults["network"]["allow_private_destinations"].as_bool(),
        Some(false),
        "outbound requests to private addresses are refused unless allowed"
    );
    let output = run_tool(cwd, &[("HEARTH_NETWORK__ALLOW_PRIVATE_DESTINATIONS", "true")], &["config", "check"]);
    let allowed: toml::Value = toml::from_str(&assert_success(&output, "config check")).expect("TOML");
    assert_eq!(allowed["network"]["allow_private_destinations"].as_bool(), Some(true));

    // Federation: on by default, on the client listener; its list keys take the
    // comma-separated form in the environment, as `HEARTH_LISTEN` does.
    assert_eq!(defaults["federation"]["enabled"].as_bool(), Some(true));
    assert_eq!(defaults["federation"]["listen"], toml::Value::Array(Vec::new()));
    let env = [
        ("HEARTH_FEDERATION__LISTEN", "0.0.0.0:8448, [::]:8448"),
        ("HEARTH_FEDERATION__TRUSTED_KEY_SERVERS", "notary.example"),
    ];
    let federation: toml::Value =
        toml::from_str(&assert_success(&run_tool(cwd, &env, &["config", "check"]), "config check")).expect("TOML");
    assert_eq!(federation["federation"]["listen"], toml::Value::try_from(["0.0.0.0:8448", "[::]:8448"]).expect("toml"));
    assert_eq!(
        federation["federation"]["trusted_key_servers"],
        toml::Value::try_from(["notary.example"]).expect("toml")
    );

    // A file, overridden by the environment.
    let file = cwd.join("hearth.toml");
    fs::write(&file, "server_name = \"file.example\"\n[registration]\nenabled = true\n").expect("write config");
    let file_arg = file.to_str().expect("utf-8 path");
    let stdout = assert_success(&run_tool(cwd, &[], &["config", "check", "--config", file_arg]), "config check");
    let effective: toml::Value = toml::from_str(&stdout).expect("TOML");
    assert_eq!(effective["server_name"].as_str(), Some("file.example"));
    assert_eq!(effective["registration"]["enabled"].as_bool(), Some(true));
    let output = run_tool(cwd, &[("HEARTH_SERVER_NAME", "env.example")], &["config", "check", "--config", file_arg]);
    let effective: toml::Value = toml::from_str(&assert_success(&output, "config check")).expect("TOML");
    assert_eq!(effective["server_name"].as_str(), Some("env.example"), "the environment beats the file");

    // Invalid values name their key.
    let rejects = |env: &[(&str, &str)], args: &[&str], needle: &str| {
        let output = run_tool(cwd, env, args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success(),
            "{args:?} with {env:?} must fail; stdout: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        assert!(stderr.contains(needle), "the error for {args:?} with {env:?} must mention {needle:?}: {stderr}");
    };
    rejects(&[("HEARTH_REGISTRATION__ENABLED", "maybe")], &["config", "check"], "registration.enabled");
    rejects(&[("HEARTH_SERVER_NAME", "not a name!")], &["config", "check"], "server_name");
    rejects(
        &[("HEARTH_NETWORK__ALLOW_PRIVATE_DESTINATIONS", "maybe")],
        &["config", "check"],
        "network.allow_private_destinations",
    );
    rejects(&[("HEARTH_FEDERATION__LISTEN", "nonsense")], &["config", "check"], "federation.listen");
    rejects(&[("HEARTH_FEDERATION__TLS_CERT", "/nonexistent/cert.pem")], &["config", "check"], "federation.tls_cert");
    rejects(&[("HEARTH_FEDERATION__TRUSTED_KEY_SERVERS", "not a name!")], &["config", "check"], "trusted_key_servers");
    fs::write(cwd.join("listen.toml"), "listen = [\"nonsense\"]\n").expect("write config");
    rejects(&[], &["config", "check", "--config", "listen.toml"], "listen");
    fs::write(cwd.join("unknown.toml"), "server_name = \"example.org\"\nfavourite_colour = \"blue\"\n").expect("write");
    rejects(&[], &["config", "check", "--config", "unknown.toml"], "favourite_colour");
    rejects(&[], &["config", "check", "--config", "unknown.toml"], "unknown.toml");
    fs::write(cwd.join("nested.toml"), "[registration]\nenabeld = true\n").expect("write config");
    rejects(&[], &["config", "check", "--config", "nested.toml"], "enabeld");
    rejects(&[], &["config", "check", "--config", "missing.toml"], "missing.toml");
    rejects(&[], &["config", "check", "--config", "missing.toml"], "does not exist");
    // `serve` validates the same way, before touching anything.
    rejects(&[("HEARTH_REGISTRATION__ENABLED", "maybe")], &["serve"], "registration.enabled");
    assert!(!cwd.join("hearth-data").exists(), "invalid configuration must not create a data directory");

    let stdout = assert_success(&run_tool(cwd, &[], &["--version"]), "--version");
    assert!(stdout.contains(env!("CARGO_PKG_VERSION")), "--version prints the version: {stdout}");
    let stdout = assert_success(&run_tool(cwd, &[], &["user", "--help"]), "user --help");
    for command in ["create", "reset-password", "deactivate"] {
        assert!(stdout.contains(command), "`hearth user --help` lists {command}: {stdout}");
    }
    let stdout = assert_success(&run_tool(cwd, &[], &["--help"]), "--help");
    for command in ["serve", "config", "user", "registration-token"] {
        assert!(stdout.contains(command), "`hearth --help` lists {command}: {stdout}");
    }
}

#[test]
fn string_keys_take_what_looks_like_a_number_or_a_boolean_as_written() {
    // The environment's values are parsed like TOML, so `10` is a number and `true` a boolean;
    // a key that holds a string takes them as the text they are (config.example.toml shows
    // `HEARTH_ROOMS__DEFAULT_VERSION=10` unquoted), leading zeros and all.
    let dir = temp_dir();
    let cwd = dir.path();
    let env = [("HEARTH_ROOMS__DEFAULT_VERSION", "10"), ("HEARTH_DATA_DIR", "0123"), ("HEARTH_SERVER_NAME", "true")];
    let stdout = assert_success(&run_tool(cwd, &env, &["config", "check"]), "config check");
    let effective: toml::Value = toml::from_str(&stdout).expect("config check prints TOML");
    assert_eq!(effective["rooms"]["default_version"].as_str(), Some("10"), "{stdout}");
    assert_eq!(effective["data_dir"].as_str(), Some("0123"), "{stdout}");
    assert_eq!(effective["server_name"].as_str(), Some("true"), "{stdout}");
    // A file may write the room version as a number too.
    fs::write(cwd.join("version.toml"), "[rooms]\ndefault_version = 11\n").expect("write config");
    let stdout = assert_success(&run_tool(cwd, &[], &["config", "check", "--config", "version.toml"]), "config check");
    let effective: toml::Value = toml::from_str(&stdout).expect("TOML");
    assert_eq!(effective["rooms"]["default_version"].as_str(), Some("11"), "{stdout}");
    // Typed keys still refuse what they cannot hold, naming the key.
    let output = run_tool(cwd, &[("HEARTH_DATABASE__MAX_CONNECTIONS", "many")], &["config", "check"]);
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.max_connections"));
    let output = run_tool(cwd, &[("HEARTH_DATABASE__SYNCHRONOUS_COMMIT", "maybe")], &["config", "check"]);
    assert!(!output.status.success(), "synchronous_commit is on or off");
    assert!(String::from_utf8_lossy(&output.stderr).contains("database.synchronous_commit"));
    let env = [("HEARTH_DATABASE__SYNCHRONOUS_COMMIT", "off")];
    let stdout = assert_success(&run_tool(cwd, &env, &["config", "check"]), "config check");
    let effective: toml::Value = toml::from_str(&stdout).expect("TOML");
    assert_eq!(effective["database"]["synchronous_commit"].as_str(), Some("off"), "{stdout}");
    let output = run_tool(cwd, &[("HEARTH_ROOMS__DEFAULT_VERSION", "13")], &["config", "check"]);
    assert!(!output.status.success(), "room version 13 does not exist");
    assert!(String::from_utf8_lossy(&output.stderr).contains("rooms.default_version"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn account_tools_without_a_running_server() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let cluster = data.join("postgres");
    let port = free_port();
    let env = env_for(&data, port);
    let env = borrowed(&env);
    let tool = |args: &[&str]| {
        let output = run_tool(dir.path(), &env, args);
        assert!(postmasters(&cluster).is_empty(), "`hearth {}` left PostgreSQL running", args.join(" "));
        output
    };

    // Created with a generated password, which the tool prints.
    let stdout = assert_success(&tool(&["user", "create", "bob"]), "user create");
    assert!(cluster.join("PG_VERSION").is_file(), "the tool initialises the cluster itself");
    let password = stdout
        .lines()
        .find_map(|line| line.strip_prefix("password: "))
        .unwrap_or_else(|| panic!("a generated password is printed: {stdout}"))
        .trim()
        .to_owned();
    assert!(password.len() >= 12, "a generated password is long: {password:?}");

    // An existing user cannot be created again.
    let output = tool(&["user", "create", "bob", "--password", "other"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "creating bob twice must fail");
    assert!(stderr.contains("already taken") || stderr.contains("M_USER_IN_USE"), "a clear message: {stderr}");

    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    server.http().login_ok("bob", &password).await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    drop(server);

    let stdout =
        assert_success(&tool(&["user", "reset-password", "@bob:localhost", "--password", "new pw"]), "reset-password");
    assert!(stdout.contains("@bob:localhost"), "{stdout}");
    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    let http = server.http();
    assert_error(&http.login("bob", &password).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    http.login_ok("bob", "new pw").await;
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
    drop(server);

    let stdout = assert_success(&tool(&["user", "deactivate", "bob"]), "deactivate");
    assert!(stdout.contains("@bob:localhost"), "{stdout}");
    let output = tool(&["user", "reset-password", "nobody", "--password", "x"]);
    assert!(!output.status.success(), "resetting an unknown user's password must fail");
    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    assert_error(&server.http().login("bob", "new pw").await, StatusCode::FORBIDDEN, "M_USER_DEACTIVATED");
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
}

/// #15 item 3: Hearth manages its PostgreSQL, so when the postmaster dies (here SIGKILL, as
/// the out-of-memory killer would) Hearth restarts it and carries on: requests in the
/// meantime answer 503 `M_UNKNOWN` with `Retry-After` (never 500), and every message that was
/// acknowledged before, during or after is in the room exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_postmaster_is_restarted_and_nothing_acknowledged_is_lost() {
    let dir = temp_dir();
    let data = dir.path().join("data");
    let cluster = data.join("postgres");
    let port = free_port();
    let mut env = env_for(&data, port);
    env.push(("HEARTH_RATE_LIMITS__ENABLED".to_owned(), "false".to_owned()));
    let env = borrowed(&env);
    let mut server = Server::start(dir.path(), &cluster, port, &env).await;
    assert_success(&run_tool(dir.path(), &env, &["user", "create", "dana", "--password", "pw"]), "user create");
    let http = server.http();
    let (token, _) = http.login_ok("dana", "pw").await;
    let (status, body) =
        http.request(reqwest::Method::POST, "/_matrix/client/v3/createRoom", Some(&token), Some(json!({}))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let room = body["room_id"].as_str().expect("room_id").to_owned();
    let first_postmaster = recorded_postmaster(&cluster);

    let mut acknowledged = Vec::new();
    let mut unavailable = 0;
    for n in 0..40 {
        if n == 15 {
            kill(Pid::from_raw(first_postmaster), Signal::SIGKILL).expect("kill the postmaster");
        }
        let path = format!("/_matrix/client/v3/rooms/{}/send/m.room.message/txn-{n}", common::encode(&room));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let response = http
                .client
                .put(format!("{}{path}", http.base_url))
                .bearer_auth(&token)
                .json(&json!({"msgtype": "m.text", "body": format!("message {n}")}))
                .send()
                .await
                .expect("Hearth keeps answering");
            let status = response.status();
            let retry_after = response.headers().contains_key("retry-after");
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if status == StatusCode::OK {
                acknowledged.push(body["event_id"].as_str().expect("event_id").to_owned());
                break;
            }
            assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "while PostgreSQL restarts: {body}\n{}", server.log());
            assert_eq!(body["errcode"], "M_UNKNOWN");
            assert!(retry_after, "a 503 says when to retry");
            unavailable += 1;
            assert!(Instant::now() < deadline, "PostgreSQL did not come back within a minute:\n{}", server.log());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert!(server.is_running(), "Hearth exited when its PostgreSQL died:\n{}", server.log());
    let second_postmaster = recorded_postmaster(&cluster);
    assert_ne!(first_postmaster, second_postmaster, "the postmaster was restarted");
    assert_eq!(postmasters(&cluster), vec![second_postmaster], "exactly one postmaster serves the cluster");
    eprintln!("{unavailable} answers of 503 while PostgreSQL restarted");

    let (status, body) = http
        .get(&format!("/_matrix/client/v3/rooms/{}/messages?dir=f&limit=100", common::encode(&room)), Some(&token))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(common::message_ids(&body), acknowledged, "every acknowledged message, once, in order");
    let health = http.client.get(format!("{}/health", http.base_url)).send().await.expect("health");
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(server.stop_with(Signal::SIGTERM).code(), Some(0), "{}", server.log());
}
