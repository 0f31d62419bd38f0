//! Installs the real clients the tests drive, once, into the ignored build area
//! (`target/test-clients/`): matrix-js-sdk with `npm ci` from the committed
//! `tests/clients/js/package-lock.json`, matrix-nio into a venv with pip from the committed,
//! fully pinned `tests/clients/nio/requirements.txt`; moto's S3 server (for the S3 media backend)
//! likewise from `tests/clients/s3/requirements.txt`. An install is reused while the hash of
//! what it was made from (lock files, and for the venv the interpreter) is unchanged; a file
//! lock serialises test binaries that install at the same time.

use crate::common::install::{build_area, hash_of, install_once, output};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The oldest Node.js that matrix-js-sdk 36 supports (its `engines`).
const MIN_NODE_MAJOR: u32 = 20;

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

pub fn js_dir() -> PathBuf {
    source_dir().join("js")
}

pub fn nio_dir() -> PathBuf {
    source_dir().join("nio")
}

/// The `node_modules` directory holding matrix-js-sdk (installing it on first use).
pub fn node_modules() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install_node_modules).clone()
}

/// The venv's python, with matrix-nio importable (installing it on first use).
pub fn nio_python() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(install_nio_venv).clone()
}

/// moto's `moto_server` (a real S3-protocol server), installing it on first use.
#[allow(dead_code)] // used by tests/media_s3.rs, not by the client tests that share this file
pub fn s3_server() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED.get_or_init(|| install_venv("s3-venv", &source_dir().join("s3/requirements.txt"))).clone()
}

/// The venv's python, with slixmpp importable (installing it on first use).
#[allow(dead_code)] // used by tests/xmpp.rs, not by every binary that shares this file
pub fn slixmpp_python() -> Result<PathBuf, String> {
    static INSTALLED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    INSTALLED
        .get_or_init(|| {
            install_venv("xmpp-venv", &source_dir().join("xmpp/requirements.txt")).map(|bin| bin.join("python"))
        })
        .clone()
}

/// slixmpp's driver script.
#[allow(dead_code)] // used by tests/xmpp.rs
pub fn xmpp_client_script() -> PathBuf {
    source_dir().join("xmpp/client.py")
}

/// The scripted slixmpp client that answers what Hearth sends with the next step.
#[allow(dead_code)] // used by tests/xmpp_live.rs
pub fn xmpp_scenario_script() -> PathBuf {
    source_dir().join("xmpp/scenario.py")
}

fn install_node_modules() -> Result<PathBuf, String> {
    let version = output(Command::new("node").arg("--version"))
        .map_err(|e| format!("the matrix-js-sdk tests need Node.js >= {MIN_NODE_MAJOR} with npm: {e}"))?;
    let major = version.trim().trim_start_matches('v').split('.').next().and_then(|m| m.parse::<u32>().ok());
    if major.is_none_or(|major| major < MIN_NODE_MAJOR) {
        return Err(format!("the matrix-js-sdk tests need Node.js >= {MIN_NODE_MAJOR}, found {}", version.trim()));
    }
    let sources = [js_dir().join("package.json"), js_dir().join("package-lock.json")];
    let dir = build_area().join("node");
    install_once("node", &dir, &hash_of(&sources, "")?, |dir| {
        for source in &sources {
            let name = source.file_name().ok_or("a lock file without a name")?;
            fs::copy(source, dir.join(name)).map_err(|e| format!("copy {}: {e}", source.display()))?;
        }
        // `npm ci` installs exactly the lock file; from npm's cache when it can.
        output(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--prefer-offline", "--loglevel=error"])
                .env("npm_config_update_notifier", "false")
                .current_dir(dir),
        )
        .map(|_| ())
    })?;
    Ok(dir.join("node_modules"))
}

fn install_nio_venv() -> Result<PathBuf, String> {
    install_venv("venv", &nio_dir().join("requirements.txt")).map(|bin| bin.join("python"))
}

/// A venv called `name` holding exactly `requirements`; returns its `bin` directory.
fn install_venv(name: &str, requirements: &Path) -> Result<PathBuf, String> {
    let python = "python3";
    // A venv belongs to the interpreter it was made with: a new one means a new venv.
    let interpreter = output(Command::new(python).args(["-c", "import sys; print(sys.executable, sys.version)"]))
        .map_err(|e| format!("the {name} tests need Python 3 (`{python}`) with its venv module: {e}"))?;
    let dir = build_area().join(name);
    install_once(name, &dir, &hash_of(&[requirements.to_owned()], &interpreter)?, |dir| {
        output(Command::new(python).args(["-m", "venv"]).arg(dir))?;
        output(
            Command::new(dir.join("bin/pip"))
                .args(["install", "--disable-pip-version-check", "--no-input", "--quiet", "-r"])
                .arg(requirements),
        )
        .map(|_| ())
    })?;
    Ok(dir.join("bin"))
}
