//! Hearth's private PostgreSQL cluster: the embedded default (DESIGN §5).
//!
//! The cluster lives in `<data_dir>/postgres` and listens only on a unix socket inside that
//! directory. PostgreSQL refuses to run as root, so when Hearth is root the cluster belongs to
//! the unprivileged `postgres` system user. The postmaster is Hearth's child: it is started in
//! its own process group (a terminal's Ctrl-C reaches Hearth, which then shuts down in order)
//! and with a parent-death signal, so a crashed Hearth never leaves an orphan behind.

use anyhow::{Context, anyhow, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{Pid, User, geteuid};
use sqlx::postgres::PgConnectOptions;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind as IoErrorKind, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The superuser initdb creates; Hearth connects as it over the private socket.
pub const SUPERUSER: &str = "hearth";
/// Unix sockets have a 108-byte path limit (including the `.s.PGSQL.5432` file name).
const MAX_SOCKET_DIR_LEN: usize = 107 - ".s.PGSQL.5432".len() - 1;
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How to run a cluster: where, and with which extra server settings.
#[derive(Clone, Debug)]
pub struct ClusterOptions {
    pub dir: PathBuf,
    pub log_file: PathBuf,
    /// `-c name=value` settings, e.g. `fsync=off` for throwaway test clusters.
    pub settings: Vec<(String, String)>,
}

impl ClusterOptions {
    /// The embedded default under a Hearth data directory.
    pub fn for_data_dir(data_dir: &Path) -> ClusterOptions {
        ClusterOptions {
            dir: data_dir.join("postgres"),
            log_file: data_dir.join("postgres.log"),
            settings: vec![("max_connections".into(), "200".into())],
        }
    }
}

/// Connection options for a cluster's private socket.
pub fn connect_options(cluster_dir: &Path, database: &str) -> PgConnectOptions {
    PgConnectOptions::new().socket(cluster_dir).username(SUPERUSER).database(database)
}

/// A running postmaster that this process started and will stop.
pub struct RunningCluster {
    dir: PathBuf,
    log_file: PathBuf,
    pid: Pid,
    // Behind a mutex only so that a cluster can live in a `static` (test harnesses).
    exited: std::sync::Mutex<mpsc::Receiver<std::io::Result<ExitStatus>>>,
    died: tokio::sync::watch::Receiver<bool>,
    stopped: bool,
}

/// The account the cluster runs as when Hearth is root.
struct RunAs {
    name: String,
    uid: nix::unistd::Uid,
    gid: nix::unistd::Gid,
}

impl RunningCluster {
    /// Initialises the cluster on first use, then starts it and waits until it accepts
    /// connections. Blocking: call from `spawn_blocking` in async code.
    pub fn start(options: &ClusterOptions) -> anyhow::Result<RunningCluster> {
        let bin_dir = find_binaries()?;
        let dir = absolute(&options.dir)?;
        let socket_len = dir.as_os_str().len();
        if socket_len > MAX_SOCKET_DIR_LEN {
            bail!(
                "the PostgreSQL directory {} is {socket_len} bytes long; its unix socket needs it \
                 to be at most {MAX_SOCKET_DIR_LEN}: choose a shorter `data_dir`",
                dir.display()
            );
        }
        let run_as = run_as()?;
        prepare_directory(&dir, run_as.as_ref())?;
        if !dir.join("PG_VERSION").exists() {
            initdb(&bin_dir, &dir, run_as.as_ref())?;
        }
        clear_stale_postmaster(&dir)?;
        Self::spawn(&bin_dir, &dir, options, run_as.as_ref())
    }

    fn spawn(bin_dir: &Path, dir: &Path, options: &ClusterOptions, run_as: Option<&RunAs>) -> anyhow::Result<Self> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&options.log_file)
            .with_context(|| format!("opening the PostgreSQL log {}", options.log_file.display()))?;
        let mut command = Command::new(bin_dir.join("postgres"));
        command
            .arg("-D")
            .arg(dir)
            .arg("-k")
            .arg(dir)
            .args(["-c", "listen_addresses=", "-c", "unix_socket_permissions=0700"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        for (name, value) in &options.settings {
            command.arg("-c").arg(format!("{name}={value}"));
        }
        if let Some(user) = run_as {
            command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
        }
        // SAFETY: prctl is async-signal-safe; it runs in the forked child before exec, after the
        // uid change (which would otherwise clear the parent-death signal).
        unsafe {
            command.pre_exec(|| nix::sys::prctl::set_pdeathsig(Signal::SIGINT).map_err(std::io::Error::from));
        }

        // The parent-death signal fires when the *thread* that forked the child ends, so the
        // child is forked from a thread that lives exactly as long as the postmaster does.
        let (started_tx, started_rx) = mpsc::channel();
        let (exited_tx, exited_rx) = mpsc::channel();
        let (died_tx, died_rx) = tokio::sync::watch::channel(false);
        std::thread::Builder::new().name("postgres-supervisor".into()).spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id()));
                let status = child.wait();
                let _ = died_tx.send(true);
                let _ = exited_tx.send(status);
            }
            Err(error) => {
                let _ = started_tx.send(Err(error));
            }
        })?;
        let pid = started_rx
            .recv()
            .map_err(|_| anyhow!("the PostgreSQL supervisor thread died"))?
            .context("starting postgres")?;
        let mut cluster = RunningCluster {
            dir: dir.to_owned(),
            log_file: options.log_file.clone(),
            pid: Pid::from_raw(pid as i32),
            exited: std::sync::Mutex::new(exited_rx),
            died: died_rx,
            stopped: false,
        };
        if let Some(user) = run_as {
            tracing::info!(user = %user.name, "running as root: the embedded PostgreSQL runs as an unprivileged user");
        }
        cluster.wait_until_ready()?;
        tracing::info!(dir = %dir.display(), pid, "embedded PostgreSQL is ready");
        Ok(cluster)
    }

    fn wait_until_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let exited = self.exited.lock().map(|receiver| receiver.try_recv().ok()).unwrap_or(None);
            if let Some(status) = exited {
                self.stopped = true;
                bail!(
                    "PostgreSQL exited during start-up ({}); its log {} ends with:\n{}",
                    status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string()),
                    self.log_file.display(),
                    log_tail(&self.log_file)
                );
            }
            // The postmaster writes its status as the last line of postmaster.pid; "ready"
            // means it accepts connections (the same check pg_ctl makes). The file must name
            // our child: a stale one from a crash may say "ready" too.
            if let Ok(text) = fs::read_to_string(self.dir.join("postmaster.pid"))
                && text.lines().next().map(str::trim) == Some(self.pid.to_string().as_str())
                && text.lines().nth(7).map(str::trim) == Some("ready")
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("PostgreSQL did not become ready within {READY_TIMEOUT:?}; see {}", self.log_file.display());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn connect_options(&self, database: &str) -> PgConnectOptions {
        connect_options(&self.dir, database)
    }

    /// Fast shutdown: disconnect clients, checkpoint, exit. Blocking.
    pub fn stop(mut self) -> anyhow::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> anyhow::Result<()> {
        // A postmaster that died was reaped by its supervisor thread: its pid may belong to
        // another process by now, which must not get our signal.
        if self.stopped || *self.died.borrow() {
            self.stopped = true;
            return Ok(());
        }
        self.stopped = true;
        if kill(self.pid, Signal::SIGINT).is_err() {
            return Ok(()); // already gone
        }
        let exited = match self.exited.lock() {
            Ok(receiver) => receiver.recv_timeout(STOP_TIMEOUT).is_ok(),
            Err(_) => false,
        };
        match exited {
            true => {
                tracing::info!("embedded PostgreSQL stopped");
                Ok(())
            }
            false => {
                let _ = kill(self.pid, Signal::SIGQUIT);
                bail!("PostgreSQL did not stop within {STOP_TIMEOUT:?}; sent an immediate shutdown")
            }
        }
    }

    /// Turns `true` when the postmaster exits, for whatever reason.
    pub fn died(&self) -> tokio::sync::watch::Receiver<bool> {
        self.died.clone()
    }

    pub fn pid(&self) -> u32 {
        self.pid.as_raw() as u32
    }
}

impl Drop for RunningCluster {
    fn drop(&mut self) {
        if let Err(error) = self.stop_inner() {
            tracing::warn!(%error, "stopping the embedded PostgreSQL");
        }
    }
}

/// Waits until no process works in the cluster directory any more (PostgreSQL's backends run
/// with it as their working directory), at most `timeout`; true when none is left.
///
/// After the postmaster was killed, its backends live on until each notices, and a new
/// postmaster must not start beside them: with the old `postmaster.pid` removed as stale, it
/// could not tell that they still use the old shared memory.
pub fn wait_for_orphaned_backends(dir: &Path, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if !any_process_in(dir) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn any_process_in(dir: &Path) -> bool {
    let Ok(entries) = fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        entry.file_name().as_bytes().iter().all(u8::is_ascii_digit)
            && fs::read_link(entry.path().join("cwd")).is_ok_and(|cwd| cwd == dir)
    })
}

/// Finds the directory holding `initdb` and `postgres`: `PATH`, then `pg_config --bindir`,
/// then Debian's `/usr/lib/postgresql/<newest>/bin`.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if has_both(&dir) {
                return Ok(dir);
            }
        }
    }
    if let Ok(output) = Command::new("pg_config").arg("--bindir").output()
        && output.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        if has_both(&dir) {
            return Ok(dir);
        }
    }
    let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_both(dir))
        .collect();
    versions.sort();
    if let Some((_, dir)) = versions.pop() {
        return Ok(dir);
    }
    bail!(
        "the PostgreSQL server binaries (initdb, postgres) were not found in PATH, \
         `pg_config --bindir` or /usr/lib/postgresql/*/bin: install them \
         (Debian/Ubuntu: `apt-get install postgresql`) or set `database.url`"
    )
}

fn run_as() -> anyhow::Result<Option<RunAs>> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    let user = User::from_name("postgres").context("looking up the `postgres` user")?.ok_or_else(|| {
        anyhow!(
            "Hearth runs as root, and PostgreSQL refuses to: an unprivileged `postgres` system \
                 user is needed to own the embedded cluster (installing Debian's postgresql package \
                 creates it), or run Hearth as another user, or set `database.url`"
        )
    })?;
    Ok(Some(RunAs { name: user.name, uid: user.uid, gid: user.gid }))
}

/// The absolute form of `path`, with `.` components dropped: the default data directory is
/// `./hearth-data`, and `/srv/./hearth-data/postgres` would lengthen the socket path and be a
/// second spelling of the directory that `is_postmaster_of` compares.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))
}

fn prepare_directory(dir: &Path, run_as: Option<&RunAs>) -> anyhow::Result<()> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    if let Some(user) = run_as {
        chown_recursive(dir, user)?;
        check_traversable(dir, user)?;
    }
    Ok(())
}

fn chown_recursive(path: &Path, user: &RunAs) -> anyhow::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.uid() != user.uid.as_raw() || meta.gid() != user.gid.as_raw() {
        std::os::unix::fs::lchown(path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
            .with_context(|| format!("giving {} to the `{}` user", path.display(), user.name))?;
    }
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_recursive(&entry?.path(), user)?;
        }
    }
    Ok(())
}

/// The cluster's user must be able to reach its directory: every ancestor needs the search
/// bit for it. (Root's home directory is 0700, so a data directory under it cannot work.)
fn check_traversable(dir: &Path, user: &RunAs) -> anyhow::Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)?;
        let bit = if meta.uid() == user.uid.as_raw() {
            0o100
        } else if meta.gid() == user.gid.as_raw() {
            0o010
        } else {
            0o001
        };
        if meta.mode() & bit == 0 {
            bail!(
                "the embedded PostgreSQL runs as the `{}` user, which cannot enter {} (mode {:o}); \
                 put `data_dir` somewhere it can reach (e.g. under /var/lib or /srv), allow it \
                 with `chmod o+x {}`, or set `database.url`",
                user.name,
                ancestor.display(),
                meta.mode() & 0o7777,
                ancestor.display()
            );
        }
    }
    Ok(())
}

fn initdb(bin_dir: &Path, dir: &Path, run_as: Option<&RunAs>) -> anyhow::Result<()> {
    if fs::read_dir(dir)?.next().is_some() {
        bail!(
            "{} exists but holds no PostgreSQL cluster (no PG_VERSION); remove it to let Hearth \
             create a fresh one",
            dir.display()
        );
    }
    tracing::info!(dir = %dir.display(), "initialising the embedded PostgreSQL cluster");
    let mut command = Command::new(bin_dir.join("initdb"));
    command
        .arg("-D")
        .arg(dir)
        .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-instructions"])
        .current_dir("/")
        .stdin(Stdio::null());
    if let Some(user) = run_as {
        command.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let output = command.output().context("running initdb")?;
    if !output.status.success() {
        bail!(
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// A `postmaster.pid` left by a crash. The caller holds the data directory lock, so no other
/// Hearth owns this cluster: a live postmaster named there is an orphan and is shut down; a
/// dead one's file is removed (PostgreSQL would refuse to start if the pid had been reused).
fn clear_stale_postmaster(dir: &Path) -> anyhow::Result<()> {
    let pid_file = dir.join("postmaster.pid");
    let text = match fs::read_to_string(&pid_file) {
        Ok(text) => text,
        Err(error) if error.kind() == IoErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    let pid = text.lines().next().and_then(|line| line.trim().parse::<i32>().ok());
    if let Some(pid) = pid.filter(|pid| *pid > 0)
        && is_postmaster_of(pid, dir)
    {
        tracing::warn!(pid, "an orphaned PostgreSQL from an earlier run holds the cluster; shutting it down");
        let _ = kill(Pid::from_raw(pid), Signal::SIGINT);
        let deadline = Instant::now() + STOP_TIMEOUT;
        while kill(Pid::from_raw(pid), None).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if kill(Pid::from_raw(pid), None).is_ok() {
            bail!("an orphaned PostgreSQL (pid {pid}) holds {} and does not stop", dir.display());
        }
    } else {
        tracing::warn!("removing a stale postmaster.pid left by a crash");
        fs::remove_file(&pid_file)?;
    }
    Ok(())
}

/// Whether `pid` is a postmaster serving the cluster in `dir`, as started by `spawn`
/// (`postgres -D <dir> …`; the postmaster keeps its command line). After a reboot the pid in a
/// stale file can belong to anything — another cluster's PostgreSQL included — so only a
/// process started on this very directory counts as our orphan.
fn is_postmaster_of(pid: i32, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let Ok(dir) = fs::canonicalize(dir) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|byte| *byte == 0).collect();
    args.windows(2).any(|pair| {
        pair[0] == b"-D" && fs::canonicalize(std::ffi::OsStr::from_bytes(pair[1])).is_ok_and(|data_dir| data_dir == dir)
    })
}

fn log_tail(path: &Path) -> String {
    let Ok(mut file) = File::open(path) else { return String::new() };
    let length = file.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(2000)));
    let mut tail = String::new();
    let _ = file.read_to_string(&mut tail);
    tail
}

/// An exclusive lock on a data directory: one Hearth process per directory.
pub struct DataDirLock {
    _file: File,
}

pub enum LockOutcome {
    Acquired(DataDirLock),
    /// Another process (normally a running `hearth serve`) holds it.
    HeldElsewhere,
}

impl DataDirLock {
    pub fn try_acquire(data_dir: &Path) -> anyhow::Result<LockOutcome> {
        fs::create_dir_all(data_dir).with_context(|| format!("creating data directory {}", data_dir.display()))?;
        let path = data_dir.join("hearth.lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(LockOutcome::Acquired(DataDirLock { _file: file })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(LockOutcome::HeldElsewhere),
            Err(std::fs::TryLockError::Error(error)) => Err(error).context("locking the data directory"),
        }
    }
}
