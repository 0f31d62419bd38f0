//! Installing what tests drive into the ignored build area (`target/test-clients/`), once:
//! an install is reused while the hash of what it was made from is unchanged, and a file lock
//! serialises test binaries that install at the same time. Used by the real clients
//! (`tests/clients/install.rs`) and Synapse (`synapse.rs`).

use sha2::{Digest, Sha256};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `target/test-clients`: beside `target/tmp` (`CARGO_TARGET_TMPDIR`), so it follows
/// `CARGO_TARGET_DIR` and `cargo clean` removes it.
pub fn build_area() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).join("test-clients")
}

/// Runs `install` into an empty `dir` unless `dir` already holds an install with `key`;
/// under a file lock, so concurrent test binaries install once and the others wait.
pub fn install_once(
    name: &str,
    dir: &Path,
    key: &str,
    install: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<(), String> {
    let area = build_area();
    fs::create_dir_all(&area).map_err(|e| format!("create {}: {e}", area.display()))?;
    let lock_path = area.join(format!("{name}.lock"));
    let lock = File::create(&lock_path).map_err(|e| format!("create {}: {e}", lock_path.display()))?;
    lock.lock().map_err(|e| format!("lock {}: {e}", lock_path.display()))?;
    let marker = dir.join(".installed-from");
    if fs::read_to_string(&marker).is_ok_and(|installed| installed == key) {
        return Ok(());
    }
    let started = std::time::Instant::now();
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
    install(dir).map_err(|e| format!("installing the {name} test clients into {} failed: {e}", dir.display()))?;
    // Written last: an interrupted install has no marker and is redone.
    fs::write(&marker, key).map_err(|e| format!("write {}: {e}", marker.display()))?;
    eprintln!("installed the {name} test clients into {} in {:.1} s", dir.display(), started.elapsed().as_secs_f64());
    Ok(())
}

pub fn hash_of(files: &[PathBuf], extra: &str) -> Result<String, String> {
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(fs::read(file).map_err(|e| format!("read {}: {e}", file.display()))?);
    }
    hasher.update(extra.as_bytes());
    Ok(hex::encode(hasher.finalize()))
}

/// Runs a command to completion; its stdout, or an error with its stderr.
pub fn output(command: &mut Command) -> Result<String, String> {
    let shown = format!("{command:?}");
    let out = command.output().map_err(|e| format!("{shown} could not start: {e}"))?;
    if !out.status.success() {
        return Err(format!("{shown} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
